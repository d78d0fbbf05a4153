"""Tag watching at scale: 1,000 distinct tags over 3 registries that send no webhooks.

Three real `docker-registry` processes (notifications off), each behind a
counting reverse proxy (`sandbox.registry_proxy`), so requests are counted on
the registries' side of the wire. 30 repositories, 1,000 tags, each pointing
at a small image; 1,200 image-source resources name them (200 name a tag
another resource names too, which must not cost a second HEAD).

The watcher (`promotions.watching.Watcher`, as the observer runs it) checks
every tag at the default interval (HOIST_TAG_WATCH_INTERVAL_S, 30 s). Then:

- first a warm-up (`warm_up_s`): until every tag was checked once (the first
  look publishes to its 1,200 followers) and nothing is overdue, plus one
  interval;
- `requests_per_min`: HEADs of manifests the registries received in the
  window (ideal: distinct tags × 60 / interval = 2,000), `requests_vs_ideal`
  the ratio;
- meanwhile a new image is pushed to a random tag (a different one each time)
  every 1.5 s, and
  `detect_p50_s`/`detect_p99_s`/`detect_max_s` are the seconds from the end
  of the push to the publish of the new digest (Artifact.published_at) for
  the tag's followers; the bar is interval + 1 s.

Nothing but the watcher runs (no workers): the publishes queue reconciles
that nobody takes, so the figures are the watch's alone.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timezone as dt_timezone

import httpx

from bench import registries
from bench.bench_reconcile import _percentile
from sandbox.registry_proxy import RegistryProxy

REGISTRIES = 3
REPOSITORIES_PER_REGISTRY = 10
TAGS = 1000
SHARED = 200  # resources naming a tag another resource names too
WINDOW_S = 60.0
PUSH_EVERY_S = 1.5


def _tag_everything(registry, plan: list[tuple[str, str]], image) -> None:
    """Push `image` once per repository, then point every (repository, tag) at it."""
    with httpx.Client(timeout=60.0) as http:
        for repository in sorted({repo for repo, _ in plan}):
            registries.push_image(registry, repository, image)
        for repository, tag in plan:
            r = http.put(f"{registry.url}/v2/{repository}/manifests/{tag}", content=image.manifest,
                         headers={"Content-Type": image.media_type})
            if r.status_code != 201:
                raise RuntimeError(f"tagging {repository}:{tag}: HTTP {r.status_code}")


def run() -> dict:
    if not registries.registry_available():
        return {"tag_watch": {"skipped": "docker-registry not installed"}}
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from environments import services as env_services
    from environments.models import Artifact, TagWatch
    from projects import services as project_services
    from promotions import watching

    interval = settings.HOIST_TAG_WATCH_INTERVAL_S
    rng = random.Random(13)
    base = registries.make_image([2048], seed=1)
    with registries.Registries() as started:
        servers = [started.start() for _ in range(REGISTRIES)]
        proxies = [RegistryProxy(server.url).start() for server in servers]
        try:
            # 1,000 tags: registry i gets every third one, spread over its repositories.
            tags: list[tuple[int, str, str]] = []
            for n in range(TAGS):
                r = n % REGISTRIES
                tags.append((r, f"bench/app-{(n // REGISTRIES) % REPOSITORIES_PER_REGISTRY}", f"t{n:04d}"))
            for r, server in enumerate(servers):
                _tag_everything(server, [(repo, tag) for rr, repo, tag in tags if rr == r], base)

            owner = get_user_model().objects.create_user("tag-watch-bench", password="x", is_staff=True)
            project = project_services.project_create(name="Tag watch bench", slug="tag-watch-bench", actor=owner)
            cluster = env_services.cluster_create(name="tag-watch-bench", slug="tag-watch-bench",
                                                  api_url="http://127.0.0.1:9", actor=owner)
            environments = [env_services.environment_create(project=project, name=f"e{n}", slug=f"e{n}", cluster=cluster,
                                                            namespace=f"tag-watch-bench-{n}", actor=owner) for n in range(6)]
            created = time.monotonic()
            references = [f"{proxies[r].host}/{repo}:{tag}" for r, repo, tag in tags]
            for n, reference in enumerate(references + rng.sample(references, SHARED)):
                env_services.resource_create(environment=environments[n % len(environments)], name=f"r{n:04d}",
                                             image=reference, source_type="image", actor=owner)
            create_s = time.monotonic() - created
            watches = TagWatch.objects.count()

            watcher = watching.Watcher()
            watcher.start()
            try:
                settled_s = _settle(interval)
                pushes: list[tuple[float, str, str]] = []  # (pushed at, digest, reference)
                window_start = time.time()
                seed = 100
                # Distinct tags: a tag pushed twice within an interval hides its first digest for good
                # (the tag moved on before anyone could look), which is no miss of the watch.
                order = iter(rng.sample(tags, len(tags)))
                while time.time() < window_start + WINDOW_S:
                    r, repo, tag = next(order)
                    seed += 1
                    digest = registries.push_image(servers[r], repo, registries.make_image([512], seed=seed), tag)
                    pushes.append((time.time(), digest, f"{proxies[r].host}/{repo}:{tag}"))
                    time.sleep(PUSH_EVERY_S)
                window_end = window_start + WINDOW_S
                heads = sum(p.count("HEAD", since=window_start, until=window_end, contains="/manifests/") for p in proxies)
                # Every push is detected within one interval (+1 s); wait that long for the last ones.
                deadline = time.time() + interval + 5
                detect: dict[str, float] = {}
                while time.time() < deadline and len(detect) < len(pushes):
                    for pushed_at, digest, _ in pushes:
                        if digest in detect:
                            continue
                        first = (Artifact.objects.filter(digest=digest, origin=Artifact.Origin.WATCH)
                                 .order_by("published_at").values_list("published_at", flat=True).first())
                        if first is not None:
                            detect[digest] = (first - datetime.fromtimestamp(pushed_at, tz=dt_timezone.utc)).total_seconds()
                    time.sleep(0.5)
            finally:
                watcher.stop.set()
                watcher.join_all(timeout=15)
            missed = len(pushes) - len(detect)
            samples = list(detect.values()) + [float(interval + 5)] * missed  # a miss counts as the wait, at least
            ideal = watches * 60 / interval
            figures = {
                "tags": watches,
                "resources": len(references) + SHARED,
                "registries": REGISTRIES,
                "interval_s": interval,
                "window_s": WINDOW_S,
                "requests_per_min": round(heads * 60 / WINDOW_S, 1),
                "ideal_requests_per_min": round(ideal, 1),
                "requests_vs_ideal": round(heads * 60 / WINDOW_S / ideal, 3),
                "pushes": len(pushes),
                "missed": missed,
                "detect_p50_s": round(_percentile(samples, 50), 2),
                "detect_p99_s": round(_percentile(samples, 99), 2),
                "detect_max_s": round(max(samples), 2),
                "setup_resources_s": round(create_s, 1),
                "warm_up_s": round(settled_s, 1),
            }
        finally:
            for proxy in proxies:
                proxy.stop()
            _clean_up()
    return {"tag_watch": figures}


def _settle(interval: float) -> float:
    """Warm up until every watch was checked once (its first look publishes to its followers,
    which takes a while for 1,200 resources) and none is overdue, then one more interval: the
    window then measures the steady cadence, not the catching up."""
    from datetime import timedelta

    from django.utils import timezone

    from environments.models import TagWatch

    started = time.monotonic()
    calm_since = None
    while time.monotonic() - started < 6 * interval:
        behind = timezone.now() - timedelta(seconds=2)
        calm = not TagWatch.objects.filter(checks=0).exists() and not TagWatch.objects.filter(next_check_at__lt=behind).exists()
        if not calm:
            calm_since = None
        elif calm_since is None:
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since > 5:
            break
        time.sleep(1)
    time.sleep(interval)
    return time.monotonic() - started


def _clean_up() -> None:
    """Take the run's rows out (a later run on the same database starts clean)."""
    from django_q.models import OrmQ

    from environments.models import Cluster, RegistryHost, Resource, TagWatch
    from projects.models import Project

    Resource.objects.filter(environment__project__slug="tag-watch-bench").delete()
    Project.objects.filter(slug="tag-watch-bench").delete()
    Cluster.objects.filter(slug="tag-watch-bench").delete()
    TagWatch.objects.all().delete()
    RegistryHost.objects.filter(host__startswith="127.0.0.1:").delete()
    OrmQ.objects.all().delete()


if __name__ == "__main__":
    import json

    from bench import setup_django

    setup_django()
    print(json.dumps(run(), indent=2))
