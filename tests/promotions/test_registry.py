"""promotions.registry against real docker-registry processes (and a scripted fake
for misbehaviour a real registry won't produce).

Run alone with: python -m pytest -p tests.fixtures.registry -p no:django tests/promotions/test_registry.py
"""

from __future__ import annotations

import hashlib
import json
import tracemalloc

import httpx
import pytest

from promotions.registry import (
    CopyResult,
    ImageRef,
    InvalidReference,
    RegistryClient,
    RegistryError,
    _with_query_param,
    parse_reference,
)
from tests.fixtures.registry import (
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    Blob,
    FakeRegistry,
    FakeResponse,
    free_port,
    make_image,
    make_layer,
    make_multiarch,
    sha256_digest,
    skopeo_inspect_raw,
)

pytestmark = pytest.mark.registry

D = "sha256:" + "ab" * 32


@pytest.fixture
def client():
    with RegistryClient() as c:
        yield c


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("localhost:5000/a/b:tag", ("localhost:5000", "a/b", "tag", None)),
        (f"127.0.0.1:5000/a/b@{D}", ("127.0.0.1:5000", "a/b", None, D)),
        (f"127.0.0.1:5000/a/b:v1@{D}", ("127.0.0.1:5000", "a/b", "v1", D)),
        ("127.0.0.1:5000/a/b", ("127.0.0.1:5000", "a/b", None, None)),
        ("nginx", ("docker.io", "library/nginx", None, None)),
        ("nginx:1.25", ("docker.io", "library/nginx", "1.25", None)),
        ("bitnami/redis:7", ("docker.io", "bitnami/redis", "7", None)),
        ("docker.io/nginx", ("docker.io", "library/nginx", None, None)),
        ("index.docker.io/library/nginx:1", ("docker.io", "library/nginx", "1", None)),
        ("ghcr.io/org/team/app:v1.2.3-rc_1", ("ghcr.io", "org/team/app", "v1.2.3-rc_1", None)),
        ("Registry.Example.com:443/x/y__z", ("registry.example.com:443", "x/y__z", None, None)),
        ("localhost/a", ("localhost", "a", None, None)),
        ("[::1]:5000/a/b:t", ("[::1]:5000", "a/b", "t", None)),
        ("reg.io/a.b/c-d--e:Latest_", ("reg.io", "a.b/c-d--e", "Latest_", None)),
    ],
)
def test_parse_reference_good(ref, expected):
    r = parse_reference(ref)
    assert (r.registry, r.repository, r.tag, r.digest) == expected


@pytest.mark.parametrize(
    "ref, fragment",
    [
        ("", "empty"),
        ("a/b:", "empty tag"),
        ("reg.io/a/B", "lower-case"),
        ("127.0.0.1:5000/a/b@sha256:abc", "64 hex"),
        ("reg.io/a@sha256:" + "A" * 64, "lower-case hex"),
        ("reg.io/a@md5:" + "a" * 32, "sha256"),
        ("reg.io/a@", "digest is missing"),
        ("reg.io/a@sha256:" + "a" * 64 + "@x", "more than one '@'"),
        ("https://reg.io/a:1", "URL scheme"),
        ("reg.io/a b", "whitespace"),
        ("reg.io:99999/a", "port"),
        ("reg.io//a", "empty path component"),
        ("reg.io/a/", "empty path component"),
        ("reg.io/a:-bad", "tag '-bad'"),
        ("reg.io/a:" + "t" * 129, "at most 128"),
        ("ghcr.io", "repository path is missing"),
        ("reg_io:5000/a", "not a valid registry host"),
        ("reg.io/" + "a" * 260, "255"),
    ],
)
def test_parse_reference_bad(ref, fragment):
    with pytest.raises(ValueError) as exc:
        parse_reference(ref)
    err = exc.value
    assert isinstance(err, RegistryError) and isinstance(err, InvalidReference)
    assert err.retryable is False
    assert fragment in str(err)


def test_parse_reference_rejects_non_strings():
    with pytest.raises(InvalidReference):
        parse_reference(None)  # type: ignore[arg-type]


