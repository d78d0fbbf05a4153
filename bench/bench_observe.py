"""Knowing what runs: recovery from lost workers and empty clusters, drift repair, failed rollouts.

Everything over the real path: django-q2 workers (`manage.py qcluster`,
ORM broker) and the observer (`manage.py observe`) as separate processes,
the sandbox Kubernetes API as its own process over HTTP. Clocks stop when
a watch on the cluster (or Hoist's own record, for a failure) shows the
outcome, never at a timestamp Hoist wrote for itself.

- `recovery_worker_kill`: a publish to 30 track-latest dependants, the
  workers killed with SIGKILL 0.15 s later (mid fan-out), then restarted:
  seconds from the restart until all 30 run the new digest.
- `recovery_cluster_restart`: the cluster's API server is down for 30 s and
  comes back empty (a new process on the same port): seconds from it being
  up again until every Deployment and Service is back.
- `drift_repair`: a Deployment's image edited by hand: seconds until the
  cluster runs Hoist's digest again.
- `failed_rollout`: a digest that never becomes available, published to dev
  (rollback on failure, 2 s progress deadline; staging follows dev's
  healthy digest): seconds from the publish until the failure is recorded,
  and until dev runs its previous digest again; staging must never see the
  failing digest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from bench import hoist_env
from bench.bench_reconcile import ROOT, DeploymentWatch, _digest

TIMEOUT_S = 60
DOWN_S = float(os.environ.get("HOIST_BENCH_CLUSTER_DOWN_S", "30"))


def _sandbox(port: int = 0) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, "-m", "sandbox", "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    return child, child.stdout.readline().strip()


def _process(*command: str, workers: int = 4) -> subprocess.Popen:
    env = hoist_env(HOIST_Q_WORKERS=str(workers), LOG_LEVEL=os.environ.get("HOIST_BENCH_LOG_LEVEL", "WARNING"))
    log = os.environ.get("HOIST_BENCH_LOG")  # a directory: each process's output, for looking into a slow run
    out = open(os.path.join(log, f"{command[0]}.log"), "ab") if log else subprocess.DEVNULL
    # Its own process group: SIGKILL reaches qcluster's worker processes too, as a node dying would.
    return subprocess.Popen([sys.executable, "manage.py", *command], cwd=ROOT, env=env, start_new_session=True,
                            stdout=out, stderr=subprocess.STDOUT)


def _stop(child: subprocess.Popen | None, *, kill: bool = False) -> None:
    if child is None or child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGKILL if kill else signal.SIGTERM)
        child.wait(timeout=15)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait(timeout=5)


def _world(api_url: str, dependants: int):
    from environments import services
    from environments.models import Binding, Cluster, SourceType
    from projects.models import Project

    cluster = Cluster.objects.filter(slug="bench-obs").first() or services.cluster_create(
        name="bench-obs", slug="bench-obs", api_url=api_url)
    services.cluster_update(cluster=cluster, api_url=api_url)
    project = Project.objects.create(slug=f"obs-{int(time.time() * 1000) % 10**9}", name="observe bench")
    env = {slug: services.environment_create(project=project, name=slug, slug=slug, cluster=cluster,
                                             namespace=f"{project.slug}-{slug}")
           for slug in ("dev", "staging")}
    image = "registry.bench.local/obs/{name}@" + _digest("seed")
    fan = services.resource_create(environment=env["dev"], name="fan", source_type=SourceType.IMAGE,
                                   image=image.format(name="fan"), ports=[8080])
    followers = [services.resource_create(environment=env["staging"], name=f"f{i}", source_type=SourceType.PROMOTE,
                                          promote_from=fan, binding=Binding.TRACK_LATEST, ports=[8080])
                 for i in range(dependants)]
    app = services.resource_create(environment=env["dev"], name="app", source_type=SourceType.IMAGE,
                                   image=image.format(name="app"), ports=[8080], rollback_on_failure=True,
                                   progress_deadline_seconds=2, replicas=2)
    app_staging = services.resource_create(environment=env["staging"], name="app", source_type=SourceType.PROMOTE,
                                           promote_from=app, binding=Binding.TRACK_LATEST, ports=[8080])
    return {"env": env, "fan": fan, "followers": followers, "app": app, "app_staging": app_staging,
            "namespaces": [env["dev"].namespace, env["staging"].namespace]}


def _targets(world) -> list[tuple[str, str]]:
    staging = world["env"]["staging"].namespace
    return [(staging, f.name) for f in world["followers"]]


def _settle(timeout: float = 30.0) -> float:
    """Wait until nothing is queued, dirty or claimed (each scenario starts from rest)."""
    from django_q.models import OrmQ

    from environments.models import Resource

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        busy = OrmQ.objects.exists() or Resource.objects.filter(dirty_at__isnull=False).exists()
        if not busy:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    return time.monotonic() - t0


def recovery_worker_kill(world, api_url, watch, processes) -> dict:
    from environments import services

    digest = _digest(f"kill-{time.time()}")
    services.artifact_publish(resource=world["fan"], digest=digest, origin="api")
    time.sleep(0.15)
    _stop(processes["worker"], kill=True)
    restarted = time.monotonic()
    processes["worker"] = _process("qcluster")
    targets = [(ns, name, digest) for ns, name in _targets(world)]
    seen = watch.wait_for(targets, TIMEOUT_S)
    reached_before_kill = sum(1 for t in seen.values() if t < restarted)
    return {"dependants": len(targets), "converged_after_restart_s": round(max(seen.values()) - restarted, 3),
            "reached_before_the_kill": reached_before_kill}


def drift_repair(world, api_url, watch) -> dict:
    namespace, name = world["env"]["staging"].namespace, world["followers"][0].name
    live = httpx.get(f"{api_url}/apis/apps/v1/namespaces/{namespace}/deployments/{name}").json()
    hoists = live["spec"]["template"]["spec"]["containers"][0]["image"].rpartition("@")[2]  # what Hoist applied
    samples = []
    for n in range(5):
        bogus = _digest(f"hand-edit-{n}-{time.time()}")
        watch.forget(namespace, name, hoists)  # before the edit: the repair may beat us to it
        t0 = time.monotonic()
        httpx.patch(f"{api_url}/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                    json={"spec": {"template": {"spec": {"containers": [{"name": name, "image": f"hand/edit@{bogus}"}]}}}},
                    headers={"Content-Type": "application/strategic-merge-patch+json"}).raise_for_status()
        watch.wait_for([(namespace, name, bogus)], TIMEOUT_S)
        repaired = watch.wait_for([(namespace, name, hoists)], TIMEOUT_S)[(namespace, name, hoists)]
        samples.append(repaired - t0)
        time.sleep(0.3)
    return {"edits": len(samples), "repaired_s": round(max(samples), 3),
            "repaired_median_s": round(sorted(samples)[len(samples) // 2], 3),
            "repaired_each_s": [round(x, 3) for x in samples]}


def failed_rollout(world, api_url, watch) -> dict:
    from environments import services
    from environments.models import Resource

    app, app_staging = world["app"], world["app_staging"]
    dev_ns, staging_ns = world["env"]["dev"].namespace, world["env"]["staging"].namespace
    healthy = Resource.objects.get(pk=app.pk).healthy_digest
    bad = _digest(f"bad-{time.time()}")
    httpx.post(f"{api_url}/_sandbox/faults", json={"fail_images": [bad]}).raise_for_status()
    watch.forget(dev_ns, "app", healthy)
    t0 = time.monotonic()
    services.artifact_publish(resource=app, digest=bad, origin="api")
    applied = watch.wait_for([(dev_ns, "app", bad)], TIMEOUT_S)[(dev_ns, "app", bad)]
    deadline = applied + 2.0
    while Resource.objects.get(pk=app.pk).failed_digest != bad:
        if time.monotonic() - t0 > TIMEOUT_S:
            raise TimeoutError("the failed rollout was never recorded")
        time.sleep(0.02)
    detected = time.monotonic()
    back = watch.wait_for([(dev_ns, "app", healthy)], TIMEOUT_S)[(dev_ns, "app", healthy)]
    time.sleep(1.0)  # staging had its chance to (wrongly) follow
    httpx.post(f"{api_url}/_sandbox/faults", json={"fail_images": []}).raise_for_status()
    return {
        "progress_deadline_s": 2, "detected_s": round(detected - t0, 3),
        "detected_after_deadline_s": round(detected - deadline, 3),
        "rolled_back_s": round(back - t0, 3),
        "staging_saw_failed_digest": (staging_ns, "app", bad) in watch.seen,
        "staging_digest_unchanged": Resource.objects.get(pk=app_staging.pk).current_digest == healthy,
    }


def recovery_cluster_restart(world, api_url, watch, processes) -> dict:
    from environments.models import Resource

    port = int(api_url.rsplit(":", 1)[1])
    expected = [(r.environment.namespace, r.name, r.current_digest)
                for r in Resource.objects.filter(environment__project=world["env"]["dev"].project).select_related("environment")]
    _stop(processes["sandbox"])
    time.sleep(DOWN_S)
    watch.seen.clear()
    processes["sandbox"], url = _sandbox(port)
    up = time.monotonic()
    seen = watch.wait_for(expected, TIMEOUT_S + DOWN_S)
    services_back = _wait_services(api_url, [(ns, name) for ns, name, _ in expected])
    return {"down_s": DOWN_S, "resources": len(expected),
            "deployments_back_s": round(max(seen.values()) - up, 3),
            "converged_after_up_s": round(max(max(seen.values()), services_back) - up, 3)}


def _wait_services(api_url, names) -> float:
    deadline = time.monotonic() + TIMEOUT_S
    namespaces = sorted({ns for ns, _ in names})
    while time.monotonic() < deadline:
        present = set()
        for ns in namespaces:
            try:
                items = httpx.get(f"{api_url}/api/v1/namespaces/{ns}/services", timeout=5).json().get("items", [])
            except (httpx.HTTPError, ValueError):
                items = []
            present |= {(ns, i["metadata"]["name"]) for i in items}
        if all(n in present for n in names):
            return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError("services never came back")


def run() -> dict:
    from django.db import connection

    processes: dict = {}
    watch = None
    try:
        processes["sandbox"], api_url = _sandbox()
        world = _world(api_url, 30)
        connection.close()
        processes["worker"] = _process("qcluster")
        processes["observer"] = _process("observe")
        watch = DeploymentWatch(api_url, world["namespaces"])
        seed = _digest("seed")
        watch.wait_for([(ns, name, seed) for ns, name in _targets(world)], TIMEOUT_S)
        watch.wait_for([(world["env"]["staging"].namespace, "app", seed)], TIMEOUT_S)
        time.sleep(1.0)
        results = {"recovery_worker_kill": recovery_worker_kill(world, api_url, watch, processes)}
        _settle()
        results["drift_repair"] = drift_repair(world, api_url, watch)
        _settle()
        results["failed_rollout"] = failed_rollout(world, api_url, watch)
        _settle()
        results["recovery_cluster_restart"] = recovery_cluster_restart(world, api_url, watch, processes)
        return results
    finally:
        if watch:
            watch.stop()
        for name in ("observer", "worker", "sandbox"):
            _stop(processes.get(name))


if __name__ == "__main__":
    from bench import setup_django

    setup_django()
    print(json.dumps(run(), indent=2))
