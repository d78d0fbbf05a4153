"""Benchmark: mirroring an image between two registries, Hoist's client vs skopeo.

    python -m bench.bench_mirror            # from /work/main; prints JSON
    from bench.bench_mirror import run      # → {"mirror_64mib": {...}} for bench/results.json

Starts throwaway ``docker-registry`` processes on loopback (``bench.registries``:
benchmarks don't import the test suite), pushes a generated ~64 MiB image in 8
layers to A, then times copies from A with ``promotions.registry.RegistryClient``
and with ``skopeo copy --preserve-digests``, interleaved (the order alternating
round by round) so drift on the machine hits both alike.

Every timed copy goes to a *fresh* destination registry. A fresh repository in a
shared one is not enough: skopeo's blob-info cache (/var/lib/containers/cache for
root) remembers which repositories of that registry already hold the blobs and
cross-mounts them, moving no bytes (measured: ~0.13 s instead of ~0.6 s).

What is timed: for Hoist a fresh ``RegistryClient`` (cold connections) copying in
this process; for skopeo its whole process, as an operator would run it (its start
and its blob-info cache writes included: ``skopeo_small_s``, the same copy of a
one-layer 1 KiB image, shows that fixed part). Besides the wall times, the CPU
seconds of the copier and of the two registries during each copy: on this 2-core
machine the three share the cores, so they bound what either tool can reach.

Also measures the re-mirror of an image already present (target: one request) and
the client's peak Python memory (tracemalloc) for two layer sizes (target:
independent of blob size).
"""

from __future__ import annotations

import json
import resource
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


def _skopeo_copy(src: str, dest: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the skopeo process)."""
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
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _hoist_copy(src: str, dest: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process). A fresh client per run: cold
    connections, like a fresh skopeo process."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with RegistryClient() as client:
        client.copy(src, dest)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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


def run(repetitions: int = 15, total_mib: int = 64, layers: int = 8) -> dict:
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
        small = make_image([1024], seed=65)
        small_src = f"{a.host}/bench/small@{push_image(a, 'bench/small', small)}"

        def fresh_dest(copy_fn, source: str = src) -> dict:
            dest = factory.start()
            try:
                registries = a.cpu_seconds() + dest.cpu_seconds()
                wall, cpu = copy_fn(source, f"{dest.host}/bench/mirror")
                return {"wall": wall, "cpu": cpu, "registries_cpu": a.cpu_seconds() + dest.cpu_seconds() - registries}
            finally:
                dest.stop()

        tools = {"hoist": _hoist_copy}
        if have_skopeo:
            tools["skopeo"] = _skopeo_copy
        # Warm-up (page cache, registry code paths, skopeo's binary), not measured.
        for copy_fn in tools.values():
            fresh_dest(copy_fn)
            fresh_dest(copy_fn, small_src)

        runs: dict[str, list[dict]] = {name: [] for name in tools}
        small_runs: dict[str, list[float]] = {name: [] for name in tools}
        for round_ in range(repetitions):
            for name in (list(tools) if round_ % 2 == 0 else list(reversed(tools))):
                runs[name].append(fresh_dest(tools[name]))
                small_runs[name].append(fresh_dest(tools[name], small_src)["wall"])

        def median(name: str, key: str) -> float:
            return statistics.median(r[key] for r in runs[name])

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

        hoist_s = median("hoist", "wall")
        figures: dict = {
            "image_mib": round(image_bytes / MIB, 1),
            "layers": layers,
            "repetitions": repetitions,
            "hoist_median_s": round(hoist_s, 4),
            "hoist_throughput_mib_s": round(image_bytes / MIB / hoist_s, 1),
            "hoist_cpu_s": round(median("hoist", "cpu"), 3),
            "registries_cpu_s_hoist": round(median("hoist", "registries_cpu"), 3),
            "hoist_small_s": round(statistics.median(small_runs["hoist"]), 4),
            "remirror_requests": remirror_requests,
            "remirror_s": round(statistics.median(remirror_times), 5),
            "peak_mem_mib_8mib_layers": _peak_mem_mib(a, b, 8),
            "peak_mem_mib_32mib_layers": _peak_mem_mib(a, b, 32),
        }
        if have_skopeo:
            skopeo_s = median("skopeo", "wall")
            figures.update({
                "skopeo_median_s": round(skopeo_s, 4),
                "skopeo_cpu_s": round(median("skopeo", "cpu"), 3),
                "registries_cpu_s_skopeo": round(median("skopeo", "registries_cpu"), 3),
                "skopeo_small_s": round(statistics.median(small_runs["skopeo"]), 4),
                "ratio_vs_skopeo": round(hoist_s / skopeo_s, 3),
                # The same ratio round by round (each pair ran back to back): its spread shows the noise.
                "ratio_per_round": sorted(round(h["wall"] / k["wall"], 2) for h, k in zip(runs["hoist"], runs["skopeo"])),
            })
        return {"mirror_64mib": figures}
    finally:
        factory.close()


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
