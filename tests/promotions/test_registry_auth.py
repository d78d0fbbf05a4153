"""Registry client authentication against real registries: htpasswd (Basic) and
token auth (Bearer, with a tiny JWT token server from tests.fixtures.registry)."""

from __future__ import annotations

import pytest

from promotions.registry import CopyResult, RegistryClient, RegistryError
from tests.fixtures.registry import RegistryFactory, make_image, skopeo_inspect_raw

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def auth_registries(tmp_path_factory, _registry_session_factory):
    factory = RegistryFactory(tmp_path_factory.mktemp("auth-registries"))
    servers = {"htpasswd": factory(auth="htpasswd"), "token": factory(auth="token")}
    yield servers
    factory.close()


@pytest.fixture
def basic(auth_registries):
    return auth_registries["htpasswd"]


@pytest.fixture
def bearer(auth_registries):
    server = auth_registries["token"]
    server.token_server.requests.clear()
    return server


def _repo(request, name="app"):
    return f"{request.node.name.lower().replace('_', '-').replace('[', '-').replace(']', '')}/{name}"


# --------------------------------------------------------------------------- basic


def test_basic_auth_pull_and_push(basic, registry, request):
    image = make_image()
    registry.push(image)
    dest = f"{basic.host}/{_repo(request)}"
    with RegistryClient(credentials=basic.credentials_map) as client:
        result = client.copy(registry.ref(digest=image.digest), dest)
        assert result.manifests_pushed == 1 and result.blobs_copied == 3
        assert client.resolve(f"{dest}@{image.digest}") == image.digest
        # Pull back out of the basic-auth registry into the anonymous one.
        assert client.copy(f"{dest}@{image.digest}", registry.ref("back")).manifests_pushed == 1
        before = client.request_count
        assert client.copy(registry.ref(digest=image.digest), dest) == CopyResult(image.digest)
        assert client.request_count - before == 1  # credentials sent up front once the challenge is known
    raw = skopeo_inspect_raw(f"{dest}@{image.digest}", creds=basic.credentials)
    assert raw == image.manifest


def test_basic_credentials_from_a_callable(basic, request):
    image = make_image()
    basic.pusher().push_image(_repo(request), image, tag="v1")
    asked = []

    def lookup(host):
        asked.append(host)
        return basic.credentials if host == basic.host else None

    with RegistryClient(credentials=lookup) as client:
        assert client.resolve(f"{basic.host}/{_repo(request)}:v1") == image.digest
    assert basic.host in asked


@pytest.mark.parametrize("creds", ["wrong", None], ids=["wrong-password", "no-credentials"])
def test_basic_auth_failure_is_permanent(basic, request, creds):
    credentials = {basic.host: (basic.username, "not-the-password")} if creds else None
    with RegistryClient(credentials=credentials) as client:
        with pytest.raises(RegistryError) as exc:
            client.resolve(f"{basic.host}/{_repo(request)}:v1")
    assert exc.value.retryable is False
    assert exc.value.status == 401
    assert "credentials" in str(exc.value) and basic.host in str(exc.value)


# --------------------------------------------------------------------------- bearer


def test_bearer_push_pull_and_token_caching(bearer, registry, request):
    image = make_image()
    registry.push(image)
    repo = _repo(request)
    dest = f"{bearer.host}/{repo}"
    with RegistryClient(credentials=bearer.credentials_map) as client:
        result = client.copy(registry.ref(digest=image.digest), dest)
        assert result.manifests_pushed == 1 and result.blobs_copied == 3
        requests = list(bearer.token_server.requests)
        # One token for the whole push, with the scope the push needs.
        assert len(requests) == 1
        assert requests[0]["scopes"] == [f"repository:{repo}:pull,push"]
        assert requests[0]["user"] == bearer.username

        # Cached token + known challenge: re-mirror is a single HEAD, no token request.
        before = client.request_count
        assert client.copy(registry.ref(digest=image.digest), dest).already_present
        assert client.request_count - before == 1
        assert len(bearer.token_server.requests) == 1

        assert client.resolve(f"{dest}@{image.digest}") == image.digest  # a pull-only scope: new token
    assert bearer.token_server.requests[-1]["scopes"] == [f"repository:{repo}:pull"]
    assert bearer.pusher().get_manifest(repo, image.digest).content == image.manifest


def test_bearer_cross_repository_mount_requests_both_scopes(bearer, request):
    image = make_image((5000, 6000))
    src_repo, dest_repo = _repo(request, "upstream"), _repo(request, "downstream")
    bearer.pusher().push_image(src_repo, image)
    with RegistryClient(credentials=bearer.credentials_map) as client:
        result = client.copy(f"{bearer.host}/{src_repo}@{image.digest}", f"{bearer.host}/{dest_repo}")
    assert result == CopyResult(image.digest, blobs_mounted=3, manifests_pushed=1)
    scopes = {s for r in bearer.token_server.requests for s in r["scopes"]}
    assert f"repository:{dest_repo}:pull,push" in scopes
    assert f"repository:{src_repo}:pull" in scopes


def test_bearer_wrong_password_is_permanent(bearer, request):
    with RegistryClient(credentials={bearer.host: (bearer.username, "nope")}) as client:
        with pytest.raises(RegistryError) as exc:
            client.resolve(f"{bearer.host}/{_repo(request)}:v1")
    assert exc.value.retryable is False
    assert exc.value.status == 401
    assert bearer.username in str(exc.value) and bearer.host in str(exc.value)


def test_bearer_access_token_field_and_cross_registry(registry_factory, basic, request):
    """Token servers answer with `token` or `access_token`; copy from a Basic registry into a Bearer one."""
    other = registry_factory(auth="token", token_key="access_token")
    image = make_image()
    repo = _repo(request)
    basic.pusher().push_image(repo, image)
    creds = {**basic.credentials_map, **other.credentials_map}
    with RegistryClient(credentials=creds) as client:
        result = client.copy(f"{basic.host}/{repo}@{image.digest}", f"{other.host}/{repo}")
    assert result.manifests_pushed == 1
    assert other.pusher().get_manifest(repo, image.digest).content == image.manifest
