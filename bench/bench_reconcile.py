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
import os
import statistics
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
    """Records, per (namespace, name, digest), when a watch first saw that image."""

    def __init__(self, api_url: str, namespaces: list[str]):
        from kubernetes import client, watch

        self.seen: dict[tuple[str, str, str], float] = {}
        self.cond = threading.Condition()
        self.stopping = False
        self.threads = []
        for namespace in namespaces:
            api = client.AppsV1Api(client.ApiClient(client.Configuration(host=api_url)))
            thread = threading.Thread(target=self._run, args=(api, watch, namespace), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, api, watch_module, namespace):
        resource_version = None
        while not self.stopping:
            w = watch_module.Watch()
            try:
                for event in w.stream(api.list_namespaced_deployment, namespace=namespace, timeout_seconds=5,
                                      resource_version=resource_version):
                    obj = event["object"]
                    resource_version = obj.metadata.resource_version
                    image = obj.spec.template.spec.containers[0].image
                    digest = image.rpartition("@")[2]
                    key = (namespace, obj.metadata.name, digest)
                    with self.cond:
                        self.seen.setdefault(key, time.monotonic())
                        self.cond.notify_all()
                    if self.stopping:
                        break
            except Exception:  # a watch that ends (timeout, 410) is simply restarted
                resource_version = None
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

    def stop(self):
        self.stopping = True


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
    chain_prod = env_services.resource_create(environment=prod, name="chain", source_type=SourceType.PROMOTE,
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
    from promotions import services

    latencies = []
    started = time.monotonic()
    for r in range(rounds):
        digest = _digest(f"{upstream.pk}-{r}-{time.time()}")
        t0 = time.monotonic()
        services.artifact_publish(resource=upstream, digest=digest, origin="api")
        # The service enqueues on commit; outside a transaction that is now.
        seen = watch.wait_for([(ns, name, digest) for ns, name in targets], TIMEOUT_S)
        latencies += [t - t0 for t in seen.values()]
    elapsed = time.monotonic() - started
    hops = 3 if len(targets) == 1 and targets[0][1] == "chain" else 1 + len(targets)
    return {
        "publishes": rounds,
        "samples": len(latencies),
        "p50_s": round(_percentile(latencies, 50), 3),
        "p95_s": round(_percentile(latencies, 95), 3),
        "p99_s": round(_percentile(latencies, 99), 3),
        "max_s": round(max(latencies), 3),
        "reconciles_per_s": round(hops * rounds / elapsed, 1),
    }


def run(*, workers: int | None = None) -> dict:
    from django.db import connection

    workers = workers or int(os.environ.get("HOIST_Q_WORKERS", "4"))
    sandbox, api_url = _start_sandbox()
    worker = None
    watch = None
    try:
        world = _setup_world(api_url, [1, 10, 100])
        connection.close()
        worker = _start_worker(workers)
        watch = DeploymentWatch(api_url, world["namespaces"])
        # Let the initial reconciles of every resource settle (the first publishes).
        first = [(ns, "chain", _digest("seed")) for ns in world["namespaces"]]
        watch.wait_for(first, TIMEOUT_S)
        for n in (1, 10, 100):
            upstream, targets = world[f"fanout_{n}"]
            watch.wait_for([(ns, name, _digest("seed")) for ns, name in targets], TIMEOUT_S)
        results = {}
        results["reconcile_chain_3_stages"] = _scenario(watch, world["chain"][0], world["chain"][1], rounds=30)
        for n, rounds in ((1, 30), (10, 15), (100, 6)):
            upstream, targets = world[f"fanout_{n}"]
            results[f"reconcile_fanout_{n}"] = _scenario(watch, upstream, targets, rounds=rounds)
        for figures in results.values():
            figures["q_workers"] = workers
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


if __name__ == "__main__":
    from bench import setup_django

    setup_django()
    for name, figures in run().items():
        print(name, figures)
