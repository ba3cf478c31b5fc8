"""bookshelf: a small REST API over PostgreSQL, the second reference target of release-harness."""

__version__ = "0.1.0"