def test_image_ref_forms():
    r = parse_reference("127.0.0.1:5000/a/b:v1")
    assert str(r) == "127.0.0.1:5000/a/b:v1"
    assert r.reference == "v1"
    assert r.name == "127.0.0.1:5000/a/b"
    with pytest.raises(ValueError, match="no digest"):  # environments.references.InvalidReference
        r.pinned()
    pinned = r.with_digest(D)
    assert pinned == ImageRef("127.0.0.1:5000", "a/b", None, D)
    assert pinned.pinned() == str(pinned) == f"127.0.0.1:5000/a/b@{D}"
    assert parse_reference("nginx").reference == "latest"
    with pytest.raises(ValueError):
        r.with_digest("sha256:nope")


def test_with_query_param_keeps_upload_state_verbatim():
    # distribution signs _state; '+', '%2B' and '%3D' must come back exactly as sent.
    base = httpx.URL("http://h:1/v2/a/blobs/uploads/u?_state=ab%2Bc%3D%3D&x=1+2")
    out = _with_query_param(base, "digest", D)
    assert out.query == b"_state=ab%2Bc%3D%3D&x=1+2&digest=sha256%3A" + D[7:].encode()
    assert _with_query_param(httpx.URL("http://h/v2/u"), "digest", D).query == b"digest=sha256%3A" + D[7:].encode()


# --------------------------------------------------------------------------- resolve / exists


def test_resolve_tag_to_digest(registry, client):
    image = make_image(oci=True)
    registry.push(image, tag="v1")
    index = make_multiarch()
    registry.push(index, name="multi", tag="v1")
    assert client.resolve(registry.ref(tag="v1")) == image.digest
    # An index resolves to the index digest, not to one platform's manifest.
    assert client.resolve(registry.ref("multi", tag="v1")) == index.digest
    assert client.resolve(registry.ref(digest=image.digest)) == image.digest


def test_resolve_unknown_tag_is_permanent_and_names_the_tag(registry, client):
    registry.push(make_image(), tag="v1")
    ref = registry.ref(tag="no-such-tag")
    with pytest.raises(RegistryError) as exc:
        client.resolve(ref)
    assert exc.value.retryable is False
    assert exc.value.status == 404
    assert "no-such-tag" in str(exc.value) and registry.repo() in str(exc.value)


def test_resolve_unknown_repository_is_permanent(registry, client):
    with pytest.raises(RegistryError) as exc:
        client.resolve(registry.ref("never-pushed", tag="v1"))
    assert (exc.value.retryable, exc.value.status) == (False, 404)


def test_resolve_falls_back_to_get_without_digest_header(fake_registry, client):
    body = make_image().manifest
    fake_registry.add_manifest("a/b", "v1", body, DOCKER_MANIFEST)  # no Docker-Content-Digest
    assert client.resolve(f"{fake_registry.host}/a/b:v1") == sha256_digest(body)
    assert [m for m, _ in fake_registry.requests] == ["HEAD", "GET"]


def test_exists(registry, client):
    image = make_image()
    registry.push(image)
    assert client.exists(registry.ref(), image.digest) is True
    assert client.exists(registry.ref(digest=image.digest)) is True
    assert client.exists(registry.ref(), "sha256:" + "0" * 64) is False
    with pytest.raises(InvalidReference):
        client.exists(registry.ref(), "latest")


# --------------------------------------------------------------------------- copy


def _assert_identical_at(ns, name: str, image, *, expect_type: str):
    """Independent checks: the registry API and skopeo both see the exact bytes."""
    resp = ns.pusher.get_manifest(ns.repo(name), image.digest)
    assert resp.status_code == 200
    assert resp.content == image.manifest
    assert resp.headers["Content-Type"] == expect_type
    assert resp.headers["Docker-Content-Digest"] == image.digest
    raw = skopeo_inspect_raw(ns.ref(name, digest=image.digest))
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == image.digest
    assert raw == image.manifest


@pytest.mark.parametrize("oci", [False, True], ids=["docker-v2", "oci"])
def test_copy_between_registries_is_byte_identical(registry, registry_b, client, oci):
    image = make_image((3000, 5000), oci=oci)
    registry.push(image, tag="v1")
    result = client.copy(registry.ref(tag="v1"), f"{registry_b.host}/{registry_b.repo()}")
    assert result == CopyResult(image.digest, blobs_copied=3, bytes_copied=image.size, manifests_pushed=1)
    _assert_identical_at(registry_b, "app", image, expect_type=image.media_type)
    for blob in image.blobs:
        assert sha256_digest(registry_b.pusher.get_blob(registry_b.repo(), blob.digest)) == blob.digest
    # Pushed by digest only: no tag appears at the destination.
    resp = httpx.get(f"{registry_b.url}/v2/{registry_b.repo()}/tags/list")
    assert resp.status_code == 404 or not resp.json().get("tags")


