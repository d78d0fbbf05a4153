"""API figures: list endpoints at 1,000 resources, and 20 parallel publishes to one upstream.

Lists: median latency of GET over the in-process WSGI stack (token auth,
serializers, pagination; no network), and queries per request, measured
at 10 and at 1,000 resources: the two must be equal.

Parallel publishes: 20 POST .../artifacts/ from 5 threads (each its own
database connection) to one upstream with 10 track-latest dependants. It
checks the state the API leaves for reconcile: no request failed, the
artifact sequences are exactly 1..20, and every dependant's desired digest
(what reconcile will apply) is the digest of the latest publish. Applying
to clusters is reconcile's job and is measured by bench_reconcile.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

LIST_REQUESTS = 15
PUBLISHES = 20
THREADS = 5
DEPENDANTS = 10


def _digest(seed) -> str:
    return "sha256:" + hashlib.sha256(str(seed).encode()).hexdigest()


def _client(user):
    from rest_framework.test import APIClient

    from projects import services

    client = APIClient(HTTP_HOST="localhost")
    _, key = services.token_create(user=user, name="bench")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _setup():
    from django.contrib.auth import get_user_model

    from environments import services as env_services
    from projects.models import Membership, Project, Role

    user = get_user_model().objects.create_user("bench-api", password="x")
    project = Project.objects.create(slug="bench-api", name="bench-api")
    Membership.objects.create(project=project, user=user, role=Role.MAINTAINER)
    cluster = env_services.cluster_create(name="bench-api", slug="bench-api", api_url="http://127.0.0.1:9")
    dev = env_services.environment_create(project=project, name="dev", slug="dev", cluster=cluster, namespace="bench-api-dev")
    staging = env_services.environment_create(project=project, name="staging", slug="staging", cluster=cluster, namespace="bench-api-staging")
    return user, project, dev, staging


def _grow(dev, staging, upstream, total: int) -> None:
    """Bulk rows (the figure is about reads): image resources in dev with an env var and an artifact,
    promoted ones in staging, and a promotion each."""
    from environments.models import Artifact, EnvVar, Resource, SourceType
    from promotions.models import Promotion

    have = Resource.objects.filter(environment=dev).count()
    n = total - have
    if n <= 0:
        return
    images = Resource.objects.bulk_create(
        Resource(environment=dev, name=f"svc-{have + i}", image="registry.example.com/bench/svc:1",
                 ports=[{"name": "http", "port": 8080, "protocol": "TCP"}])
        for i in range(n)
    )
    Resource.objects.bulk_create(
        Resource(environment=staging, name=f"svc-{have + i}", source_type=SourceType.PROMOTE, promote_from=upstream, binding="track_latest")
        for i in range(n)
    )
    EnvVar.objects.bulk_create(EnvVar(resource=r, name="TOKEN", value="x", secret=True) for r in images)
    from django.utils import timezone

    artifacts = Artifact.objects.bulk_create(
        Artifact(resource=r, sequence=1, repository="registry.example.com/bench/svc", digest=_digest(r.pk),
                 origin="api", first_published_at=timezone.now())
        for r in images
    )
    Promotion.objects.bulk_create(Promotion(resource=a.resource, to_digest=a.digest, artifact=a, reason="publish") for a in artifacts)


def _measure(client, path: str) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(path)  # warm up (and the token's once-a-minute last-use write)
    timings = []
    for _ in range(LIST_REQUESTS):
        started = time.perf_counter()
        response = client.get(path)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content[:300]
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    return statistics.median(timings) * 1000, len(queries.captured_queries)


def bench_lists() -> dict:
    from environments import services as env_services

    user, project, dev, staging = _setup()
    upstream = env_services.resource_create(environment=dev, name="upstream", image="registry.example.com/bench/up:1")
    client = _client(user)
    paths = {
        "resources": "/api/v1/projects/bench-api/environments/dev/resources/?page_size=500",
        "promoted_resources": "/api/v1/projects/bench-api/environments/staging/resources/?page_size=500",
        "promotions": "/api/v1/projects/bench-api/promotions/?page_size=500",
    }
    _grow(dev, staging, upstream, 10)
    small = {name: _measure(client, path) for name, path in paths.items()}
    _grow(dev, staging, upstream, 1000)
    large = {name: _measure(client, path) for name, path in paths.items()}
    figures = {}
    for name in paths:
        figures[f"api_list_{name}_1000"] = {
            "median_ms": round(large[name][0], 1),
            "page_size_rows": 500,
            "queries_per_request": large[name][1],
            "queries_per_request_at_10": small[name][1],
            "queries_constant": large[name][1] == small[name][1],
        }
    return figures


def bench_parallel_publish() -> dict:
    from django.contrib.auth import get_user_model
    from django.db import close_old_connections, connection

    from environments import services as env_services
    from environments.models import Artifact, Binding, Environment, SourceType
    from environments import services as promotion_services

    user = get_user_model().objects.get(username="bench-api")
    dev = Environment.objects.get(project__slug="bench-api", slug="dev")
    staging = Environment.objects.get(project__slug="bench-api", slug="staging")
    upstream = env_services.resource_create(environment=dev, name="web", image="registry.example.com/bench/web:1")
    dependants = [
        env_services.resource_create(environment=staging, name=f"web-{i}", source_type=SourceType.PROMOTE,
                                     promote_from=upstream, binding=Binding.TRACK_LATEST)
        for i in range(DEPENDANTS)
    ]
    path = "/api/v1/projects/bench-api/environments/dev/resources/web/artifacts/"
    from projects import services as project_services

    _, key = project_services.token_create(user=user, name="bench-publish")

    def publish(n: int):
        from rest_framework.test import APIClient

        client = APIClient(HTTP_HOST="localhost")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        try:
            started = time.perf_counter()
            response = client.post(path, {"digest": _digest(f"publish-{n}"), "tag": f"b{n}"}, format="json")
            return response.status_code, time.perf_counter() - started
        finally:
            close_old_connections()
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(publish, range(PUBLISHES)))
    wall = time.perf_counter() - started
    statuses = [status for status, _ in results]
    artifacts = list(Artifact.objects.filter(resource=upstream).order_by("sequence"))
    latest = artifacts[-1] if artifacts else None
    on_latest = sum(1 for d in dependants if latest and promotion_services.desired_source(d)[0] == latest.digest)
    ok = (
        statuses.count(201) == PUBLISHES
        and [a.sequence for a in artifacts] == list(range(1, PUBLISHES + 1))
        and len({a.digest for a in artifacts}) == PUBLISHES
        and on_latest == DEPENDANTS
    )
    return {
        "api_parallel_publish": {
            "publishes": PUBLISHES,
            "threads": THREADS,
            "errors": PUBLISHES - statuses.count(201),
            "wall_s": round(wall, 2),
            "median_request_ms": round(statistics.median(t for _, t in results) * 1000, 1),
            "sequences_unique_and_gapless": [a.sequence for a in artifacts] == list(range(1, PUBLISHES + 1)),
            "dependants": DEPENDANTS,
            "dependants_desiring_latest": on_latest,
            "ok": ok,
            "note_text": "checks the state left for reconcile (desired digest); applying is reconcile's, see bench_reconcile",
        }
    }


def run() -> dict:
    figures = bench_lists()
    figures.update(bench_parallel_publish())
    return figures


if __name__ == "__main__":
    import json

    from bench import setup_django

    setup_django()
    print(json.dumps(run(), indent=2))
