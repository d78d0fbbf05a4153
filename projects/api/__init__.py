"""The REST API for projects, members, users and tokens, and what every API module shares."""