@pytest.mark.parametrize("oci", [True, False], ids=["oci-index", "docker-manifest-list"])
def test_copy_index_copies_children_before_parent(registry, registry_b, client, oci):
    index = make_multiarch(4096, oci=oci)
    registry.push(index, tag="multi")
    events = []
    result = client.copy(
        registry.ref(tag="multi"), registry_b.ref(), progress=lambda ev, digest, size: events.append((ev, digest))
    )
    assert result.digest == index.digest
    assert result.manifests_pushed == 3
    assert result.blobs_copied == len(index.blobs)
    pushed = [d for ev, d in events if ev == "manifest_pushed"]
    # Every blob lands before any manifest; children before the index.
    assert [ev for ev, _ in events].index("manifest_pushed") == len(index.blobs)
    assert set(pushed[:2]) == {c.digest for c in index.children} and pushed[2] == index.digest
    _assert_identical_at(registry_b, "app", index, expect_type=index.media_type)
    for child in index.children:
        _assert_identical_at(registry_b, "app", child, expect_type=child.media_type)


def test_remirror_of_present_image_is_one_request(registry, registry_b, client):
    image = make_image()
    registry.push(image)
    src = registry.ref(digest=image.digest)
    client.copy(src, registry_b.ref())
    before = client.request_count
    result = client.copy(src, registry_b.ref())
    assert client.request_count - before == 1
    assert result == CopyResult(image.digest) and result.already_present


def test_index_with_one_child_present_copies_only_the_other(registry, registry_b, client):
    index = make_multiarch(2048)
    registry.push(index)
    present, missing = index.children
    registry_b.push(present)
    result = client.copy(registry.ref(digest=index.digest), registry_b.ref())
    assert result.manifests_pushed == 2  # the missing child and the index
    assert result.blobs_copied == len(missing.blobs)
    assert registry_b.pusher.manifest_exists(registry_b.repo(), missing.digest)


def test_shared_layers_are_not_copied_twice(registry, registry_b, client):
    shared = make_layer(64 * 1024)
    first = make_image((1000,), extra_layers=[shared])
    second = make_image((2000,), extra_layers=[shared])
    registry.push(first)
    registry.push(second)
    client.copy(registry.ref(digest=first.digest), registry_b.ref())
    result = client.copy(registry.ref(digest=second.digest), registry_b.ref())
    assert result.blobs_skipped == 1
    assert result.blobs_copied == 2
    assert result.bytes_copied == second.config.size + second.layers[1].size


def test_cross_repository_mount_in_same_registry(registry, client):
    image = make_image((4000, 4000))
    registry.push(image, name="upstream")
    result = client.copy(registry.ref("upstream", digest=image.digest), registry.ref("downstream"))
    assert result == CopyResult(image.digest, blobs_mounted=3, manifests_pushed=1)
    assert registry.pusher.get_manifest(registry.repo("downstream"), image.digest).content == image.manifest


def test_copy_resolves_a_tag_when_no_digest_is_given(registry, registry_b, client):
    image = make_image()
    registry.push(image, tag="stable")
    assert client.copy(registry.ref(tag="stable"), registry_b.ref()).digest == image.digest
    with pytest.raises(InvalidReference, match="differs"):
        client.copy(registry.ref(digest=image.digest), registry_b.ref(), digest=D)
    with pytest.raises(InvalidReference, match="without a tag"):
        client.copy(registry.ref(digest=image.digest), registry_b.ref(tag="x"))


def test_copy_of_nonexistent_digest_is_permanent_404(registry, registry_b, client):
    registry.push(make_image())
    missing = "sha256:" + "0" * 64
    with pytest.raises(RegistryError) as exc:
        client.copy(registry.ref(digest=missing), registry_b.ref())
    assert (exc.value.retryable, exc.value.status) == (False, 404)
    assert missing in str(exc.value) and registry.repo() in str(exc.value)


