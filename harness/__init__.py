"""release-harness: runs release gates against a target service and writes a verifiable evidence pack."""

__version__ = "0.1.0"
