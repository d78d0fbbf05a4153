"""Hoist at rest: what 1,000 and 10,000 resources cost when nothing changes.

Three clusters (each a sandbox API server in its own process), projects of
three environments (dev, staging, prod) on one cluster each, 34 apps per
environment: dev's are image sources by digest, staging follows dev and
prod follows staging (track latest, what runs healthy). The workers
(`qcluster`, 4 processes, ORM broker) and the observer (`manage.py
observe`) run as in production, with the minute drift sweep and the
five-minute keep-tags schedule in place.

Once everything runs healthy and nothing is queued or dirty, a window of
`HOIST_BENCH_IDLE_S` seconds (300 by default) is measured:

- Kubernetes API requests per minute: every request the three API servers
  received (their own count, watches included);
- database queries per minute: every query of every Hoist process (counted
  in the processes by `bench.settings_counted`, which adds a counter to
  Hoist's settings; django-q2's broker polling included);
- CPU seconds per minute of all Hoist processes (workers, their parent, the
  observer), from /proc.

The same at 1,000 and then, after adding the rest, at 10,000 resources; the
`…_ratio` keys divide the 10,000 figure by the 1,000 one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import httpx

from bench.bench_observe import _sandbox, _stop
from bench.bench_reconcile import ROOT, _digest

APPS = 34  # per environment: a project holds 102 resources
CLUSTERS = 3
WINDOW_S = float(os.environ.get("HOIST_BENCH_IDLE_S", "300"))
SIZES = [int(n) for n in os.environ.get("HOIST_BENCH_IDLE_SIZES", "1000,10000").split(",")]
SETTLE_TIMEOUT_S = 1800


def _process(*command: str, query_dir: str) -> subprocess.Popen:
    env = {**os.environ, "HOIST_Q_WORKERS": "4", "LOG_LEVEL": os.environ.get("HOIST_BENCH_LOG_LEVEL", "WARNING"),
           "DJANGO_SETTINGS_MODULE": "bench.settings_counted", "HOIST_BENCH_QUERY_DIR": query_dir}
    log = os.environ.get("HOIST_BENCH_LOG")
    out = open(os.path.join(log, f"idle-{command[0]}.log"), "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "manage.py", *command], cwd=ROOT, env=env, start_new_session=True,
                            stdout=out, stderr=subprocess.STDOUT)


def _grow(clusters, projects_from: int, projects_to: int) -> int:
    """Projects [from, to): environments through the service layer, resources in bulk (the figure
    is about rest, not creation), then every new resource queued for its first reconcile."""
    from django.db import transaction

    from environments import rules, services
    from environments.models import Artifact, Binding, Kind, Resource, SourceType
    from projects.models import Project
    from promotions import queue

    created: list[int] = []
    PORTS = rules.check_ports([8080])  # stored as resource_create stores them
    for n in range(projects_from, projects_to):
        cluster = clusters[n % len(clusters)]
        project = Project.objects.create(slug=f"idle-{n}", name=f"idle {n}")
        env = {slug: services.environment_create(project=project, name=slug, slug=slug, cluster=cluster,
                                                 namespace=f"idle-{n}-{slug}")
               for slug in ("dev", "staging", "prod")}
        upstream = Resource.objects.bulk_create([
            Resource(environment=env["dev"], name=f"app{i}", kind=Kind.DEPLOYMENT, source_type=SourceType.IMAGE,
                     image=f"registry.idle.local/p{n}/app{i}@{_digest(f'{n}-{i}')}", ports=PORTS, artifact_seq=1)
            for i in range(APPS)])
        # An image given by digest is its own first publish (as resource_create records it).
        Artifact.objects.bulk_create([
            Artifact(resource=r, sequence=1, repository=r.image.partition("@")[0], digest=r.image.partition("@")[2],
                     origin=Artifact.Origin.IMAGE, first_published_at=_now())
            for r in upstream])
        created += [r.pk for r in upstream]
        for slug in ("staging", "prod"):
            upstream = Resource.objects.bulk_create([
                Resource(environment=env[slug], name=f"app{i}", kind=Kind.DEPLOYMENT, source_type=SourceType.PROMOTE,
                         promote_from=up, binding=Binding.TRACK_LATEST, ports=PORTS)
                for i, up in enumerate(upstream)])
            created += [r.pk for r in upstream]
    with transaction.atomic():
        queue.enqueue_reconcile_many(created)
    return len(created)


def _settled(total: int) -> bool:
    from django.db.models import Q
    from django_q.models import OrmQ

    from environments.models import Phase, Resource

    if OrmQ.objects.exists():
        return False
    ready = Resource.objects.filter(phase=Phase.READY, dirty_at__isnull=True).exclude(current_image="").count()
    return ready == total and not Resource.objects.filter(Q(dirty_at__isnull=False) | Q(claimed_until__gt=_now())).exists()


def _now():
    from django.utils import timezone

    return timezone.now()


def _wait_settled(total: int) -> float:
    started = time.monotonic()
    while not _settled(total):
        if time.monotonic() - started > SETTLE_TIMEOUT_S:
            raise RuntimeError(f"{total} resources did not settle within {SETTLE_TIMEOUT_S} s")
        time.sleep(2.0)
    return time.monotonic() - started


def _api_requests(api_urls: list[str]) -> int:
    return sum(httpx.get(f"{url}/_sandbox/requests", timeout=30).json()["total"] for url in api_urls)


def _queries(query_dir: str) -> int:
    total = 0
    for name in os.listdir(query_dir):
        if name.isdigit():
            try:
                with open(os.path.join(query_dir, name)) as f:
                    total += int(f.read() or 0)
            except (OSError, ValueError):
                pass
    return total


def _cpu_seconds(groups: list[int]) -> float:
    """utime + stime of every live process in these process groups (and what they reaped)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # pgrp (fields counted after the command name)
            total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / ticks


