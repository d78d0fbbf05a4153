"""`python -m sandbox.registry --port N --root DIR [--notify URL --notify-token T] [--seed REPO:TAG]`

Runs Debian's docker-registry (CNCF distribution) on 127.0.0.1 with its own
config under DIR (never the system's /etc/docker/registry/config.yml), for
`make run`. Prints `127.0.0.1:<port>` on the first stdout line once the
registry answers, then serves until SIGTERM/SIGINT. With --notify, the
registry posts push events to Hoist's webhook; with --seed, a small generated
image is pushed to REPO:TAG first, so the demo has real bytes to promote.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(root: Path, port: int, notify: str | None, notify_token: str | None) -> Path:
    storage = root / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {storage}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        f"  secret: {uuid.uuid4().hex}",
    ]
    if notify:
        lines += ["notifications:", "  endpoints:", "    - name: hoist", f"      url: {notify}",
                  "      timeout: 2s", "      threshold: 5", "      backoff: 1s"]
        if notify_token:
            lines += ["      headers:", f"        Authorization: [Bearer {notify_token}]"]
    config = root / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    return config


def seed_image(base: str, repository: str, tag: str, note: str) -> str:
    """Push a one-layer image (a text file) and return its digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = f"hoist demo image: {note}\n".encode()
        info = tarfile.TarInfo("hoist-demo.txt")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["cat", "/hoist-demo.txt"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    with httpx.Client(base_url=base, timeout=30) as http:
        for blob in (layer, config):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            start = http.post(f"/v2/{repository}/blobs/uploads/")
            start.raise_for_status()
            location = httpx.URL(base).join(start.headers["Location"])
            http.put(location.copy_merge_params({"digest": digest}), content=blob,
                     headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                       "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                        "digest": "sha256:" + hashlib.sha256(layer).hexdigest()}],
        }, indent=2).encode()
        http.put(f"/v2/{repository}/manifests/{tag}", content=manifest,
                 headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"}).raise_for_status()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.registry", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--root", required=True, help="directory for config and storage")
    parser.add_argument("--notify", help="Hoist webhook URL for push events")
    parser.add_argument("--notify-token", help="bearer token sent with notifications")
    parser.add_argument("--seed", help="push a generated image to REPO:TAG before serving")
    args = parser.parse_args(argv)

    binary = shutil.which("docker-registry")
    if binary is None:
        print("docker-registry is not installed (apt-get install docker-registry)", file=sys.stderr)
        return 2
    port = args.port or free_port()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    notify = args.notify
    if notify and "registry=" not in notify:
        # Tell Hoist which registry is speaking (pushes name only the repository path).
        notify += ("&" if "?" in notify else "?") + f"registry=127.0.0.1:{port}"
    config = write_config(root, port, notify, args.notify_token)
    child = subprocess.Popen([binary, "serve", str(config)], stdin=subprocess.DEVNULL,
                             stdout=open(root / "registry.log", "ab"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(base + "/v2/", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if child.poll() is not None or time.monotonic() > deadline:
            print(f"docker-registry did not start; see {root / 'registry.log'}", file=sys.stderr)
            child.kill()
            return 1
        time.sleep(0.05)
    seeded = ""
    if args.seed:
        repository, _, tag = args.seed.rpartition(":")
        seeded = seed_image(base, repository, tag, args.seed)
    print(f"127.0.0.1:{port}" + (f" {seeded}" if seeded else ""), flush=True)

    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(1))
    try:
        while not stopping and child.poll() is None:
            time.sleep(0.3)
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
