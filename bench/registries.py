"""Throwaway container registries and generated images for the benchmarks.

Self-contained on purpose: benchmarks never import the test suite. The config
file and the free-port helper come from ``sandbox.registry`` (the same config
``make run`` uses); everything else is plain ``subprocess`` + ``httpx``.

    with Registries() as registries:
        a = registries.start()                        # docker-registry on 127.0.0.1:<port>
        image = make_image([8 * MIB] * 2, seed=1)     # 2 layers of 8 MiB random payload
        digest = push_image(a, "bench/app", image)    # == image.digest
        image.release_layer_data()                    # keep digests/sizes, drop the bytes

The pusher talks HTTP itself rather than using ``promotions.registry``: the
client being measured must not also be the one that prepares its input.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable
from urllib.parse import urljoin

import httpx

from sandbox.registry import free_port, write_config

MIB = 1024 * 1024
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def registry_available() -> bool:
    """True when Debian's ``docker-registry`` (CNCF distribution) is on PATH."""
    return shutil.which("docker-registry") is not None


# --------------------------------------------------------------------------- registry process


class Registry:
    """One ``docker-registry`` process on 127.0.0.1 with config and storage in a temp dir."""

    def __init__(self, proc: subprocess.Popen, port: int, workdir: Path):
        self._proc: subprocess.Popen | None = proc
        self.port = port
        self.workdir = workdir

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process has used so far (Linux /proc)."""
        if self._proc is None:
            return 0.0
        with open(f"/proc/{self._proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stop(self) -> None:
        """Terminate the process and delete its temp dir (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _wait_ready(proc: subprocess.Popen, url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False  # exited: usually the port was taken between free_port() and bind
        try:
            if httpx.get(f"{url}/v2/", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    return False


def start_registry(timeout: float = 15.0, attempts: int = 3) -> Registry:
    """Start a registry and wait until ``GET /v2/`` answers 200."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    last_log = ""
    for _ in range(attempts):  # free_port() is racy: retry on a fresh port if the bind fails
        workdir = Path(tempfile.mkdtemp(prefix="hoist-bench-registry-"))
        port = free_port()
        config = write_config(workdir, port, None, None)
        log_path = workdir / "registry.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C to the bench must not race our own shutdown
            )
        registry = Registry(proc, port, workdir)
        if _wait_ready(proc, registry.url, timeout):
            return registry
        last_log = log_path.read_text(errors="replace")[-2000:]
        registry.stop()
    raise RuntimeError(f"docker-registry did not start after {attempts} attempts:\n{last_log}")


class Registries:
    """Starts registries on demand and stops every one of them on ``close()`` / exit."""

    def __init__(self) -> None:
        self._started: list[Registry] = []

    def start(self) -> Registry:
        registry = start_registry()
        self._started.append(registry)
        return registry

    def close(self) -> None:
        while self._started:
            self._started.pop().stop()

    def __enter__(self) -> "Registries":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- generated images


@dataclass
class Blob:
    data: bytes
    media_type: str
    digest: str = ""
    size: int = -1

    def __post_init__(self) -> None:
        self.digest = self.digest or sha256_digest(self.data)
        if self.size < 0:
            self.size = len(self.data)

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "size": self.size, "digest": self.digest}


@dataclass
class Image:
    manifest: bytes  # exactly the bytes pushed: the digest is over these
    media_type: str
    config: Blob
    layers: list[Blob] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]

    @property
    def size(self) -> int:
        """Bytes of config + layers (still right after ``release_layer_data``)."""
        return sum(b.size for b in self.blobs)

    def release_layer_data(self) -> None:
        """Drop the layer bytes, keeping digests and sizes (the image can't be pushed again)."""
        for layer in self.layers:
            layer.data = b""


def _make_layer(size: int, rng: random.Random, index: int) -> tuple[Blob, str]:
    """A gzip'd tar (level 0) holding one file of ``size`` seeded random bytes → (blob, diff_id).

    A real tar.gz so skopeo sees a plausible layer; random data doesn't compress,
    so level 0 keeps generation fast and the blob about ``size`` bytes.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"layer-{index}-{rng.getrandbits(64):016x}.bin")
        info.size, info.mtime = size, 0
        tar.addfile(info, io.BytesIO(rng.randbytes(size)))
    raw = buf.getvalue()
    del buf
    diff_id = sha256_digest(raw)
    return Blob(gzip.compress(raw, compresslevel=0, mtime=0), DOCKER_LAYER), diff_id


def make_image(layer_sizes: Iterable[int], *, seed: int = 0) -> Image:
    """A Docker v2 schema-2 image: one layer per payload size, a config, a manifest.

    Same seed, same bytes, same digest.
    """
    rng = random.Random(seed)
    layers, diff_ids = [], []
    for i, n in enumerate(layer_sizes):
        blob, diff_id = _make_layer(n, rng, i)
        layers.append(blob)
        diff_ids.append(diff_id)
    config_doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/true"], "Labels": {"hoist.bench.seed": str(seed)}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "hoist bench"} for _ in layers],
    }
    config = Blob(json.dumps(config_doc, indent=1).encode(), DOCKER_CONFIG)
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    return Image(json.dumps(manifest_doc, indent=3).encode() + b"\n", DOCKER_MANIFEST, config, layers)


# --------------------------------------------------------------------------- pushing


def _push_blob(http: httpx.Client, base: str, repo: str, blob: Blob) -> None:
    r = http.post(f"{base}/v2/{repo}/blobs/uploads/")
    if r.status_code != 202:
        raise RuntimeError(f"upload start for {blob.digest}: HTTP {r.status_code} {r.text[:300]}")
    # Keep the Location's query (_state etc.) as it is and append the digest.
    location = urljoin(base + "/", r.headers["Location"])
    sep = "&" if "?" in location else "?"
    r = http.put(f"{location}{sep}digest={blob.digest}", content=blob.data,
                 headers={"Content-Type": "application/octet-stream"})
    if r.status_code != 201:
        raise RuntimeError(f"upload of {blob.digest}: HTTP {r.status_code} {r.text[:300]}")


def push_image(registry: Registry, repo: str, image: Image, tag: str | None = None) -> str:
    """Push blobs (POST + monolithic PUT) then the manifest bytes as built; returns the digest."""
    with httpx.Client(timeout=120.0) as http:
        for blob in image.blobs:
            _push_blob(http, registry.url, repo, blob)
        r = http.put(f"{registry.url}/v2/{repo}/manifests/{tag or image.digest}", content=image.manifest,
                     headers={"Content-Type": image.media_type})
        if r.status_code != 201:
            raise RuntimeError(f"manifest push to {repo}: HTTP {r.status_code} {r.text[:300]}")
    digest = r.headers.get("Docker-Content-Digest", "")
    if digest != image.digest:
        raise RuntimeError(f"registry stored {digest or 'no digest'} for a manifest whose digest is {image.digest}")
    return digest
