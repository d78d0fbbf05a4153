"""publish → applied, over the real path.

A publish goes through the service (as the API and the webhook do), the
django-q2 worker processes (`manage.py qcluster`, ORM broker) reconcile, and
the sandbox Kubernetes API (a separate process, over HTTP) receives the
Deployments. The clock stops when a watch on the downstream namespace sees the
Deployment carrying the new digest, so what is measured is what a person
would see in the cluster, not a timestamp Hoist wrote itself.

Scenarios: fan-out 1, 10 and 100 track-latest dependants of one upstream, and
a 3-stage chain dev → staging → prod (all on one cluster: the ImageSource path).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 60


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class DeploymentWatch:
    """Records, per (namespace, name, digest), when a watch first saw that image.

    A raw HTTP watch (newline-delimited JSON) rather than the client's typed
    watch: turning every event into model objects would spend the CPU the
    workers being measured need.
    """

    def __init__(self, api_url: str, namespaces: list[str]):
        self.api_url = api_url
        self.seen: dict[tuple[str, str, str], float] = {}
        self.cond = threading.Condition()
        self.stopping = False
        self.threads = []
        for namespace in namespaces:
            thread = threading.Thread(target=self._run, args=(namespace,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, namespace):
        import json

        import httpx

        url = f"{self.api_url}/apis/apps/v1/namespaces/{namespace}/deployments"
        while not self.stopping:
            try:
                with httpx.stream("GET", url, params={"watch": "1", "timeoutSeconds": "5"}, timeout=10) as response:
                    for line in response.iter_lines():
                        if not line:
                            continue
                        obj = json.loads(line)["object"]
                        image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
                        key = (namespace, obj["metadata"]["name"], image.rpartition("@")[2])
                        now = time.monotonic()
                        with self.cond:
                            self.seen.setdefault(key, now)
                            if _healthy(obj):
                                self.seen.setdefault((*key, "healthy"), now)
                            self.cond.notify_all()
                        if self.stopping:
                            break
            except (httpx.HTTPError, ValueError, KeyError):  # a watch that ends is simply restarted
                time.sleep(0.05)

    def wait_for(self, keys: list[tuple[str, str, str]], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(k in self.seen for k in keys):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [k for k in keys if k not in self.seen]
                    raise TimeoutError(f"{len(missing)} deployments never reached their digest, e.g. {missing[:3]}")
                self.cond.wait(left)
            return {k: self.seen[k] for k in keys}

    def forget(self, namespace: str, name: str, digest: str) -> None:
        """Wait for this image anew (it may come back after a change)."""
        with self.cond:
            self.seen.pop((namespace, name, digest), None)
            self.seen.pop((namespace, name, digest, "healthy"), None)

    def stop(self):
        self.stopping = True


def _healthy(deployment: dict) -> bool:
    """As `kubectl rollout status` judges it: the generation observed, every replica updated and available."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    replicas = spec.get("replicas", 1)
    return (status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 1)
            and status.get("updatedReplicas", 0) == replicas == status.get("availableReplicas", 0)
            and status.get("replicas", 0) == replicas)


def _start_sandbox() -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, "-m", "sandbox", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return child, child.stdout.readline().strip()


