import socket

import pytest

from promotions.kube import forget_clients, forget_crd_cache


@pytest.fixture
def clusters(cluster_a, cluster_b, sandbox, sandbox_factory, settings):
    """cluster-a on the shared sandbox, cluster-b on a second one; fast retries."""
    settings.HOIST_RECONCILE_BACKOFF_S = 0.01
    second = sandbox_factory()
    cluster_a.api_url, cluster_b.api_url = sandbox.url, second.url
    cluster_a.save()
    cluster_b.save()
    forget_crd_cache()
    yield {"a": sandbox, "b": second}
    forget_crd_cache()
    forget_clients()


@pytest.fixture
def qa(project, cluster_a, environments):
    """A fourth environment on cluster-a, for same-cluster chains."""
    from environments import services

    return services.environment_create(project=project, name="qa", slug="qa", cluster=cluster_a, namespace="shop-qa")


@pytest.fixture
def no_registry(monkeypatch):
    """Fail the test if anything asks a registry (same-cluster promotion must not)."""
    from promotions import mirror

    def refuse(*args, **kwargs):
        raise AssertionError("a registry was called")

    monkeypatch.setattr(mirror, "client", refuse)


@pytest.fixture(autouse=True)
def _pool_connections_closed():
    """The reconcile threads keep their connections between chunks; not past a test."""
    yield
    from promotions import tasks

    tasks.close_pool_connections()


@pytest.fixture
def fake_dns(monkeypatch):
    """names[name] = address: what getaddrinfo answers for those names (others as usual)."""
    names: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names
