"""The REST API for promotion history."""
