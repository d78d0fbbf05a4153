"""Benchmark: render time of a project's pipeline page, 20 environments × 50 resources.

    python -m bench.bench_pages            # from /work/main; prints JSON
    from bench.bench_pages import run      # → {"pipeline_page_20x50": {...}} for bench/results.json

Builds a project of its own (slug `bench-pages`) in the benchmark database:
environment 0 holds image-source deployments with three published artifacts
each; every later environment promotes each resource from the one before,
alternating track-latest and pins, with status fields set as reconcile would
leave them. Then a signed-in maintainer requests the page through Django's
test client (the whole stack: middleware, session, selectors, templates) and
the median of the timed rounds is reported with the number of SQL queries; then
the live refresh, rendered (no version) and unchanged (its version, answered 204),
and the promotion graph of the same project.
The project is removed afterwards.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SLUG = "bench-pages"


def _digest(seed) -> str:
    return "sha256:" + hashlib.sha256(str(seed).encode()).hexdigest()


def _ensure_django() -> None:
    from django.apps import apps

    if not apps.ready:
        from bench import setup_django

        setup_django()


def _build(environments: int, per_environment: int):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from environments.models import Artifact, Binding, Cluster, Environment, Phase, Resource, SourceType
    from projects.models import Membership, Project, Role

    _cleanup()
    user = get_user_model().objects.create_user(username=SLUG, password=SLUG)
    project = Project.objects.create(slug=SLUG, name="Bench pages")
    Membership.objects.create(project=project, user=user, role=Role.MAINTAINER)
    cluster = Cluster.objects.create(name=SLUG, slug=SLUG, api_url="http://127.0.0.1:1")
    envs = Environment.objects.bulk_create([
        Environment(project=project, name=f"env-{i:02d}", slug=f"env-{i:02d}", cluster=cluster,
                    namespace=f"{SLUG}-{i:02d}", position=i, protected=i == environments - 1)
        for i in range(environments)
    ])
    envs = list(Environment.objects.filter(project=project).order_by("position"))
    now = timezone.now()
    previous: dict[str, Resource] = {}
    for index, env in enumerate(envs):
        rows = []
        for n in range(per_environment):
            name = f"svc-{n:02d}"
            common = dict(environment=env, name=name, phase=Phase.READY, reconciled_at=now,
                          current_digest=_digest(f"{name}-{2 + (index % 2)}"), artifact_seq=3)
            if index == 0:
                rows.append(Resource(source_type=SourceType.IMAGE, image=f"registry.example.com/{SLUG}/{name}:1",
                                     applied_seq=3, **common))
            elif n % 2:
                rows.append(Resource(source_type=SourceType.PROMOTE, promote_from=previous[name], binding=Binding.PIN_DIGEST,
                                     pinned_digest=common["current_digest"], **common))
            else:
                rows.append(Resource(source_type=SourceType.PROMOTE, promote_from=previous[name], binding=Binding.TRACK_LATEST,
                                     applied_seq=2 + (index % 2), **common))
        Resource.objects.bulk_create(rows)
        created = {r.name: r for r in Resource.objects.filter(environment=env)}
        Artifact.objects.bulk_create([
            Artifact(resource=resource, sequence=seq, repository=f"registry.example.com/{SLUG}/{name}",
                     digest=_digest(f"{name}-{seq}"), origin=Artifact.Origin.DEMO, first_published_at=now)
            for name, resource in created.items() for seq in (1, 2, 3)
        ])
        previous = created
    return user


def _cleanup() -> None:
    from django.contrib.auth import get_user_model

    from environments.models import Cluster, Environment, Resource
    from projects.models import Project

    # Promote-from is PROTECT: delete downstream environments first.
    for env in Environment.objects.filter(project__slug=SLUG).order_by("-position"):
        Resource.objects.filter(environment=env).delete()
        env.delete()
    Project.objects.filter(slug=SLUG).delete()
    Cluster.objects.filter(slug=SLUG).delete()
    get_user_model().objects.filter(username=SLUG).delete()


def run(environments: int = 20, per_environment: int = 50, rounds: int = 15) -> dict:
    _ensure_django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings

    user = _build(environments, per_environment)
    try:
        with override_settings(ALLOWED_HOSTS=["*"], SECURE_SSL_REDIRECT=False):
            client = Client()
            client.force_login(user)
            url = f"/projects/{SLUG}/"
            for _ in range(2):  # warm up: template loading, connection
                client.get(url)
            timings = []
            for _ in range(rounds):
                started = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.status_code
            with CaptureQueriesContext(connection) as queries:
                client.get(url)
            fragment = []
            for _ in range(rounds):
                started = time.perf_counter()
                refreshed = client.get(url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="pipeline")
                fragment.append((time.perf_counter() - started) * 1000)
            # What every open pipeline asks every 5 s when nothing changed: its version, answered 204.
            version = refreshed.content.decode().split('"X-Hoist-Version": "', 1)[1].split('"', 1)[0]
            unchanged = []
            for _ in range(rounds):
                started = time.perf_counter()
                answer = client.get(url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="pipeline", HTTP_X_HOIST_VERSION=version)
                unchanged.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 204, answer.status_code
            with CaptureQueriesContext(connection) as unchanged_queries:
                client.get(url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="pipeline", HTTP_X_HOIST_VERSION=version)
            graph_url = f"/projects/{SLUG}/graph/"
            client.get(graph_url)
            graph = []
            for _ in range(rounds):
                started = time.perf_counter()
                graph_response = client.get(graph_url)
                graph.append((time.perf_counter() - started) * 1000)
    finally:
        _cleanup()
    return {
        f"pipeline_page_{environments}x{per_environment}": {
            "median_ms": round(statistics.median(timings), 1),
            "min_ms": round(min(timings), 1),
            "htmx_refresh_median_ms": round(statistics.median(fragment), 1),
            "refresh_unchanged_median_ms": round(statistics.median(unchanged), 2),
            "refresh_unchanged_queries": len(unchanged_queries),
            "graph_median_ms": round(statistics.median(graph), 1),
            "graph_html_kib": round(len(graph_response.content) / 1024, 1),
            "queries": len(queries),
            "resources": environments * per_environment,
            "html_kib": round(len(response.content) / 1024, 1),
        }
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
