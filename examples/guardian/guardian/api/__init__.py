"""The HTTP side of guardian: JSON API, health, metrics and the server-rendered web UI."""
