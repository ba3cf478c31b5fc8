"""Guardian: a durable task service with supervised worker processes.

It is the reference target that release-harness certifies: every health status, metric and stat
it reports is computed from real process and database state.
"""

__version__ = "0.1.0"
