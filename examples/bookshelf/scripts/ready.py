"""Exit 0 when bookshelf at URL answers /readyz with 200 (printing the answer), else 1: one bounded probe."""

import sys
import urllib.error
import urllib.request


def main() -> int:
    """Probe URL/readyz once, with a 2 s timeout."""
    try:
        with urllib.request.urlopen(f"{sys.argv[1]}/readyz", timeout=2) as answer:  # noqa: S310 - a local URL
            print(answer.read().decode())
            return 0
    except (OSError, urllib.error.URLError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
