"""The README's configuration reference matches the schema the code enforces."""

from __future__ import annotations

from harness.reference import END, START, config_reference
from tests.harness.packs import REPO


def test_readme_config_reference_is_generated_from_the_schema() -> None:
    """The section between the markers equals `python -m harness.reference` output."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(START) : readme.index(END) + len(END)] + "\n"
    assert section == config_reference(), (
        "README out of date: regenerate with python scripts/update_config_reference.py"
    )
