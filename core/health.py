"""Health endpoints for the platform running Hoist.

`/healthz`: the process is up (liveness: restart it if this fails).
`/readyz`: it can do its job: the database answers, every migration is
applied, and the task broker answers (readiness: send no traffic until so).
Both say why in JSON; neither needs a login or reveals data.
"""

from __future__ import annotations

import logging

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

log = logging.getLogger(__name__)


@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


def _database() -> str:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _migrations() -> str:
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return "ok" if not pending else f"{len(pending)} migration(s) not applied"


def _broker() -> str:
    from django_q.brokers import get_broker

    broker = get_broker()
    if not broker.ping():
        return "the task broker does not answer"
    return "ok"


CHECKS = {"database": _database, "migrations": _migrations, "broker": _broker}


@never_cache
def readyz(request):
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:  # whatever the failure, the answer is "not ready" and why
            log.warning("readiness check %s failed: %s", name, exc)
            results[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
        if results[name] != "ok" and name == "database":
            break  # the other checks need the database
    ready = all(value == "ok" for value in results.values()) and len(results) == len(CHECKS)
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": results}, status=200 if ready else 503)


class ProbeMiddleware:
    """Answers /healthz and /readyz before host validation and HTTPS redirects.

    Kubernetes probes connect to the pod's own address (its IP as the Host)
    over plain HTTP: neither is in ALLOWED_HOSTS, and an HTTPS redirect is
    not an answer. First in MIDDLEWARE.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in ("GET", "HEAD"):
            if request.path_info == "/healthz":
                return healthz(request)
            if request.path_info == "/readyz":
                return readyz(request)
        return self.get_response(request)

