"""publish → applied, over the real path.

A publish goes through the service (as the API and the webhook do), the
django-q2 worker processes (`manage.py qcluster`, ORM broker, then Redis in a
child process) reconcile, and the sandbox Kubernetes API (a separate process,
over HTTP) receives the Deployments. The clock stops when a watch on the
downstream namespace sees the Deployment carrying the new digest, so what is
measured is what a person would see in the cluster, not a timestamp Hoist
wrote itself.

Scenarios: fan-out 1, 10 and 100 track-latest dependants of one upstream, a
3-stage chain dev → staging → prod (all on one cluster: the ImageSource path),
and, with the Redis broker only, a fan-out of 1000 (`reconcile_fanout_1000`,
its own environment). Each starts from rest (nothing queued, dirty or
claimed), and so does each of its rounds; the two big fan-outs then run three
more rounds, each published the moment the last one's Deployments all run
healthy (`busy_p50_s`, `busy_p99_s`): a worker applies its chunk's Deployments
before the rest of their reconciles, so the next publish meets that tail.
`HOIST_BENCH_RECONCILE=fanout_100,fanout_1000` runs only those.

Besides the latencies, each scenario reports the CPU its reconciles cost, by
process (`cpu_ms_per_reconcile`, from /proc: a figure that holds on a shared
machine, where seconds don't), and the slowest sample of each round. The two
big fan-outs end with two publishes back to back and check the guarantees:
every dependant runs (in the cluster) and records the last publish, no
Deployment ever carried an older publish after a newer one, no dependant got
two promotions for one digest.

`HOIST_BENCH_PYSPY=<dir>`: py-spy profiles (on-CPU) of the workers and the
sandbox during the big fan-outs. The workers run as production runs them,
DEBUG off (`HOIST_BENCH_WORKER_DEBUG=true` turns it on: see bench.hoist_env).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import hoist_env

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
        # Per (namespace, name): the digests its Deployment carried, in the order the watch saw them.
        self.history: dict[tuple[str, str], list[str]] = {}
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
        resource_version = ""  # resume where the last stream ended: a relist of a big namespace costs CPU
        while not self.stopping:
            params = {"watch": "1", "timeoutSeconds": "30"}
            if resource_version:
                params["resourceVersion"] = resource_version
            try:
                with httpx.stream("GET", url, params=params, timeout=40) as response:
                    for line in response.iter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        obj = event["object"]
                        if event.get("type") == "ERROR":  # 410 Gone (too old, or a new server): relist
                            resource_version = ""
                            break
                        resource_version = obj["metadata"].get("resourceVersion") or resource_version
                        if event.get("type") not in ("ADDED", "MODIFIED"):
                            continue
                        image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
                        name, digest = obj["metadata"]["name"], image.rpartition("@")[2]
                        key = (namespace, name, digest)
                        now = time.monotonic()
                        with self.cond:
                            self.seen.setdefault(key, now)
                            if _healthy(obj):
                                self.seen.setdefault((*key, "healthy"), now)
                            history = self.history.setdefault((namespace, name), [])
                            if not history or history[-1] != digest:
                                history.append(digest)
                            self.cond.notify_all()
                        if self.stopping:
                            break
            except (httpx.HTTPError, ValueError, KeyError):  # a watch that breaks is restarted from a list
                resource_version = ""
                time.sleep(0.05)

    def wait_for(self, keys: list[tuple[str, str, str]], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            # Only what is still missing is looked at again on each event: with a thousand
            # keys, checking them all per event would cost the CPU the workers need.
            missing = [k for k in keys if k not in self.seen]
            while missing:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(missing)} deployments never reached their digest, e.g. {missing[:3]}")
                self.cond.wait(left)
                missing = [k for k in missing if k not in self.seen]
            return {k: self.seen[k] for k in keys}

    def forget(self, namespace: str, name: str, digest: str) -> None:
        """Wait for this image anew (it may come back after a change)."""
        with self.cond:
            self.seen.pop((namespace, name, digest), None)
            self.seen.pop((namespace, name, digest, "healthy"), None)

    def stop(self):
        self.stopping = True


class CpuMeter(threading.Thread):
    """CPU seconds spent by each role while it runs, read from /proc (Linux; elsewhere it
    reports nothing): the worker processes (`qcluster` and its children), the sandbox API
    server, the PostgreSQL backends of the bench's database, and this process (the
    publishes and the watch). A figure that holds on a shared machine, where seconds don't.

    Sampled every 0.2 s, so a process that comes and goes in between (a short-lived
    database connection) is missed in part.
    """

    HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, worker_pid: int, sandbox_pid: int, database: str):
        super().__init__(daemon=True)
        self.roots = {"workers": worker_pid, "sandbox": sandbox_pid, "bench": os.getpid()}
        self.database = database
        self.first: dict[int, tuple[str, float]] = {}
        self.last: dict[int, float] = {}
        self.titles: dict[int, bool] = {}  # pid → a backend of the bench's database
        self.stopping = threading.Event()

    @classmethod
    def _stat(cls, pid: int) -> tuple[int, float] | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / cls.HZ  # parent, utime + stime

    def _sample(self) -> None:
        stats = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = self._stat(int(entry.name))
                if stat is not None:
                    stats[int(entry.name)] = stat
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in stats.items():
            children.setdefault(parent, []).append(pid)
        roles = {}
        for role, root in self.roots.items():
            todo = [root]  # the workers' children too; the bench's own children are the other roles
            while todo:
                pid = todo.pop()
                roles[pid] = role
                if role == "workers":
                    todo += children.get(pid, [])
        for pid in stats:
            if pid not in roles:
                if pid not in self.titles:  # a backend serves one database for its life: read its title once
                    try:
                        title = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    ours = title.startswith(b"postgres:") and f" {self.database} ".encode() in title
                    if ours or title.startswith(b"postgres:") or b"postgres" not in title:
                        self.titles[pid] = ours  # else a backend just forked, not named yet: look again
                if self.titles.get(pid):
                    roles[pid] = "postgres"
        for pid, role in roles.items():
            if pid in stats:
                cpu = stats[pid][1]
                self.first.setdefault(pid, (role, cpu))
                self.last[pid] = cpu

    def run(self) -> None:
        while not self.stopping.is_set():
            self._sample()
            self.stopping.wait(0.2)

    def pids(self) -> dict[int, str]:
        """The processes seen so far, by role."""
        return {pid: role for pid, (role, _) in self.first.items()}

    def stop(self) -> dict[str, float]:
        """CPU seconds by role since the start."""
        self.stopping.set()
        self.join()
        self._sample()
        spent: dict[str, float] = {}
        for pid, (role, cpu) in self.first.items():
            spent[role] = spent.get(role, 0.0) + self.last[pid] - cpu
        return spent


class Profiles:
    """HOIST_BENCH_PYSPY=<dir>: py-spy samples (on-CPU only, `--gil`) of every worker process
    and the sandbox while a scenario's rounds run, one collapsed-stack file per process."""

    def __init__(self, scenario: str, cpu: "CpuMeter | None"):
        self.children = []
        folder = os.environ.get("HOIST_BENCH_PYSPY")
        if not folder or cpu is None:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        spy = str(Path(sys.executable).with_name("py-spy"))
        time.sleep(0.3)  # one sample of /proc at least
        for pid, role in cpu.pids().items():
            if role in ("workers", "sandbox"):
                out = Path(folder) / f"{scenario}-{role}-{pid}.txt"
                self.children.append(subprocess.Popen(
                    [spy, "record", "--gil", "-r", "100", "-f", "raw", "-o", str(out), "--pid", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        for child in self.children:
            child.send_signal(signal.SIGINT)
        for child in self.children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


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
    env = hoist_env(HOIST_Q_WORKERS=str(workers), LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


SCENARIOS = ("chain", "fanout_1", "fanout_10", "fanout_100", "fanout_1000")
# publishes per scenario; fan-out 1000 only with the Redis broker (the figure)
ROUNDS = {"chain": 30, "fanout_1": 30, "fanout_10": 15, "fanout_100": 8, "fanout_1000": 4}
REDIS_ONLY = ("fanout_1000",)


def _selected() -> list[str]:
    """HOIST_BENCH_RECONCILE=fanout_100,fanout_1000 runs only those (default: all)."""
    wanted = [w.strip() for w in os.environ.get("HOIST_BENCH_RECONCILE", "").split(",") if w.strip()]
    unknown = [w for w in wanted if w not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    return [s for s in SCENARIOS if not wanted or s in wanted]


def _setup_world(api_url: str, scenarios: list[str]):
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
    world = {"project": project, "namespaces": [dev.namespace, staging.namespace, prod.namespace], "settle": []}
    image = "registry.bench.local/app/{name}@" + _digest("seed")
    if "chain" in scenarios:
        # Chain: dev/chain → staging/chain → prod/chain.
        chain_dev = env_services.resource_create(environment=dev, name="chain", source_type=SourceType.IMAGE, image=image.format(name="chain"))
        chain_staging = env_services.resource_create(environment=staging, name="chain", source_type=SourceType.PROMOTE,
                                                     promote_from=chain_dev, binding=Binding.TRACK_LATEST)
        env_services.resource_create(environment=prod, name="chain", source_type=SourceType.PROMOTE,
                                     promote_from=chain_staging, binding=Binding.TRACK_LATEST)
        world["chain"] = (chain_dev, [(prod.namespace, "chain")])
        world["settle"] += [(namespace, "chain") for namespace in world["namespaces"]]
    for scenario in scenarios:
        if not scenario.startswith("fanout_"):
            continue
        n = int(scenario.split("_")[1])
        # The big fan-out has an environment of its own: the watch of the others' namespace
        # doesn't carry its thousand Deployments.
        into = staging if n < 1000 else env("fleet")
        if into.namespace not in world["namespaces"]:
            world["namespaces"].append(into.namespace)
        upstream = env_services.resource_create(environment=dev, name=f"fan{n}", source_type=SourceType.IMAGE,
                                                image=image.format(name=f"fan{n}"), ports=[8080])
        downstream = []
        for i in range(n):
            env_services.resource_create(environment=into, name=f"fan{n}-d{i}", source_type=SourceType.PROMOTE,
                                         promote_from=upstream, binding=Binding.TRACK_LATEST, ports=[8080])
            downstream.append((into.namespace, f"fan{n}-d{i}"))
        world[scenario] = (upstream, downstream)
        world["settle"] += downstream
    return world


def _scenario(watch: DeploymentWatch, upstream, targets, rounds: int, *, timeout: float = TIMEOUT_S,
              meter=None, settle: bool = True) -> dict:
    """`rounds` publishes, each from rest (`settle`: nothing queued, dirty or claimed, as
    _settle waits for), or each the moment the last one's Deployments all run healthy (a
    fan-out's records follow its Deployments: the next publish then meets that tail)."""
    from environments import services

    latencies, healthy = [], []
    published, slowest = [], []
    cpu = meter() if meter is not None else None
    if cpu is not None:
        cpu.start()
    profiles = Profiles(f"fanout_{len(targets)}", cpu) if len(targets) >= 100 else None
    started = time.monotonic()
    for r in range(rounds):
        if settle and r:
            _settle(upstream.environment.project, timeout)  # (its wait counts in reconciles_per_s)
        digest = _digest(f"{upstream.pk}-{r}-{time.time()}")
        t0 = time.monotonic()
        services.artifact_publish(resource=upstream, digest=digest, origin="api")
        published.append(digest)
        # The service enqueues on commit; outside a transaction that is now.
        seen = watch.wait_for([(ns, name, digest) for ns, name in targets], timeout)
        latencies += [t - t0 for t in seen.values()]
        slowest.append(round(max(seen.values()) - t0, 2))
        ran = watch.wait_for([(ns, name, digest, "healthy") for ns, name in targets], timeout)
        healthy += [t - t0 for t in ran.values()]
    elapsed = time.monotonic() - started
    if profiles is not None:
        profiles.stop()
    hops = 3 if len(targets) == 1 and targets[0][1] == "chain" else 1 + len(targets)
    extra = {}
    if cpu is not None:
        spent = cpu.stop()
        extra["cpu_ms_per_reconcile"] = {role: round(1000 * seconds / (hops * rounds), 2) for role, seconds in sorted(spent.items())}
        extra["cpu_ms_per_reconcile"]["total"] = round(1000 * sum(spent.values()) / (hops * rounds), 2)
    return {**extra,
        "publish_to_healthy_p50_s": round(_percentile(healthy, 50), 3),
        "publish_to_healthy_p99_s": round(_percentile(healthy, 99), 3),
        "publishes": rounds,
        "samples": len(latencies),
        "p50_s": round(_percentile(latencies, 50), 3),
        "p95_s": round(_percentile(latencies, 95), 3),
        "p99_s": round(_percentile(latencies, 99), 3),
        "max_s": round(max(latencies), 3),
        "reconciles_per_s": round(hops * rounds / elapsed, 1),
        "round_max_s": slowest,
        "_published": published,
    }


def _settle(project, timeout: float) -> float:
    """Wait until the broker holds no task and no resource of the bench is dirty or claimed:
    each scenario starts from rest, not behind the tail of the one before (or of the first
    reconciles of a thousand resources). Returns the seconds waited."""
    from django.utils import timezone
    from django_q.brokers import get_broker

    from environments.models import Resource

    broker = get_broker()
    mine = Resource.objects.filter(environment__project=project)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        busy = (broker.queue_size() or mine.filter(dirty_at__isnull=False).exists()
                or mine.filter(claimed_until__gt=timezone.now()).exists())
        if not busy:
            break
        time.sleep(0.1)
    time.sleep(0.3)
    return time.monotonic() - t0


def _burst(watch: DeploymentWatch, upstream, targets, *, timeout: float) -> list[str]:
    """Two publishes back to back, the second before the first has landed anywhere: every
    dependant must end on the second, whether or not it ran the first on the way."""
    from environments import services

    digests = [_digest(f"{upstream.pk}-burst-{n}-{time.time()}") for n in range(2)]
    for digest in digests:
        services.artifact_publish(resource=upstream, digest=digest, origin="api")
    watch.wait_for([(ns, name, digests[-1]) for ns, name in targets], timeout)
    return digests


def _guarantees(watch: DeploymentWatch, upstream, targets, published: list[str], api_url: str) -> dict:
    """After the rounds: what runs, in which order it ran, and what Hoist recorded.

    - every dependant's Deployment (read from the cluster) and its record carry the last
      publish, and every round's digest was applied everywhere (each round waited for it);
    - forward-only: no Deployment carried an older publish after a newer one (the watch's
      history of each Deployment, in publish order);
    - no duplicate promotions: at most one promotion per dependant and digest.
    """
    import httpx
    from django.db.models import Count

    from environments.models import Resource
    from promotions.models import Promotion

    # At rest first (nothing queued, dirty or claimed): a dependant's record follows its
    # Deployment (a chunk applies its Deployments first, see promotions.tasks), and what the
    # guarantee is about is where everything ends up. Then the watch's last events.
    _settle(upstream.environment.project, TIMEOUT_S)
    time.sleep(0.5)
    order = {digest: n for n, digest in enumerate(published)}
    last = published[-1]
    namespaces = sorted({ns for ns, _ in targets})
    running = {}
    for namespace in namespaces:
        items = httpx.get(f"{api_url}/apis/apps/v1/namespaces/{namespace}/deployments", timeout=60).json()["items"]
        for item in items:
            image = item["spec"]["template"]["spec"]["containers"][0]["image"]
            running[(namespace, item["metadata"]["name"])] = image.rpartition("@")[2]
    names = [name for _, name in targets]
    rows = {r.name: r for r in Resource.objects.filter(promote_from=upstream, name__in=names).only("pk", "name", "current_digest")}
    wrong = [t for t in targets if running.get(t) != last or rows[t[1]].current_digest != last]
    backwards = 0
    with watch.cond:
        histories = {t: list(watch.history.get(t, [])) for t in targets}
    for target, history in histories.items():
        ranks = [order[d] for d in history if d in order]
        backwards += any(b <= a for a, b in zip(ranks, ranks[1:]))
    ids = [r.pk for r in rows.values()]
    duplicates = (Promotion.objects.filter(resource_id__in=ids, to_digest__in=published).values("resource_id", "to_digest")
                  .annotate(n=Count("id")).filter(n__gt=1).count())
    return {
        "guarantee_wrong_digest": len(wrong),
        "guarantee_backwards": backwards,
        "guarantee_duplicate_promotions": duplicates,
        "guarantees_ok": not wrong and not backwards and not duplicates,
    }


def _measure(workers: int, scenarios: list[str]) -> dict:
    from django.db import connection

    sandbox, api_url = _start_sandbox()
    worker = None
    watch = None
    try:
        world = _setup_world(api_url, scenarios)
        connection.close()
        worker = _start_worker(workers)
        watch = DeploymentWatch(api_url, world["namespaces"])
        # Let the initial reconciles of every resource settle (the first publishes).
        settle_s = TIMEOUT_S * max(1, len(world["settle"]) // 200)
        watch.wait_for([(ns, name, _digest("seed")) for ns, name in world["settle"]], settle_s)
        database = connection.settings_dict["NAME"]

        def meter():
            return CpuMeter(worker.pid, sandbox.pid, database)

        results = {}
        if "chain" in scenarios:
            _settle(world["project"], TIMEOUT_S)
            results["reconcile_chain_3_stages"] = _scenario(watch, world["chain"][0], world["chain"][1],
                                                            rounds=ROUNDS["chain"])
        for scenario in scenarios:
            if not scenario.startswith("fanout_"):
                continue
            upstream, targets = world[scenario]
            timeout = TIMEOUT_S * max(1, len(targets) // 200)
            _settle(world["project"], timeout)
            figures = _scenario(watch, upstream, targets, rounds=ROUNDS[scenario], timeout=timeout, meter=meter)
            published = figures.pop("_published")
            if scenario in ("fanout_100", "fanout_1000"):
                busy = _scenario(watch, upstream, targets, rounds=3, timeout=timeout, settle=False)
                figures.update(busy_p50_s=busy["p50_s"], busy_p99_s=busy["p99_s"], busy_round_max_s=busy["round_max_s"])
                published += busy.pop("_published")
                burst = _burst(watch, upstream, targets, timeout=timeout)
                figures.update(_guarantees(watch, upstream, targets, published + burst, api_url))
                figures["burst_publishes"] = len(burst)
            results[f"reconcile_{scenario}"] = figures
        for figures in results.values():
            figures.pop("_published", None)
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
    broker from the settings when Django starts. The fan-out of 1000 runs on
    Redis only. HOIST_BENCH_RECONCILE selects scenarios (see _selected).
    """
    workers = workers or int(os.environ.get("HOIST_Q_WORKERS", "4"))
    broker = "redis" if os.environ.get("REDIS_URL") else "orm"
    scenarios = _selected()
    results = {}
    here = scenarios if broker == "redis" else [s for s in scenarios if s not in REDIS_ONLY]
    if here:
        for name, figures in _measure(workers, here).items():
            results[name if broker == "orm" else f"{name}_redis"] = {**figures, "q_workers": workers, "broker": broker}
    redis_url = _redis_url() if broker == "orm" else None
    if redis_url:
        child = subprocess.run(
            [sys.executable, "-m", "bench.bench_reconcile", "--json"], cwd=ROOT, capture_output=True, text=True,
            # The same (already migrated) database: the child must not recreate it.
            env={**os.environ, "REDIS_URL": redis_url, "HOIST_BENCH_DATABASE_URL": os.environ["DATABASE_URL"]},
            timeout=1800,
        )
        if child.returncode != 0:
            raise RuntimeError(f"the Redis-broker run failed:\n{child.stderr[-2000:]}")
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        # The issue names the big fan-out without a broker suffix: it only runs on Redis.
        results.update({name.replace("reconcile_fanout_1000_redis", "reconcile_fanout_1000"): value
                        for name, value in figures.items()})
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
