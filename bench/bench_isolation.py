"""Isolation: one tenant's hostile registry must not stall another tenant's promotions.

Everything over the real path: django-q2 workers (`manage.py qcluster`, ORM
broker, 4 workers) and the observer (`manage.py observe`) as separate
processes, the sandbox Kubernetes API as its own process over HTTP, one
cluster shared by both projects. Only the registry is hostile:

- a black-hole registry (a thread here, on 127.0.0.1): it accepts TCP
  connections and never sends a byte, keeping each one open until the client
  gives up. It counts the connections open at once (its peak is how many
  callers were stuck on it at the same moment) and the total accepted.
- project A, the hostile tenant: 12 deployments whose image is a *tag* on the
  black-hole host, so every reconcile of them has to resolve that tag there.
  All through the run, a publish by tag (`promotions.publishing.
  artifact_publish_tag`, as the API calls it, with its wait) is attempted on
  one of them about once a second, each on its own thread as concurrent web
  requests would be (at most 8 at once); how long each held its caller is
  the figure a person waiting on a web request would feel.
- project B, the innocent tenant: an upstream `api` in dev, published to by
  digest (no registry involved), and 30 track-latest dependants in staging
  (following what `api` runs healthy, the default).

B is created and settled first (every dependant runs the seed digest), and
the same rounds are measured once before A exists (`calm_p50_s`,
`calm_p99_s`: what B's fan-out costs on this machine anyway, on the same
processes, so the figures with A show what A adds). Then A is created and hammers the black hole for 5 s before B's first publish, so
the workers are already under that load. Each round publishes a new digest to
B's `api` through `environments.services.artifact_publish` and measures, for
each of the 30 dependants, the seconds from the publish until a watch on the
staging namespace sees its Deployment carrying the new digest: what a person
would see in the cluster, not a timestamp Hoist wrote itself. A round waits
at most TIMEOUT_S; a dependant that has not moved by then counts as a timeout
and as a sample of TIMEOUT_S (a lower bound), so the percentiles never hide it.

`pool_never_fully_blocked` is 1 when the black hole never held as many
connections from the worker processes at once as there are workers (the
publish-by-tag connections this process opens are web requests, not the
pool, and are left out of that comparison; `blackhole_max_concurrent` counts
everyone). `queued_tasks_at_end` is the broker's backlog when the last round
ends: work that piled up behind the stuck workers, which everyone waits for
even after the registry is gone.

At the end the run's two projects and the tasks it queued are taken out of
the database (rows only), so a later run on the same database starts clean.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter

from bench.bench_observe import _process, _sandbox, _stop
from bench.bench_reconcile import DeploymentWatch, _digest, _percentile
from sandbox.blackhole import BlackHole

TIMEOUT_S = 60
HOSTILE_RESOURCES = 12
DEPENDANTS = 30
ROUNDS = int(os.environ.get("HOIST_BENCH_ISOLATION_ROUNDS", "5"))
HAMMER_S = 5.0
PUBLISH_TAG_EVERY_S = 1.0
PUBLISH_TAG_MAX_IN_FLIGHT = 8




# --------------------------------------------------------------------------- publish by tag, as web requests


class TagPublisher:
    """About one publish-by-tag a second on `resource`, each on its own thread (a web request's)."""

    def __init__(self, resource):
        self.resource = resource
        self.lock = threading.Lock()
        self.in_flight: dict[int, float] = {}  # call number → when it started
        self.held: list[float] = []
        self.outcomes: Counter = Counter()
        self.skipped = 0
        self.calls = 0
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.ticker = threading.Thread(target=self._tick, daemon=True, name="publish-tag")
        self.ticker.start()

    def _tick(self) -> None:
        while not self.stopping.wait(PUBLISH_TAG_EVERY_S):
            with self.lock:
                if len(self.in_flight) >= PUBLISH_TAG_MAX_IN_FLIGHT:
                    self.skipped += 1
                    continue
                self.calls += 1
                number = self.calls
                self.in_flight[number] = time.monotonic()
            thread = threading.Thread(target=self._call, args=(number,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _call(self, number: int) -> None:
        from django.db import connection

        from django.conf import settings

        from promotions.publishing import Queued, artifact_publish_tag

        outcome = "published"
        try:
            # As the API calls it: a request waits on the registry HOIST_REQUEST_REGISTRY_WAIT_S at most.
            answer = artifact_publish_tag(resource=self.resource, tag="latest", origin="api",
                                          wait_s=settings.HOIST_REQUEST_REGISTRY_WAIT_S)
            if isinstance(answer, Queued):
                outcome = "queued"
        except Exception as exc:  # what the web request would turn into an error page: all we want is the time
            outcome = type(exc).__name__
        finally:
            ended = time.monotonic()
            with self.lock:
                self.held.append(ended - self.in_flight.pop(number))
                self.outcomes[outcome] += 1
            connection.close()

    def figures(self) -> dict:
        """Held times so far; a call still in flight counts with what it has held until now."""
        now = time.monotonic()
        with self.lock:
            held = self.held + [now - started for started in self.in_flight.values()]
            return {"publish_tag_calls": self.calls, "publish_tag_still_held": len(self.in_flight),
                    "publish_tag_skipped_busy": self.skipped,
                    "publish_tag_held_max_s": round(max(held), 3) if held else None,
                    "publish_tag_held_p50_s": round(_percentile(held, 50), 3) if held else None,
                    "publish_tag_outcomes": dict(self.outcomes)}

    def stop(self) -> None:
        self.stopping.set()
        self.ticker.join(timeout=5)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


# --------------------------------------------------------------------------- the world


def _cluster(api_url: str):
    from environments import services
    from environments.models import Cluster

    cluster = Cluster.objects.filter(slug="bench-iso").first() or services.cluster_create(
        name="bench-iso", slug="bench-iso", api_url=api_url)
    return services.cluster_update(cluster=cluster, api_url=api_url)


def _innocent(cluster, stamp: int) -> dict:
    from environments import services
    from environments.models import Binding, SourceType
    from projects.models import Project

    project = Project.objects.create(slug=f"iso-b-{stamp}", name="isolation bench: innocent tenant")
    env = {slug: services.environment_create(project=project, name=slug, slug=slug, cluster=cluster,
                                             namespace=f"{project.slug}-{slug}")
           for slug in ("dev", "staging")}
    api = services.resource_create(environment=env["dev"], name="api", source_type=SourceType.IMAGE,
                                   image="registry.bench.local/iso/api@" + _digest("seed"), ports=[8080])
    for i in range(DEPENDANTS):
        services.resource_create(environment=env["staging"], name=f"d{i}", source_type=SourceType.PROMOTE,
                                 promote_from=api, binding=Binding.TRACK_LATEST, ports=[8080])
    staging = env["staging"].namespace
    return {"api": api, "dev": env["dev"].namespace, "staging": staging,
            "targets": [(staging, f"d{i}") for i in range(DEPENDANTS)]}


def _hostile(cluster, stamp: int, port: int) -> list:
    from environments import services
    from environments.models import SourceType
    from projects.models import Project

    project = Project.objects.create(slug=f"iso-a-{stamp}", name="isolation bench: hostile tenant")
    env = services.environment_create(project=project, name="prod", slug="prod", cluster=cluster,
                                      namespace=f"{project.slug}-prod")
    return [services.resource_create(environment=env, name=f"app{i}", source_type=SourceType.IMAGE,
                                     image=f"127.0.0.1:{port}/hostile/app{i}:latest", ports=[8080])
            for i in range(HOSTILE_RESOURCES)]


def _queued_tasks() -> int | None:
    """Tasks waiting in the ORM broker (None with another broker)."""
    from django.conf import settings

    if "orm" not in settings.Q_CLUSTER:
        return None
    from django_q.models import OrmQ

    return OrmQ.objects.count()


def _forget(project_slugs: list[str], queued_after: int) -> None:
    """Take this run's projects and the tasks it queued out of the database.

    Rows only (the sandbox cluster is gone with its process): left behind, A's
    resources would stay dirty and be handed out again, and its queued tasks
    would be worked through first, by the next run on the same database.
    """
    from django.conf import settings

    from environments.models import Resource, SourceType
    from projects.models import Project

    ours = Resource.objects.filter(environment__project__slug__in=project_slugs)
    ours.filter(source_type=SourceType.PROMOTE).delete()  # dependants first: promote_from protects upstreams
    ours.delete()
    Project.objects.filter(slug__in=project_slugs).delete()
    if "orm" in settings.Q_CLUSTER:
        from django_q.models import OrmQ

        OrmQ.objects.filter(pk__gt=queued_after).delete()


def _wait_some(watch: DeploymentWatch, keys: list, deadline: float) -> dict:
    """What the watch saw of `keys` by `deadline` (partial: a timeout is a figure, not an exception)."""
    with watch.cond:
        while not all(k in watch.seen for k in keys):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            watch.cond.wait(left)
        return {k: watch.seen[k] for k in keys if k in watch.seen}


def _rounds(watch: DeploymentWatch, world: dict, rounds: int) -> dict:
    from environments import services

    samples, upstream, timeouts, rounds_timed_out = [], [], 0, 0
    for r in range(rounds):
        digest = _digest(f"iso-{world['api'].pk}-{r}-{time.time()}")
        keys = [(ns, name, digest) for ns, name in world["targets"]]
        t0 = time.monotonic()
        services.artifact_publish(resource=world["api"], digest=digest, origin="api")
        seen = _wait_some(watch, keys, t0 + TIMEOUT_S)
        missing = len(keys) - len(seen)
        samples += [seen[k] - t0 if k in seen else float(TIMEOUT_S) for k in keys]
        timeouts += missing
        rounds_timed_out += bool(missing)
        up = watch.seen.get((world["dev"], "api", digest))
        upstream.append(up - t0 if up is not None else float(TIMEOUT_S))
        print(f"isolation round {r + 1}/{rounds}: {len(seen)}/{len(keys)} dependants within {TIMEOUT_S} s, "
              f"upstream {'applied after %.2f s' % (up - t0) if up is not None else 'not applied'}", file=sys.stderr)
        time.sleep(0.5)
    return {"samples": samples, "upstream": upstream, "timeouts": timeouts, "rounds_timed_out": rounds_timed_out}


def run(*, workers: int | None = None, rounds: int | None = None) -> dict:
    from django.db import connection
    from django_q.models import OrmQ

    workers = workers or int(os.environ.get("HOIST_Q_WORKERS", "4"))
    rounds = rounds or ROUNDS
    processes: dict = {}
    watch = publisher = hole = None
    stamp = int(time.time() * 1000) % 10**9
    queued_before = OrmQ.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    try:
        hole = BlackHole()
        processes["sandbox"], api_url = _sandbox()
        cluster = _cluster(api_url)
        world = _innocent(cluster, stamp)
        connection.close()
        processes["worker"] = _process("qcluster", workers=workers)
        processes["observer"] = _process("observe", workers=workers)
        watch = DeploymentWatch(api_url, [world["dev"], world["staging"]])
        seed = _digest("seed")
        watch.wait_for([(ns, name, seed) for ns, name in world["targets"]], TIMEOUT_S)

        # The same rounds before the hostile tenant exists: what B's fan-out costs on this
        # machine anyway, so the figure below shows what A adds, not the machine's speed.
        calm = _rounds(watch, world, rounds)["samples"]

        hostile = _hostile(cluster, stamp, hole.port)
        publisher = TagPublisher(hostile[0])
        time.sleep(HAMMER_S)
        measured = _rounds(watch, world, rounds)

        publisher.stop()
        tag = publisher.figures()
        seen_by_hole = hole.figures()
        backlog = _queued_tasks()
        samples = measured["samples"]
        return {"isolation": {
            "p50_s": round(_percentile(samples, 50), 3),
            "p99_s": round(_percentile(samples, 99), 3),
            "min_s": round(min(samples), 3),
            "max_s": round(max(samples), 3),
            "calm_p50_s": round(_percentile(calm, 50), 3),
            "calm_p99_s": round(_percentile(calm, 99), 3),
            "samples": len(samples),
            "timeouts": measured["timeouts"],
            "rounds": rounds,
            "rounds_timed_out": measured["rounds_timed_out"],
            "upstream_applied_max_s": round(max(measured["upstream"]), 3),
            "dependants": DEPENDANTS,
            "hostile_resources": HOSTILE_RESOURCES,
            "workers": workers,
            "blackhole_max_concurrent": seen_by_hole["max_open"],
            "blackhole_max_concurrent_workers": seen_by_hole["max_open_others"],
            "blackhole_accepted": seen_by_hole["accepted"],
            "blackhole_accepted_workers": seen_by_hole["accepted_others"],
            **tag,
            "pool_never_fully_blocked": int(seen_by_hole["max_open_others"] < workers),
            "queued_tasks_at_end": backlog,
            "timeout_s": TIMEOUT_S,
        }}
    finally:
        if publisher:
            publisher.stop()
        if watch:
            watch.stop()
        if hole:
            hole.close()  # hangs up on every stuck caller, so they return now
        if publisher:
            publisher.join(timeout=10)
        for name in ("observer", "worker", "sandbox"):
            _stop(processes.get(name))
        try:
            _forget([f"iso-a-{stamp}", f"iso-b-{stamp}"], queued_before)
        except Exception as exc:  # tidying up must not hide what went wrong in the run
            print(f"isolation: could not remove this run's projects and tasks: {exc}", file=sys.stderr)
        connection.close()


if __name__ == "__main__":
    from bench import setup_django

    setup_django()
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else None
    print(json.dumps(run(rounds=rounds), indent=2))