def _measure(api_urls, query_dir, groups) -> dict:
    requests0, queries0, cpu0, t0 = _api_requests(api_urls), _queries(query_dir), _cpu_seconds(groups), time.monotonic()
    time.sleep(WINDOW_S)
    requests1, queries1, cpu1, t1 = _api_requests(api_urls), _queries(query_dir), _cpu_seconds(groups), time.monotonic()
    minutes = (t1 - t0) / 60
    # The figure-reading requests themselves are not Hoist's: one per API server at each end.
    return {"api_requests_per_min": round((requests1 - requests0 - len(api_urls)) / minutes, 1),
            "db_queries_per_min": round((queries1 - queries0) / minutes, 1),
            "cpu_s_per_min": round((cpu1 - cpu0) / minutes, 2)}


def run() -> dict:
    from django.db import connection
    from django_q.models import Schedule

    from environments import services

    # What runs in production at rest: the minute sweep (bench setup removes it for the
    # other benchmarks) and the keep-tags schedule.
    Schedule.objects.get_or_create(name="hoist-drift-sweep", defaults={
        "func": "promotions.tasks.reconcile_all", "schedule_type": "I", "minutes": 1, "repeats": -1})
    processes: dict = {}
    query_dir = tempfile.mkdtemp(prefix="hoist-idle-queries-")
    try:
        api_urls, clusters = [], []
        for n in range(CLUSTERS):
            processes[f"sandbox-{n}"], url = _sandbox()
            api_urls.append(url)
            clusters.append(services.cluster_create(name=f"idle-{n}", slug=f"idle-{n}", api_url=url))
        connection.close()
        processes["worker"] = _process("qcluster", query_dir=query_dir)
        processes["observer"] = _process("observe", query_dir=query_dir)
        groups = [processes["worker"].pid, processes["observer"].pid]
        figures: dict = {}
        projects = total = 0
        for size in SIZES:
            upto = max(projects + 1, round(size / (3 * APPS)))
            started = time.monotonic()
            total += _grow(clusters, projects, upto)
            projects = upto
            _wait_settled(total)
            converged_s = time.monotonic() - started  # created, applied and healthy down the chains
            time.sleep(65)  # past one sweep and the observer's first look at everything that changed
            measured = _measure(api_urls, query_dir, groups)
            measured.update(resources=total, clusters=CLUSTERS, window_s=WINDOW_S, converged_s=round(converged_s, 1))
            figures[size] = measured
            print(f"idle {total}: {measured}", file=sys.stderr)
        results = {f"idle_{size}": fig for size, fig in figures.items()}
        if len(SIZES) >= 2:
            small, big = figures[SIZES[0]], figures[SIZES[-1]]
            for key in ("api_requests_per_min", "db_queries_per_min", "cpu_s_per_min"):
                results[f"idle_{SIZES[-1]}"][f"{key}_ratio"] = round(big[key] / small[key], 2) if small[key] else None
        return results
    finally:
        for name in ("observer", "worker", *[f"sandbox-{n}" for n in range(CLUSTERS)]):
            _stop(processes.get(name))
        shutil.rmtree(query_dir, ignore_errors=True)


if __name__ == "__main__":
    from bench import setup_django

    setup_django()
    print(run())
