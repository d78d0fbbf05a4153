"""Benchmark: mirroring an image between two registries, Hoist's client vs skopeo.

    python -m bench.bench_mirror            # from /work/main; prints JSON
    from bench.bench_mirror import run      # → {"mirror_64mib": {...}} for bench/results.json

Starts throwaway ``docker-registry`` processes on loopback (``bench.registries``:
benchmarks don't import the test suite), pushes a generated ~64 MiB image in 8
layers to A, then times copies from A with ``promotions.registry.RegistryClient``
and with ``skopeo copy --preserve-digests``, interleaved so drift on the machine
hits both alike.

Every timed copy goes to a *fresh* destination registry. A fresh repository in a
shared one is not enough: skopeo's blob-info cache (/var/lib/containers/cache for
root) remembers which repositories of that registry already hold the blobs and
cross-mounts them, moving no bytes (measured: ~0.13 s instead of ~0.6 s).

Also measures the re-mirror of an image already present (target: one request) and
the client's peak Python memory (tracemalloc) for two layer sizes (target:
independent of blob size).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

# Runnable as a plain script too (python bench/bench_mirror.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from promotions.registry import RegistryClient  # noqa: E402
from bench.registries import Registries, make_image, push_image, registry_available  # noqa: E402

MIB = 1024 * 1024


def _skopeo_copy(src: str, dest: str) -> float:
    cmd = [
        "skopeo",
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{src}",
        f"docker://{dest}",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - t0


def _hoist_copy(src: str, dest: str) -> float:
    # A fresh client per run: cold connections, like a fresh skopeo process.
    t0 = time.perf_counter()
    with RegistryClient() as client:
        client.copy(src, dest)
    return time.perf_counter() - t0


def _peak_mem_mib(src_server, dest_server, layer_mib: int, layers: int = 2) -> float:
    image = make_image([layer_mib * MIB] * layers, seed=layer_mib)
    digest = push_image(src_server, f"bench/mem{layer_mib}", image)
    del image  # measure the client, not our generated data
    with RegistryClient() as client:
        tracemalloc.start()
        try:
            client.copy(f"{src_server.host}/bench/mem{layer_mib}@{digest}", f"{dest_server.host}/bench/mem{layer_mib}")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return round(peak / MIB, 2)


def run(repetitions: int = 5, total_mib: int = 64, layers: int = 8) -> dict:
    if not registry_available():
        return {"mirror_64mib": {"skipped": "docker-registry not installed"}}
    have_skopeo = shutil.which("skopeo") is not None
    factory = Registries()
    try:
        a = factory.start()
        image = make_image([total_mib * MIB // layers] * layers, seed=64)
        src = f"{a.host}/bench/src@{push_image(a, 'bench/src', image)}"
        image_bytes = image.size
        image.release_layer_data()  # free ~64 MiB

        def fresh_dest(copy_fn) -> float:
            dest = factory.start()
            try:
                return copy_fn(src, f"{dest.host}/bench/mirror")
            finally:
                dest.stop()

        # Warm-up (page cache, registry code paths), not measured.
        fresh_dest(_hoist_copy)
        if have_skopeo:
            fresh_dest(_skopeo_copy)

        hoist, skopeo = [], []
        for _ in range(repetitions):
            hoist.append(fresh_dest(_hoist_copy))
            if have_skopeo:
                skopeo.append(fresh_dest(_skopeo_copy))

        b = factory.start()
        _hoist_copy(src, f"{b.host}/bench/hoist-0")

        # Re-mirror of a present image: count requests and time with a warm client.
        remirror_times = []
        with RegistryClient() as client:
            client.copy(src, f"{b.host}/bench/hoist-0")  # warm the connection
            before = client.request_count
            client.copy(src, f"{b.host}/bench/hoist-0")
            remirror_requests = client.request_count - before
            for _ in range(20):
                t0 = time.perf_counter()
                client.copy(src, f"{b.host}/bench/hoist-0")
                remirror_times.append(time.perf_counter() - t0)

        figures: dict = {
            "image_mib": round(image_bytes / MIB, 1),
            "layers": layers,
            "repetitions": repetitions,
            "hoist_median_s": round(statistics.median(hoist), 4),
            "hoist_throughput_mib_s": round(image_bytes / MIB / statistics.median(hoist), 1),
            "remirror_requests": remirror_requests,
            "remirror_s": round(statistics.median(remirror_times), 5),
            "peak_mem_mib_8mib_layers": _peak_mem_mib(a, b, 8),
            "peak_mem_mib_32mib_layers": _peak_mem_mib(a, b, 32),
        }
        if have_skopeo:
            figures["skopeo_median_s"] = round(statistics.median(skopeo), 4)
            figures["ratio_vs_skopeo"] = round(statistics.median(hoist) / statistics.median(skopeo), 3)
        return {"mirror_64mib": figures}
    finally:
        factory.close()


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