def test_relative_upload_location(registry, registry_factory, client):
    dest = registry_factory(relative_urls=True)
    image = make_image((2000, 3000))
    registry.push(image)
    result = client.copy(registry.ref(digest=image.digest), f"{dest.host}/rel/app")
    assert result.blobs_copied == 3
    assert dest.pusher().get_manifest("rel/app", image.digest).content == image.manifest


# --------------------------------------------------------------------------- misbehaving sources


def _serve_image(fake, repo: str, image, *, manifest_body: bytes | None = None, blob_override: dict | None = None):
    body = image.manifest if manifest_body is None else manifest_body
    fake.add_manifest(repo, image.digest, body, image.media_type, digest_header=image.digest)
    for blob in image.blobs:
        fake.add_blob(repo, blob.digest, (blob_override or {}).get(blob.digest, blob.data))


def test_manifest_bytes_not_matching_digest_is_permanent(fake_registry, registry_b, client):
    image = make_image()
    # Same JSON, re-serialised: what a registry that "normalises" manifests would serve.
    tampered = json.dumps(json.loads(image.manifest)).encode()
    _serve_image(fake_registry, "src/app", image, manifest_body=tampered)
    with pytest.raises(RegistryError) as exc:
        client.copy(f"{fake_registry.host}/src/app@{image.digest}", registry_b.ref())
    assert exc.value.retryable is False
    assert image.digest in str(exc.value) and "not the requested digest" in str(exc.value)
    assert not registry_b.pusher.manifest_exists(registry_b.repo(), image.digest)


def test_corrupt_blob_is_permanent_and_nothing_is_pushed(fake_registry, registry_b, client):
    image = make_image((5000,))
    layer = image.layers[0]
    corrupt = bytes([layer.data[0] ^ 0xFF]) + layer.data[1:]
    _serve_image(fake_registry, "src/app", image, blob_override={layer.digest: corrupt})
    with pytest.raises(RegistryError) as exc:
        client.copy(f"{fake_registry.host}/src/app@{image.digest}", registry_b.ref())
    assert exc.value.retryable is False
    assert layer.digest in str(exc.value)
    assert not registry_b.pusher.manifest_exists(registry_b.repo(), image.digest)
    assert not registry_b.pusher.blob_exists(registry_b.repo(), layer.digest)


def test_mount_refused_falls_back_to_upload_keeping_state(fake_registry, client):
    """202 to a mount → upload into the session it opened; relative Location, _state kept."""
    image = make_image((3000,))
    _serve_image(fake_registry, "src/app", image)
    uploads: dict[str, bytes] = {}
    state = "c2lnbmVk%2Bc3RhdGU%3D"

    def start_upload(handler):
        return FakeResponse(202, b"", {"Location": f"/v2/dst/app/blobs/uploads/u1?_state={state}"})

    def finish_upload(handler):
        query = handler.path.split("?", 1)[1]
        assert query.startswith(f"_state={state}&digest=sha256%3A"), query
        digest = "sha256:" + query.rsplit("%3A", 1)[1]
        assert sha256_digest(handler.request_body) == digest
        uploads[digest] = handler.request_body
        return FakeResponse(201, b"", {"Docker-Content-Digest": digest})

    fake_registry.routes[("POST", "/v2/dst/app/blobs/uploads/")] = start_upload
    fake_registry.routes[("PUT", "/v2/dst/app/blobs/uploads/u1")] = finish_upload
    fake_registry.routes[("PUT", f"/v2/dst/app/manifests/{image.digest}")] = FakeResponse(
        201, b"", {"Docker-Content-Digest": image.digest}
    )
    result = client.copy(f"{fake_registry.host}/src/app@{image.digest}", f"{fake_registry.host}/dst/app")
    assert result == CopyResult(image.digest, blobs_copied=2, bytes_copied=image.size, manifests_pushed=1)
    assert set(uploads) == {b.digest for b in image.blobs}
    mounts = [p for m, p in fake_registry.requests if m == "POST"]
    assert all("mount=sha256%3A" in p or "mount=sha256:" in p for p in mounts) and "from=src%2Fapp" in mounts[0]
    manifest_put = fake_registry.requests.index(("PUT", f"/v2/dst/app/manifests/{image.digest}"))
    assert fake_registry.bodies[manifest_put] == image.manifest