def _start_worker(workers: int) -> subprocess.Popen:
    env = {**os.environ, "HOIST_Q_WORKERS": str(workers), "LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _setup_world(api_url: str, fanouts: list[int]):
    from environments import services as env_services
    from environments.models import Binding, Cluster, SourceType
    from projects.models import Project

    cluster = Cluster.objects.filter(slug="bench-a").first() or env_services.cluster_create(
        name="bench-a", slug="bench-a", api_url=api_url)
    cluster.api_url = api_url
    cluster.save()
    project = Project.objects.create(slug=f"bench-{int(time.time() * 1000) % 10**9}", name="bench")
    ns = project.slug

    def env(slug):
        return env_services.environment_create(project=project, name=slug, slug=slug, cluster=cluster, namespace=f"{ns}-{slug}")

    dev, staging, prod = env("dev"), env("staging"), env("prod")
    world = {"project": project, "namespaces": [dev.namespace, staging.namespace, prod.namespace]}
    image = "registry.bench.local/app/{name}@" + _digest("seed")
    # Chain: dev/chain → staging/chain → prod/chain.
    chain_dev = env_services.resource_create(environment=dev, name="chain", source_type=SourceType.IMAGE, image=image.format(name="chain"))
    chain_staging = env_services.resource_create(environment=staging, name="chain", source_type=SourceType.PROMOTE,
                                                 promote_from=chain_dev, binding=Binding.TRACK_LATEST)
    env_services.resource_create(environment=prod, name="chain", source_type=SourceType.PROMOTE,
                                              promote_from=chain_staging, binding=Binding.TRACK_LATEST)
    world["chain"] = (chain_dev, [(prod.namespace, "chain")])
    for n in fanouts:
        upstream = env_services.resource_create(environment=dev, name=f"fan{n}", source_type=SourceType.IMAGE,
                                                image=image.format(name=f"fan{n}"), ports=[8080])
        downstream = []
        for i in range(n):
            env_services.resource_create(environment=staging, name=f"fan{n}-d{i}", source_type=SourceType.PROMOTE,
                                         promote_from=upstream, binding=Binding.TRACK_LATEST, ports=[8080])
            downstream.append((staging.namespace, f"fan{n}-d{i}"))
        world[f"fanout_{n}"] = (upstream, downstream)
    return world


def _scenario(watch: DeploymentWatch, upstream, targets, rounds: int) -> dict:
    from environments import services

    latencies, healthy = [], []
    started = time.monotonic()
    for r in range(rounds):
        digest = _digest(f"{upstream.pk}-{r}-{time.time()}")
        t0 = time.monotonic()
        services.artifact_publish(resource=upstream, digest=digest, origin="api")
        # The service enqueues on commit; outside a transaction that is now.
        seen = watch.wait_for([(ns, name, digest) for ns, name in targets], TIMEOUT_S)
        latencies += [t - t0 for t in seen.values()]
        ran = watch.wait_for([(ns, name, digest, "healthy") for ns, name in targets], TIMEOUT_S)
        healthy += [t - t0 for t in ran.values()]
    elapsed = time.monotonic() - started
    hops = 3 if len(targets) == 1 and targets[0][1] == "chain" else 1 + len(targets)
    return {
        "publish_to_healthy_p50_s": round(_percentile(healthy, 50), 3),
        "publish_to_healthy_p99_s": round(_percentile(healthy, 99), 3),
        "publishes": rounds,
        "samples": len(latencies),
        "p50_s": round(_percentile(latencies, 50), 3),
        "p95_s": round(_percentile(latencies, 95), 3),
        "p99_s": round(_percentile(latencies, 99), 3),
        "max_s": round(max(latencies), 3),
        "reconciles_per_s": round(hops * rounds / elapsed, 1),
    }


def _measure(workers: int) -> dict:
    from django.db import connection

    sandbox, api_url = _start_sandbox()
    worker = None
    watch = None
    try:
        world = _setup_world(api_url, [1, 10, 100])
        connection.close()
        worker = _start_worker(workers)
        watch = DeploymentWatch(api_url, world["namespaces"])
        # Let the initial reconciles of every resource settle (the first publishes).
        watch.wait_for([(ns, "chain", _digest("seed")) for ns in world["namespaces"]], TIMEOUT_S)
        for n in (1, 10, 100):
            _, targets = world[f"fanout_{n}"]
            watch.wait_for([(ns, name, _digest("seed")) for ns, name in targets], TIMEOUT_S)
        results = {"reconcile_chain_3_stages": _scenario(watch, world["chain"][0], world["chain"][1], rounds=30)}
        for n, rounds in ((1, 30), (10, 15), (100, 8)):
            upstream, targets = world[f"fanout_{n}"]
            results[f"reconcile_fanout_{n}"] = _scenario(watch, upstream, targets, rounds=rounds)
        return results
    finally:
        if watch:
            watch.stop()
        if worker:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        sandbox.terminate()
        sandbox.wait(timeout=10)


def _redis_url() -> str | None:
    url = os.environ.get("HOIST_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.flushdb()  # the bench's own database index: no stale tasks from an earlier run
    except Exception:  # no Redis here: that half of the bench is skipped
        return None
    return url


def run(*, workers: int | None = None) -> dict:
    """Both brokers: the default ORM broker (polls the database), and Redis (blocking pop).

    The Redis half runs in a child process, because django-q2 picks its
    broker from the settings when Django starts.
    """
    workers = workers or int(os.environ.get("HOIST_Q_WORKERS", "4"))
    broker = "redis" if os.environ.get("REDIS_URL") else "orm"
    results = {}
    for name, figures in _measure(workers).items():
        results[name if broker == "orm" else f"{name}_redis"] = {**figures, "q_workers": workers, "broker": broker}
    redis_url = _redis_url()
    if broker == "orm" and redis_url:
        child = subprocess.run(
            [sys.executable, "-m", "bench.bench_reconcile", "--json"], cwd=ROOT, capture_output=True, text=True,
            # The same (already migrated) database: the child must not recreate it.
            env={**os.environ, "REDIS_URL": redis_url, "HOIST_BENCH_DATABASE_URL": os.environ["DATABASE_URL"]},
            timeout=900,
        )
        if child.returncode != 0:
            raise RuntimeError(f"the Redis-broker run failed:\n{child.stderr[-2000:]}")
        results.update(json.loads(child.stdout.strip().splitlines()[-1]))
    return results


if __name__ == "__main__":
    from bench import setup_django

    setup_django()
    figures = run()
    if "--json" in sys.argv:
        print(json.dumps(figures))
    else:
        for name, values in figures.items():
            print(name, values)
