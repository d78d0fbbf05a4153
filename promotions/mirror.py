"""Making a digest pullable from another cluster: the central-registry mirror.

The registry client does the wire work; this module knows Hoist's settings
(the central registry, the path layout) and which credentials go with which
registry host.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack, contextmanager
from typing import Iterator

from django.conf import settings

from environments import rules
from environments.models import Cluster, Resource

from . import guard, limits, metrics
from .registry import OUTBOUND_REFUSED, Deferred, InvalidReference, RegistryClient, RegistryError, parse_reference

_client: RegistryClient | None = None
_client_key: tuple = ()
_client_lock = threading.Lock()


def _credentials(host: str) -> tuple[str, str] | None:
    if host == settings.HOIST_CENTRAL_REGISTRY and getattr(settings, "HOIST_CENTRAL_REGISTRY_USERNAME", ""):
        return settings.HOIST_CENTRAL_REGISTRY_USERNAME, settings.HOIST_CENTRAL_REGISTRY_PASSWORD
    for cluster in Cluster.objects.exclude(registry_username=""):
        if cluster.registry.split("/", 1)[0] == host:
            return cluster.registry_username, cluster.registry_password
    return None


PROBE_DEADLINE_S = 3.0


class _CurrentPolicy:
    """The outbound policy as the settings say now (the client lives as long as the process)."""

    def check_host(self, host):
        return rules.outbound_policy().check_host(host)

    def check_connection(self, host, port, addresses):
        return rules.outbound_policy().check_connection(host, port, addresses)

    def allowed_explicitly(self, host):
        return rules.outbound_policy().allowed_explicitly(host)


def client() -> RegistryClient:
    """One pooled, thread-safe client per process (tokens and connections are reused)."""
    global _client, _client_key
    key = (settings.HOIST_REGISTRY_READ_TIMEOUT_S, settings.HOIST_REGISTRY_CONNECT_TIMEOUT_S,
           tuple(settings.HOIST_INSECURE_REGISTRIES))
    with _client_lock:
        if _client is not None and key != _client_key:  # settings changed (tests do)
            _client.close()
            _client = None
        if _client is None:
            _client_key = key
            _client = RegistryClient(
                _credentials, insecure_hosts=settings.HOIST_INSECURE_REGISTRIES, on_response=metrics.registry_response,
                timeout=settings.HOIST_REGISTRY_READ_TIMEOUT_S, connect_timeout=settings.HOIST_REGISTRY_CONNECT_TIMEOUT_S,
                policy=_CurrentPolicy(), throttle=limits.pace, on_retry_after=limits.told_to_wait,
            )
        return _client


def _transient(exc: BaseException) -> bool | None:
    """For the host's breaker: no answer counts against it, an error answer (404, 401) proves
    it alive, and a call never made (policy, breaker, another host's) says nothing."""
    if not isinstance(exc, RegistryError) or isinstance(exc, Deferred) or exc.code == OUTBOUND_REFUSED:
        return None
    return exc.retryable


@contextmanager
def calling(host: str, *, deadline: float | None = None, probe_deadline: float | None = None) -> Iterator[RegistryClient]:
    """One call to registry `host`: its breaker, a slot (for hosts operators didn't set up
    themselves), and a deadline for the whole call; `probe_deadline` when the call is the
    breaker's probe (a host that failed repeatedly gets less of a worker's time)."""
    deadline = settings.HOIST_REGISTRY_DEADLINE_S if deadline is None else deadline
    # The central registry is the operator's own: no concurrency limit unless its row sets one.
    limit = limits.limits_for(host).concurrency
    try:
        with guard.passage(f"registry:{host}", label=f"registry {host}", lease_s=deadline + 5, limit=limit,
                           transient=_transient) as state:
            if state.probing and probe_deadline is not None:
                deadline = min(deadline, probe_deadline)
            with client().deadline(deadline), limits.governing(host):
                yield client()
    except guard.Closed as closed:
        raise Deferred(closed.message, closed.retry_at) from None
    except RegistryError as exc:
        if _worth_noting(exc):
            limits.noted_error(host, exc.message)
        raise


def _worth_noting(exc: RegistryError) -> bool:
    """An error the registries page should show: the host failing or refusing Hoist, not a
    missing tag (the developer's mistake) nor a call never made."""
    if isinstance(exc, Deferred) or exc.code == OUTBOUND_REFUSED:
        return False
    return exc.retryable or exc.status in (401, 403)


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
        with calling(source.registry) as registry:
            if not registry.exists(source, source.digest):
                raise RegistryError(f"manifest {source.digest} not found in {source.name}", retryable=False, status=404)
        return image
    hosts = dict.fromkeys([source.registry, parse_reference(dest_repository).registry])
    # Copying can take minutes: the whole copy gets the mirror's deadline, each request its timeouts.
    with ExitStack() as stack:
        for host in hosts:
            registry = stack.enter_context(calling(host, deadline=settings.HOIST_MIRROR_DEADLINE_S))
        result = registry.copy(source, dest_repository)
    return f"{dest_repository}@{result.digest}"


def resolve(image: str, *, deadline: float | None = None) -> str:
    """The digest a tag points at now; `deadline`: seconds for the whole call (a web request's is short)."""
    ref = parse_reference(image)
    # A registry answers a HEAD for one manifest in well under a second; a probe of one that
    # kept failing gets a few seconds, not the whole deadline.
    with calling(ref.registry, deadline=deadline, probe_deadline=PROBE_DEADLINE_S) as registry:
        return registry.resolve(ref)
