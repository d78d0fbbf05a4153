"""Prometheus metrics: counters the engine increments, and figures read from the database at scrape time.

Two kinds, because Hoist runs as several processes (web, workers, observer):

- what is in the database is the same from every process, so it is read
  when scraped: promotions by status and reason, publish→applied and
  publish→healthy latency histograms, resources by phase, the queue's depth,
  webhook deliveries by outcome (from the audit trail), notifications
  in the delivery logs by status;
- what happens inside a process is counted where it happens: registry
  requests by host and status, reconcile attempts and failures by cluster,
  webhook deliveries by outcome and their events, notification attempts
  by outcome.
  The web process serves them at `/metrics`; a worker or the observer
  serves its own on `HOIST_METRICS_PORT` (a sidecar port, as Prometheus'
  conventions have it). With `PROMETHEUS_MULTIPROC_DIR` set, the processes
  of one pod (gunicorn's, qcluster's) add up.

`/metrics` takes `Authorization: Bearer $HOIST_METRICS_TOKEN`; without a
token configured it is open only with DEBUG on (else 403, saying so): in
production, set the token or keep it off the network with a policy.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
# The promotions the publish → applied histograms count (see collect()).
AUTOMATIC_REASONS = ("publish", "track_latest")  # ChangeReason values (models load after this module)

REGISTRY_REQUESTS = Counter("hoist_registry_requests", "Requests Hoist sent to container registries.", ["host", "status"])
RECONCILE_ATTEMPTS = Counter("hoist_reconcile_attempts", "Reconcile attempts, by cluster.", ["cluster"])
RECONCILE_FAILURES = Counter("hoist_reconcile_failures", "Failed reconcile attempts, by cluster and kind.",
                             ["cluster", "kind"])
WEBHOOK_DELIVERIES = Counter("hoist_webhook_deliveries", "Registry webhook deliveries, by outcome.", ["outcome"])
WEBHOOK_EVENTS = Counter("hoist_webhook_events", "Events in accepted webhook deliveries, by what Hoist did.", ["result"])
NOTIFICATION_ATTEMPTS = Counter("hoist_notification_attempts",
                                "Attempts to send a notification to a project's webhook, by outcome.", ["outcome"])


def registry_response(host: str, status: str) -> None:
    REGISTRY_REQUESTS.labels(host=host, status=status).inc()


def webhook_delivery(outcome: str, *, events: int = 0, ignored: int = 0) -> None:
    WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()
    if events:
        WEBHOOK_EVENTS.labels(result="published").inc(events)
    if ignored:
        WEBHOOK_EVENTS.labels(result="ignored").inc(ignored)


def notification_attempt(outcome: str) -> None:
    """One POST to a project's webhook (promotions.notifications): delivered, retrying or failed."""
    NOTIFICATION_ATTEMPTS.labels(outcome=outcome).inc()


def reconcile_attempt(cluster: str) -> None:
    RECONCILE_ATTEMPTS.labels(cluster=cluster).inc()


def reconcile_failure(cluster: str, retryable: bool) -> None:
    RECONCILE_FAILURES.labels(cluster=cluster, kind="transient" if retryable else "permanent").inc()