def test_blob_download_follows_redirect_without_leaking_credentials(fake_registry, registry_b):
    """S3/CDN-backed registries answer blob GETs with a redirect to another host:
    follow it, but never hand the registry credentials to that host."""

    image = make_image((4000,))
    layer = image.layers[0]
    _serve_image(fake_registry, "src/app", image)
    manifest_route = fake_registry.routes[("GET", f"/v2/src/app/manifests/{image.digest}")]
    source_auth = []

    def manifest_needs_basic(handler):
        source_auth.append(handler.headers.get("Authorization"))
        if not handler.headers.get("Authorization"):
            return FakeResponse(401, b"", {"WWW-Authenticate": 'Basic realm="fake"'})
        return manifest_route

    fake_registry.routes[("GET", f"/v2/src/app/manifests/{image.digest}")] = manifest_needs_basic
    cdn = FakeRegistry().start()
    try:
        cdn_auth = []
        cdn.routes[("GET", f"/blobs/{layer.digest}")] = lambda h: (
            cdn_auth.append(h.headers.get("Authorization")),
            FakeResponse(200, layer.data, {"Content-Type": "application/octet-stream"}),
        )[1]
        fake_registry.routes[("GET", f"/v2/src/app/blobs/{layer.digest}")] = FakeResponse(
            307, b"", {"Location": f"http://{cdn.host}/blobs/{layer.digest}?X-Amz-Signature=abc"}
        )
        with RegistryClient(credentials={fake_registry.host: ("user", "secret")}) as client:
            result = client.copy(f"{fake_registry.host}/src/app@{image.digest}", registry_b.ref())
        assert result.blobs_copied == 2 and result.bytes_copied == image.size
        assert source_auth[0] is None and source_auth[-1].startswith("Basic ")
        assert cdn_auth == [None]
        assert registry_b.pusher.get_blob(registry_b.repo(), layer.digest) == layer.data
    finally:
        cdn.stop()


def test_token_expiring_during_streamed_upload_restarts_that_blob(fake_registry, client):
    """A streamed PUT can't be replayed: on 401 the blob upload starts over with a new token."""
    image = make_image((3000,))
    _serve_image(fake_registry, "src/app", image)
    realm = f"http://{fake_registry.host}/token"
    challenge = {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake",scope="repository:dst/app:pull,push"'}
    tokens = iter(f"token-{i}" for i in range(100))
    issued, puts = [], []

    def token(handler):
        issued.append(next(tokens))
        return FakeResponse(200, json.dumps({"access_token": issued[-1], "expires_in": 300}).encode())

    def start_upload(handler):
        if not handler.headers.get("Authorization"):
            return FakeResponse(401, b"", challenge)
        return FakeResponse(202, b"", {"Location": f"/v2/dst/app/blobs/uploads/u{len(puts)}?_state=s"})

    def finish_upload(handler):
        puts.append(handler.headers.get("Authorization"))
        if len(puts) == 1:  # the first token "expires" mid-transfer
            return FakeResponse(401, b"", challenge)
        digest = "sha256:" + handler.path.rsplit("%3A", 1)[1]
        return FakeResponse(201, b"", {"Docker-Content-Digest": digest})

    fake_registry.routes[("GET", "/token")] = token
    fake_registry.routes[("POST", "/v2/dst/app/blobs/uploads/")] = start_upload
    for i in range(4):
        fake_registry.routes[("PUT", f"/v2/dst/app/blobs/uploads/u{i}")] = finish_upload
    fake_registry.routes[("PUT", f"/v2/dst/app/manifests/{image.digest}")] = FakeResponse(
        201, b"", {"Docker-Content-Digest": image.digest}
    )
    with RegistryClient(max_workers=1) as c:
        result = c.copy(f"{fake_registry.host}/src/app@{image.digest}", f"{fake_registry.host}/dst/app")
    assert result.blobs_copied == 2 and result.manifests_pushed == 1
    # The retried upload carries a newly fetched token, not the refused one.
    assert len(puts) == 3 and puts[0] == f"Bearer {issued[0]}"
    assert puts[1] != puts[0] and puts[1].removeprefix("Bearer ") in issued[1:]
    # The abandoned upload session is cancelled.
    assert ("DELETE", "/v2/dst/app/blobs/uploads/u0?_state=s") in fake_registry.requests


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_are_retryable(fake_registry, client, status):
    fake_registry.routes[("HEAD", "/v2/a/b/manifests/v1")] = FakeResponse(status)
    with pytest.raises(RegistryError) as exc:
        client.resolve(f"{fake_registry.host}/a/b:v1")
    assert (exc.value.retryable, exc.value.status) == (True, status)


def test_bad_request_is_permanent_with_registry_message(fake_registry, client):
    body = json.dumps({"errors": [{"code": "NAME_INVALID", "message": "invalid repository name"}]}).encode()
    fake_registry.routes[("HEAD", "/v2/a/b/manifests/v1")] = FakeResponse(400, b"", {})
    fake_registry.routes[("GET", "/v2/a/b/manifests/v1")] = FakeResponse(400, body, {"Content-Type": "application/json"})
    with pytest.raises(RegistryError) as exc:
        client.fetch_manifest(f"{fake_registry.host}/a/b:v1")
    assert (exc.value.retryable, exc.value.status, exc.value.code) == (False, 400, "NAME_INVALID")
    assert "invalid repository name" in str(exc.value)


def test_unreachable_registry_is_retryable(client):
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RegistryError) as exc:
        client.resolve(f"{host}/a/b:v1")
    assert exc.value.retryable is True and exc.value.status is None
    assert host in str(exc.value)


