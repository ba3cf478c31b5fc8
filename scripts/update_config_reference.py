"""Regenerate the configuration reference section of README.md from the config schema."""

from __future__ import annotations

from pathlib import Path

from harness.reference import END, START, config_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> None:
    """Replace the text between the markers with freshly generated tables."""
    text = README.read_text(encoding="utf-8")
    start, end = text.index(START), text.index(END) + len(END) + 1
    README.write_text(text[:start] + config_reference() + text[end:], encoding="utf-8")


if __name__ == "__main__":
    main()