class DatabaseCollector:
    """What every process can read the same way: Hoist's own records."""

    def describe(self):
        return []  # computed at scrape time; nothing to register up front

    def collect(self):
        from django_q.brokers import get_broker

        from environments.models import Resource

        from .models import Promotion
        from projects.models import AuditEntry

        promotions = GaugeMetricFamily("hoist_promotions", "Promotions by status and reason.", labels=["status", "reason"])
        for row in Promotion.objects.order_by().values("status", "reason").annotate(n=Count("pk")):
            promotions.add_metric([row["status"], row["reason"]], row["n"])
        yield promotions

        for stage, field in (("applied", "latency_s"), ("healthy", "healthy_latency_s")):
            aggregates = {f"le_{i}": Count("pk", filter=Q(**{f"{field}__lte": bound})) for i, bound in enumerate(LATENCY_BUCKETS)}
            # Only what Hoist did by itself: a person's change (a pin edit, a promote, a new resource)
            # or one that waited for approvals would count someone's think time or an old publish.
            totals = Promotion.objects.filter(
                reason__in=AUTOMATIC_REASONS, actor__isnull=True, change_request__isnull=True,
                **{f"{field}__isnull": False},
            ).aggregate(
                count=Count("pk"), total=Sum(field), **aggregates)
            buckets = [(floatToGoString(bound), totals[f"le_{i}"]) for i, bound in enumerate(LATENCY_BUCKETS)]
            buckets.append(("+Inf", totals["count"]))
            yield HistogramMetricFamily(
                f"hoist_publish_to_{stage}_seconds",
                f"Seconds from an image's first publish in the project to its promotion being {stage}, "
                "for the promotions Hoist made by itself (publish, track latest).",
                buckets=buckets, sum_value=totals["total"] or 0.0,
            )

        phases = GaugeMetricFamily("hoist_resources", "Resources by rollout phase.", labels=["phase"])
        for row in Resource.objects.order_by().values("phase").annotate(n=Count("pk")):
            phases.add_metric([row["phase"]], row["n"])
        yield phases

        dirty = GaugeMetricFamily("hoist_resources_dirty", "Resources whose desired state is not reconciled yet.")
        dirty.add_metric([], Resource.objects.filter(dirty_at__isnull=False).count())
        yield dirty

        depth = GaugeMetricFamily("hoist_queue_depth", "Tasks waiting in the django-q2 queue.")
        try:
            depth.add_metric([], get_broker().queue_size() or 0)
        except Exception:  # a broker that doesn't answer: the figure is absent, /readyz says why
            log.warning("queue depth unavailable", exc_info=True)
        else:
            yield depth

        webhook = GaugeMetricFamily("hoist_webhook_publishes", "Registry webhook publishes, by outcome (from the audit trail).",
                                    labels=["outcome"])
        for row in AuditEntry.objects.filter(via="webhook").order_by().values("outcome").annotate(n=Count("pk")):
            webhook.add_metric([row["outcome"]], row["n"])
        yield webhook

        from .models import WebhookDelivery

        notifications = GaugeMetricFamily("hoist_notification_deliveries",
                                          "Notifications in the delivery logs of projects' webhooks, by status.", labels=["status"])
        for row in WebhookDelivery.objects.order_by().values("status").annotate(n=Count("pk")):
            notifications.add_metric([row["status"]], row["n"])
        yield notifications

        from django.utils import timezone

        from .models import Gate

        # Per host (`registry:<host>`, `cluster:<id>:<endpoint hash>`): 1 while its circuit breaker is open.
        breakers = GaugeMetricFamily("hoist_breaker_open", "1 while the host's circuit breaker is open.", labels=["target"])
        failures = GaugeMetricFamily("hoist_breaker_failures", "Transient failures in a row, per host.", labels=["target"])
        now = timezone.now()
        for gate in Gate.objects.filter(Q(failures__gt=0) | Q(open_until__isnull=False)).values("key", "failures", "open_until"):
            breakers.add_metric([gate["key"]], 1 if gate["open_until"] and gate["open_until"] > now else 0)
            failures.add_metric([gate["key"]], gate["failures"])
        yield breakers
        yield failures


def build_registry(*, with_database: bool = True) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (REGISTRY_REQUESTS, RECONCILE_ATTEMPTS, RECONCILE_FAILURES, WEBHOOK_DELIVERIES, WEBHOOK_EVENTS,
                          NOTIFICATION_ATTEMPTS):
            registry.register(collector)
    if with_database:
        registry.register(DatabaseCollector())
    return registry


def metrics(request) -> HttpResponse:
    """`GET /metrics` (see the module docstring for who may read it)."""
    expected = settings.HOIST_METRICS_TOKEN
    if expected:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            return HttpResponse("Send Authorization: Bearer <HOIST_METRICS_TOKEN>.\n", status=401,
                                content_type="text/plain", headers={"WWW-Authenticate": "Bearer"})
    elif not settings.DEBUG:
        return HttpResponse("Set HOIST_METRICS_TOKEN to read /metrics (or keep it off the network and turn DEBUG on).\n",
                            status=403, content_type="text/plain")
    return HttpResponse(generate_latest(build_registry()), content_type=CONTENT_TYPE_LATEST)


_server_lock = threading.Lock()
_serving = False


def serve_process_metrics() -> int | None:
    """Serve this process's counters on HOIST_METRICS_PORT (workers, the observer); returns the port."""
    global _serving
    port = int(os.environ.get("HOIST_METRICS_PORT", "0") or 0)
    if not port:
        return None
    with _server_lock:
        if _serving:
            return port
        from prometheus_client import start_http_server

        start_http_server(port, registry=build_registry(with_database=False))
        _serving = True
    return port
