"""Making a digest pullable from another cluster: the central-registry mirror.

The registry client does the wire work; this module knows Hoist's settings
(the central registry, the path layout) and which credentials go with which
registry host.
"""

from __future__ import annotations

import threading

from django.conf import settings

from environments.models import Cluster, Resource

from . import metrics
from .registry import InvalidReference, RegistryClient, RegistryError, parse_reference

_client: RegistryClient | None = None
_client_lock = threading.Lock()


def _credentials(host: str) -> tuple[str, str] | None:
    if host == settings.HOIST_CENTRAL_REGISTRY and getattr(settings, "HOIST_CENTRAL_REGISTRY_USERNAME", ""):
        return settings.HOIST_CENTRAL_REGISTRY_USERNAME, settings.HOIST_CENTRAL_REGISTRY_PASSWORD
    for cluster in Cluster.objects.exclude(registry_username=""):
        if cluster.registry.split("/", 1)[0] == host:
            return cluster.registry_username, cluster.registry_password
    return None


def client() -> RegistryClient:
    """One pooled, thread-safe client per process (tokens and connections are reused)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = RegistryClient(_credentials, insecure_hosts=settings.HOIST_INSECURE_REGISTRIES,
                                     on_response=metrics.registry_response)
        return _client


def central_repository(resource: Resource, upstream: Resource) -> str:
    """Where the central registry keeps `upstream`'s images for the project."""
    central = settings.HOIST_CENTRAL_REGISTRY
    if not central:
        raise RegistryError(
            f"{resource} runs on cluster {resource.environment.cluster} but its upstream {upstream} runs on "
            f"cluster {upstream.environment.cluster}: cross-cluster promotion mirrors through the central "
            "registry, and none is configured (set HOIST_CENTRAL_REGISTRY).",
            retryable=False,
        )
    path = settings.HOIST_MIRROR_LAYOUT.format(
        project=upstream.environment.project.slug, environment=upstream.environment.slug, resource=upstream.name,
    )
    return f"{central.rstrip('/')}/{path.strip('/')}"


def mirror(image: str, dest_repository: str) -> str:
    """Copy `image` (repo@digest) into `dest_repository`, verified; returns the pullable reference.

    Already present → a single HEAD. The registry client pushes the manifest
    only after every blob, so the reference returned is never half-copied.
    """
    source = parse_reference(image)
    if not source.digest:
        raise InvalidReference(f"{image} has no digest; only digests are mirrored")
    if source.name == dest_repository:
        # Already at the central path (the upstream pulls from there too): still
        # verify the digest is present before anyone is told to pull it.
        if not client().exists(source, source.digest):
            raise RegistryError(f"manifest {source.digest} not found in {source.name}", retryable=False, status=404)
        return image
    result = client().copy(source, dest_repository)
    return f"{dest_repository}@{result.digest}"


def resolve(image: str) -> str:
    """The digest a tag points at now."""
    return client().resolve(parse_reference(image))
