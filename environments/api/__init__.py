"""The REST API for clusters, environments, resources and artifacts."""