def test_unsupported_manifest_type_is_permanent(fake_registry, registry_b, client):
    body = b'{"schemaVersion": 1, "name": "a/b", "fsLayers": []}'
    digest = sha256_digest(body)
    fake_registry.add_manifest("a/b", digest, body, "application/vnd.docker.distribution.manifest.v1+prettyjws")
    with pytest.raises(RegistryError, match="unsupported media type") as exc:
        client.copy(f"{fake_registry.host}/a/b@{digest}", registry_b.ref())
    assert exc.value.retryable is False


# --------------------------------------------------------------------------- failure mid-copy


@pytest.mark.parametrize("workers", [1, 4])
def test_destination_down_mid_copy_then_resume(registry, registry_factory, workers):
    dest = registry_factory()
    image = make_image((20_000, 30_000, 40_000, 50_000))
    registry.push(image)
    src = registry.ref(digest=image.digest)
    copied = []

    def stop_after_first_blob(event, digest, size):
        if event == "blob_copied" and not copied:
            copied.append(digest)
            dest.stop()

    with RegistryClient(max_workers=workers) as client:
        with pytest.raises(RegistryError) as exc:
            client.copy(src, f"{dest.host}/mirror/app", progress=stop_after_first_blob)
        assert exc.value.retryable is True
        assert dest.host in str(exc.value)

        dest.start()
        pusher = dest.pusher()
        assert not pusher.manifest_exists("mirror/app", image.digest), "a half-copied image was referenced"
        assert pusher.blob_exists("mirror/app", copied[0])

        result = client.copy(src, f"{dest.host}/mirror/app")
    assert result.manifests_pushed == 1
    assert result.blobs_skipped >= 1
    assert result.blobs_skipped + result.blobs_copied == len(image.blobs)
    assert pusher.get_manifest("mirror/app", image.digest).content == image.manifest
    pusher.close()


# --------------------------------------------------------------------------- streaming


def test_large_blob_streams_with_bounded_memory(registry, registry_b):
    size = 64 * 1024 * 1024
    image = make_image((size,), seed=7)
    registry.push(image)
    # Drop our copy of the data so the measurement sees only the client's allocations.
    layer = image.layers[0]
    image.layers[0] = Blob(b"", DOCKER_LAYER, digest=layer.digest)
    total = layer.size + image.config.size
    del layer

    with RegistryClient(chunk_size=1024 * 1024) as client:
        tracemalloc.start()
        try:
            result = client.copy(registry.ref(digest=image.digest), registry_b.ref())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.bytes_copied == total
    # Holding the blob would be >= 64 MiB; streaming stays around a few chunks.
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
    assert registry_b.pusher.get_manifest(registry_b.repo(), image.digest).status_code == 200
