"""How blob bytes travel in a copy (promotions.registry's blob transport, issue 15).

A blob goes from the source's GET into one monolithic PUT at the destination, on
the client's own HTTP/1.1 transport (`_BlobTransport`): these tests pin what that
path must keep from the rest of the client (upload state, digests checked before
anything is committed, the outbound policy on every connection, TLS, the call's
deadline, bounded memory) and what it adds (kept-alive connections).

Real docker-registry processes, scripted fakes, and a raw socket server for what
neither produces (a body cut short, chunked framing, a kept-alive connection the
server drops).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
import pytest

from promotions import registry as registry_module
from promotions.registry import OUTBOUND_REFUSED, CopyResult, RegistryClient, RegistryError, parse_reference
from tests.fixtures.registry import (
    DOCKER_LAYER,
    MANIFEST_ACCEPT,
    Blob,
    FakeRegistry,
    FakeResponse,
    RegistryServer,
    make_image,
)

pytestmark = pytest.mark.registry

CHUNK = 64 * 1024  # the smallest chunk the client takes: several chunks per test blob


def _serve_image(fake: FakeRegistry, repo: str, image, *, blob_override: dict | None = None) -> None:
    fake.add_manifest(repo, image.digest, image.manifest, image.media_type, digest_header=image.digest)
    for blob in image.blobs:
        fake.add_blob(repo, blob.digest, (blob_override or {}).get(blob.digest, blob.data))


class LaxDestination:
    """A destination that stores whatever a complete PUT carries, without checking the digest
    (what a registry skipping its own verification would do); an incomplete body is not stored,
    as by any HTTP server. Records what it saw."""

    STATE = "c2lnbmVk%2Bc3RhdGU%3D"  # opaque, with escapes that must reach the registry untouched

    def __init__(self, fake: FakeRegistry, repo: str = "dst/app"):
        self.fake, self.repo = fake, repo
        self.stored: dict[str, bytes] = {}
        self.puts: list[dict] = []
        self.manifests: list[bytes] = []
        self._uploads = 0
        fake.routes[("POST", f"/v2/{repo}/blobs/uploads/")] = self._start
        for i in range(50):
            fake.routes[("PUT", f"/v2/{repo}/blobs/uploads/u{i}")] = self._finish

    def _start(self, handler):
        self._uploads += 1
        return FakeResponse(202, b"", {"Location": f"/v2/{self.repo}/blobs/uploads/u{self._uploads}?_state={self.STATE}"})

    def _finish(self, handler):
        query = handler.path.split("?", 1)[1]
        digest = "sha256:" + query.rsplit("%3A", 1)[1]
        announced = int(handler.headers.get("Content-Length", -1))
        body = handler.request_body
        self.puts.append({"query": query, "content_length": announced, "received": len(body),
                          "chunked": handler.headers.get("Transfer-Encoding")})
        if len(body) != announced:
            return FakeResponse(400, b"", {})  # the connection broke mid-body: nothing stored
        self.stored[digest] = body
        return FakeResponse(201, b"", {"Docker-Content-Digest": digest})

    def expect_manifest(self, image) -> None:
        def put(handler):
            self.manifests.append(handler.request_body)
            return FakeResponse(201, b"", {"Docker-Content-Digest": image.digest})

        self.fake.routes[("PUT", f"/v2/{self.repo}/manifests/{image.digest}")] = put


@pytest.fixture
def dest_fake():
    fake = FakeRegistry().start()
    yield fake
    fake.stop()


# --------------------------------------------------------------------------- raw HTTP server


class RawServer:
    """A loopback HTTP/1.1 server written on sockets: `respond(sock, method, path, headers, rfile)`
    writes the answer itself and returns whether to keep the connection. Counts connections."""

    def __init__(self, respond):
        self.respond = respond
        self.accepted = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn, conn.makefile("rb") as rfile:
            while True:
                line = rfile.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while (header := rfile.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                try:
                    if not self.respond(conn, method, path, headers, rfile):
                        return
                except OSError:
                    return

    def close(self):
        self._sock.close()


def read_chunked(rfile) -> bytes:
    body = b""
    while True:
        size = int(rfile.readline().split(b";")[0], 16)
        data = rfile.read(size + 2)[:size]
        if not size:
            return body
        body += data


# --------------------------------------------------------------------------- one PUT, upload state kept


def test_each_blob_is_one_post_and_one_put_keeping_the_upload_state(fake_registry, dest_fake):
    image = make_image((5 * CHUNK + 123, 2 * CHUNK, 10))
    _serve_image(fake_registry, "src/app", image)
    lax = LaxDestination(dest_fake)
    lax.expect_manifest(image)
    with RegistryClient(chunk_size=CHUNK) as client:
        result = client.copy(f"{fake_registry.host}/src/app@{image.digest}", f"{dest_fake.host}/dst/app")
    assert result == CopyResult(image.digest, blobs_copied=4, bytes_copied=image.size, manifests_pushed=1)
    assert lax.stored == {b.digest: b.data for b in image.blobs}
    methods = [m for m, _ in dest_fake.requests]
    assert methods.count("POST") == methods.count("PUT") - 1 == 4 and "PATCH" not in methods
    for put in lax.puts:
        # The Location's query exactly as the registry wrote it, then the digest.
        assert put["query"].startswith(f"_state={LaxDestination.STATE}&digest=sha256%3A"), put
        assert put["chunked"] is None and put["content_length"] == put["received"]
    assert lax.manifests == [image.manifest]
    # Every blob was in place before the manifest went.
    assert dest_fake.requests[-1] == ("PUT", f"/v2/dst/app/manifests/{image.digest}")


# --------------------------------------------------------------------------- digests judged before the last byte


def test_a_corrupt_source_never_completes_a_put_even_where_the_destination_would_not_check(fake_registry, dest_fake):
    image = make_image((6 * CHUNK + 7,))
    layer = image.layers[0]
    corrupt = bytes([layer.data[0] ^ 0xFF]) + layer.data[1:]  # same size: only the digest can tell
    _serve_image(fake_registry, "src/app", image, blob_override={layer.digest: corrupt})
    lax = LaxDestination(dest_fake)
    lax.expect_manifest(image)
    with RegistryClient(chunk_size=CHUNK, max_workers=1) as client, pytest.raises(RegistryError) as exc:
        client.copy(f"{fake_registry.host}/src/app@{image.digest}", f"{dest_fake.host}/dst/app")
    assert exc.value.retryable is False and layer.digest in str(exc.value) and "corrupt" in str(exc.value)
    assert layer.digest not in lax.stored and not lax.manifests
    cut = [p for p in lax.puts if layer.digest.split(":")[1] in p["query"]]
    # The body stopped short of its last chunk; the session was given up.
    assert cut and cut[0]["received"] < layer.size
    assert any(m == "DELETE" and "/blobs/uploads/" in p for m, p in dest_fake.requests)


def test_a_corrupt_source_is_refused_by_a_real_registry_and_nothing_lands(fake_registry, registry_b):
    image = make_image((3 * CHUNK,))
    layer = image.layers[0]
    corrupt = layer.data[:-1] + bytes([layer.data[-1] ^ 0x01])  # the very last byte differs
    _serve_image(fake_registry, "src/app", image, blob_override={layer.digest: corrupt})
    with RegistryClient(chunk_size=CHUNK) as client, pytest.raises(RegistryError) as exc:
        client.copy(f"{fake_registry.host}/src/app@{image.digest}", registry_b.ref())
    assert exc.value.retryable is False and layer.digest in str(exc.value)
    assert not registry_b.pusher.blob_exists(registry_b.repo(), layer.digest)
    assert not registry_b.pusher.manifest_exists(registry_b.repo(), image.digest)


def _redirect_blob_to(fake: FakeRegistry, repo: str, digest: str, server: RawServer) -> None:
    fake.routes[("GET", f"/v2/{repo}/blobs/{digest}")] = FakeResponse(
        307, b"", {"Location": f"http://{server.host}/blob/{digest}"})


def test_a_body_cut_short_is_retryable_and_nothing_lands(fake_registry, registry_b):
    image = make_image((4 * CHUNK,))
    layer = image.layers[0]

    def cut_short(sock, method, path, headers, rfile):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % layer.size + layer.data[: layer.size // 2])
        return False  # and hang up

    server = RawServer(cut_short)
    try:
        _serve_image(fake_registry, "src/app", image)
        _redirect_blob_to(fake_registry, "src/app", layer.digest, server)
        with RegistryClient(chunk_size=CHUNK) as client, pytest.raises(RegistryError) as exc:
            client.copy(f"{fake_registry.host}/src/app@{image.digest}", registry_b.ref())
    finally:
        server.close()
    assert exc.value.retryable is True and "lost connection" in str(exc.value)
    assert not registry_b.pusher.blob_exists(registry_b.repo(), layer.digest)
    assert not registry_b.pusher.manifest_exists(registry_b.repo(), image.digest)


def test_a_chunked_source_body_is_copied(fake_registry, registry_b):
    image = make_image((3 * CHUNK + 5,))
    layer = image.layers[0]

    def chunked(sock, method, path, headers, rfile):
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, layer.size, 50_000):
            piece = layer.data[i:i + 50_000]
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        return True

    server = RawServer(chunked)
    try:
        _serve_image(fake_registry, "src/app", image)
        _redirect_blob_to(fake_registry, "src/app", layer.digest, server)
        with RegistryClient(chunk_size=CHUNK) as client:
            result = client.copy(f"{fake_registry.host}/src/app@{image.digest}", registry_b.ref())
    finally:
        server.close()
    assert result.blobs_copied == 2 and result.bytes_copied == image.size
    assert registry_b.pusher.get_blob(registry_b.repo(), layer.digest) == layer.data


def test_a_body_of_unknown_length_goes_chunked():
    received = []

    def store(sock, method, path, headers, rfile):
        assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers
        received.append(read_chunked(rfile))
        sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        return True

    server = RawServer(store)
    try:
        with RegistryClient() as client:
            resp = client._send("PUT", f"http://{server.host}/v2/a/blobs/uploads/u1?_state=x", host=server.host,
                                scopes=(), what="uploading", content=iter([b"abc", b"", b"defg"]), replayable=False,
                                bulk=True)
            assert resp.status_code == 201
            resp.close()
    finally:
        server.close()
    assert received == [b"abcdefg"]


@pytest.mark.parametrize("corrupt", [False, True], ids=["good", "corrupt"])
def test_a_blob_of_unknown_size_holds_its_last_chunk_until_the_digest_is_known(corrupt):
    """No size in the descriptor, none from the source (chunked): the upload goes chunked too,
    and its last chunk (and the end of the body) only once the whole blob hashed right."""
    data = os.urandom(3 * CHUNK + 11)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    served = bytes([data[0] ^ 1]) + data[1:] if corrupt else data
    stored, received = [], []
    put_over = threading.Event()

    def serve(sock, method, path, headers, rfile):
        if method == "GET":
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(served), 40_000):
                piece = served[i:i + 40_000]
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
            return True
        assert headers.get("transfer-encoding") == "chunked" and path.endswith(f"&digest={digest.replace(':', '%3A')}")
        body = b""
        try:
            while size := int(rfile.readline().split(b";")[0], 16):
                body += rfile.read(size + 2)[:size]
                received.append(len(body))
            rfile.readline()
        except ValueError:  # the body broke off: store nothing
            put_over.set()
            return False
        stored.append(body)
        put_over.set()
        sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nDocker-Content-Digest: %s\r\n\r\n" % digest.encode())
        return True

    server = RawServer(serve)
    try:
        with RegistryClient(chunk_size=CHUNK) as client:
            src = parse_reference(f"{server.host}/src/app@{digest}")
            dest = parse_reference(f"{server.host}/dst/app")
            upload = httpx.URL(f"http://{server.host}/v2/dst/app/blobs/uploads/u1?_state=s")
            if corrupt:
                with pytest.raises(RegistryError) as exc:
                    client._stream_blob(src, dest, {"digest": digest}, upload, (), ())
                assert exc.value.retryable is False and "corrupt" in str(exc.value)
            else:
                assert client._stream_blob(src, dest, {"digest": digest}, upload, (), ()) == len(data)
        assert put_over.wait(10)
    finally:
        server.close()
    assert stored == ([] if corrupt else [data])
    if corrupt:  # all but the last chunk went; the body never ended
        assert received and received[-1] < len(data)


# --------------------------------------------------------------------------- connections


def test_blob_connections_are_kept_alive(fake_registry, dest_fake, monkeypatch):
    image = make_image([CHUNK + i for i in range(6)])
    _serve_image(fake_registry, "src/app", image)
    lax = LaxDestination(dest_fake)
    lax.expect_manifest(image)
    opened = []
    real_open = registry_module._BlobTransport._open

    def counting_open(self, scheme, host, port, timeout):
        opened.append(f"{host}:{port}")
        return real_open(self, scheme, host, port, timeout)

    monkeypatch.setattr(registry_module._BlobTransport, "_open", counting_open)
    with RegistryClient(chunk_size=CHUNK, max_workers=2) as client:
        result = client.copy(f"{fake_registry.host}/src/app@{image.digest}", f"{dest_fake.host}/dst/app")
    assert result.blobs_copied == 7
    # Seven GETs and seven PUTs on two copy threads: at most two connections to each host.
    assert 1 <= opened.count(fake_registry.host) <= 2 and 1 <= opened.count(dest_fake.host) <= 2


def test_a_kept_alive_connection_the_server_dropped_is_not_used(monkeypatch):
    """The server hangs up after each answer without saying so: the next GET goes on a new
    connection, whether the drop is seen before sending or only when no answer comes."""

    def once(sock, method, path, headers, rfile):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        sock.shutdown(socket.SHUT_RDWR)  # and hang up
        return False

    server = RawServer(once)
    try:
        with RegistryClient() as client:
            def get():
                resp = client._send("GET", f"http://{server.host}/v2/a/blobs/x", host=server.host, scopes=(),
                                    what="downloading", stream=True, bulk=True)
                try:
                    return b"".join(resp.iter_raw())
                finally:
                    resp.close()

            assert get() == b"ok"
            time.sleep(0.05)
            assert get() == b"ok" and server.accepted == 2
            # The drop unseen at reuse (it happens between the check and the request): sent again.
            monkeypatch.setattr(registry_module, "_unusable", lambda sock: False)
            assert get() == b"ok" and server.accepted == 3
    finally:
        server.close()


# --------------------------------------------------------------------------- the call's deadline


def test_the_calls_deadline_bounds_blob_transfers_on_the_copy_threads(fake_registry, registry_b):
    image = make_image((2000, 3000))
    _serve_image(fake_registry, "src/app", image)
    slow = image.layers[1]
    served = fake_registry.routes[("GET", f"/v2/src/app/blobs/{slow.digest}")]

    def stall(handler):
        time.sleep(3)
        return served

    fake_registry.routes[("GET", f"/v2/src/app/blobs/{slow.digest}")] = stall
    with RegistryClient(timeout=30) as client:
        started = time.monotonic()
        with client.deadline(0.8), pytest.raises(RegistryError) as exc:
            client.copy(f"{fake_registry.host}/src/app@{image.digest}", registry_b.ref())
        took = time.monotonic() - started
    assert exc.value.retryable is True
    assert took < 2.5, f"took {took:.1f} s: the deadline did not reach the copy thread"
    assert not registry_b.pusher.manifest_exists(registry_b.repo(), image.digest)


# --------------------------------------------------------------------------- outbound policy


@pytest.mark.django_db
class TestPolicyOnBlobConnections:
    def policed_client(self):
        from promotions import mirror

        return RegistryClient(policy=mirror._CurrentPolicy(), timeout=2, connect_timeout=1)

    def test_a_name_that_resolves_to_loopback_is_refused_without_connecting(self, settings, fake_dns, black_hole):
        settings.HOIST_ALLOWED_REGISTRIES = []
        settings.HOIST_ALLOW_PRIVATE_REGISTRIES = False
        fake_dns["innocent.example"] = "127.0.0.1"
        host = f"innocent.example:{black_hole.port}"
        with self.policed_client() as client, pytest.raises(RegistryError) as refused:
            client._send("GET", f"http://{host}/v2/app/blobs/x", host=host, scopes=(), what="downloading", bulk=True)
        assert refused.value.code == OUTBOUND_REFUSED and not refused.value.retryable
        assert black_hole.accepted == 0

    # A blob redirect to a private address: test_outbound's redirect test, bulk=True.


# --------------------------------------------------------------------------- TLS


def _self_signed(workdir: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hoist-test-registry")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "tls.crt", workdir / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TLSRegistry(RegistryServer):
    """docker-registry serving https with a self-signed certificate for 127.0.0.1."""

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.cert_path, self.key_path = _self_signed(self.workdir)

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text()
        tls = f"http:\n  tls:\n    certificate: {self.cert_path}\n    key: {self.key_path}\n"
        self.config_path.write_text(text.replace("http:\n", tls, 1))

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        context = ssl.create_default_context(cafile=str(self.cert_path))
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1.0, verify=context).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        return False


@pytest.fixture
def tls_registry(tmp_path):
    from tests.fixtures.registry import registry_available

    if not registry_available():
        pytest.skip("docker-registry not installed")
    server = TLSRegistry(tmp_path / "tls-registry").start()
    yield server
    server.close()


def test_blobs_over_tls_are_copied_and_the_certificate_is_checked(registry, registry_b, tls_registry):
    image = make_image((3 * CHUNK, 1000))
    registry.push(image)
    tls = tls_registry.host

    def https_for_tls(host):
        return "https" if host == tls else "http"

    with RegistryClient(scheme_for=https_for_tls, verify=str(tls_registry.cert_path), chunk_size=CHUNK) as client:
        there = client.copy(registry.ref(digest=image.digest), f"{tls}/mirror/app")
        back = client.copy(f"{tls}/mirror/app@{image.digest}", registry_b.ref())
    assert there.blobs_copied == back.blobs_copied == 3 and back.bytes_copied == image.size
    assert registry_b.pusher.get_manifest(registry_b.repo(), image.digest).content == image.manifest
    for blob in image.blobs:
        assert registry_b.pusher.get_blob(registry_b.repo(), blob.digest) == blob.data
    context = ssl.create_default_context(cafile=str(tls_registry.cert_path))
    served = httpx.get(f"{tls_registry.url}/v2/mirror/app/manifests/{image.digest}", verify=context,
                       headers={"Accept": MANIFEST_ACCEPT})
    assert served.content == image.manifest

    # A client that doesn't trust the certificate never gets a blob through.
    with RegistryClient(scheme_for=https_for_tls) as untrusting, pytest.raises(RegistryError) as refused:
        untrusting._send("GET", f"https://{tls}/v2/mirror/app/blobs/{image.layers[0].digest}", host=tls, scopes=(),
                         what="downloading", bulk=True)
    assert "certificate" in str(refused.value).lower()


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("workers", [1, 4])
def test_parallel_blob_copies_hold_a_few_chunks_each(registry, registry_b, workers):
    chunk = 1024 * 1024
    image = make_image((16 * chunk,) * 4, seed=11)
    registry.push(image)
    total = image.size
    for i, layer in enumerate(image.layers):  # keep digests and sizes, drop our copy of the bytes
        image.layers[i] = Blob(b"", DOCKER_LAYER, digest=layer.digest)
    del layer
    with RegistryClient(chunk_size=chunk, max_workers=workers) as client:
        tracemalloc.start()
        try:
            result = client.copy(registry.ref(digest=image.digest), registry_b.ref())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.bytes_copied == total
    # Each copy thread holds the chunk being read and the one being sent.
    assert peak < (2 * workers + 2) * chunk, f"peak {peak / chunk:.1f} MiB with {workers} copy threads"


def test_ssl_contexts_are_built_once_per_setting(tmp_path):
    cert, _ = _self_signed(tmp_path)
    assert registry_module._ssl_context(True) is registry_module._ssl_context(True)
    assert registry_module._ssl_context(str(cert)) is registry_module._ssl_context(str(cert))
    assert registry_module._ssl_context(False).verify_mode == ssl.CERT_NONE
    assert registry_module._ssl_context(True).verify_mode == ssl.CERT_REQUIRED

