"""What operators run Hoist with: /healthz, /readyz, /metrics and the log format."""

import json
import logging

import pytest

from core import health, logs
from environments import services
from promotions import metrics
from tests.fixtures.domain import digest


def scrape(client, **headers) -> str:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def value(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_healthz_says_the_process_is_up(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_the_database_migrations_and_broker(client, db):
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok", "broker": "ok"}}


def test_readyz_is_503_naming_what_is_wrong(client, db, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "broker", lambda: "the task broker does not answer")
    monkeypatch.setitem(health.CHECKS, "migrations", lambda: "2 migration(s) not applied")
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"database": "ok", "migrations": "2 migration(s) not applied",
                                       "broker": "the task broker does not answer"}


def test_metrics_need_the_token_when_one_is_set(client, db, settings):
    settings.HOIST_METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert "hoist_promotions" in scrape(client, HTTP_AUTHORIZATION="Bearer scrape-me")


def test_without_a_token_metrics_are_closed_in_production(client, db, settings):
    settings.HOIST_METRICS_TOKEN, settings.DEBUG = "", False
    response = client.get("/metrics")
    assert response.status_code == 403 and b"HOIST_METRICS_TOKEN" in response.content


def test_the_figures_move_with_what_happens(client, dev_web, staging, make_resource, settings):
    from promotions.models import Promotion

    settings.DEBUG = True  # /metrics open without a token (development)
    make_resource(staging, upstream=dev_web)
    before = scrape(client)
    services.artifact_publish(resource=dev_web, digest=digest(1))
    Promotion.objects.filter(resource=dev_web).update(status="healthy", latency_s=0.3, healthy_latency_s=0.8)
    # A person's pin edit, timed from an old publish: not what "publish → applied" measures.
    Promotion.objects.create(resource=dev_web, to_digest=digest(2), reason="pin_edit", status="healthy",
                             latency_s=140.0, healthy_latency_s=141.0)
    metrics.registry_response("registry.a.example", "200")
    metrics.reconcile_attempt("cluster-a")
    metrics.reconcile_failure("cluster-a", retryable=True)
    after = scrape(client)
    assert value(after, 'hoist_promotions{reason="publish",status="healthy"}') == value(
        before, 'hoist_promotions{reason="publish",status="healthy"}') + 1
    assert value(after, 'hoist_publish_to_applied_seconds_bucket{le="0.5"}') >= 1
    assert value(after, "hoist_publish_to_applied_seconds_count") == value(before, "hoist_publish_to_applied_seconds_count") + 1
    assert value(after, 'hoist_publish_to_healthy_seconds_bucket{le="1.0"}') >= 1
    assert value(after, 'hoist_publish_to_healthy_seconds_bucket{le="0.5"}') == value(before, 'hoist_publish_to_healthy_seconds_bucket{le="0.5"}')
    assert value(after, 'hoist_registry_requests_total{host="registry.a.example",status="200"}') == value(
        before, 'hoist_registry_requests_total{host="registry.a.example",status="200"}') + 1
    assert value(after, 'hoist_reconcile_failures_total{cluster="cluster-a",kind="transient"}') >= 1
    assert 'hoist_resources{phase="pending"}' in after and "hoist_queue_depth" in after


def test_webhook_deliveries_are_counted_from_the_audit_trail(client, dev, make_resource, settings):
    settings.HOIST_WEBHOOK_TOKEN, settings.DEBUG = "hook", True
    make_resource(dev, "web", image="registry.a.example/shop/web:main")
    body = {"events": [{"id": "e1", "action": "push", "request": {"host": "registry.a.example"}, "target": {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": digest(1),
        "repository": "shop/web", "tag": "main"}}]}
    before = scrape(client)
    client.post("/hooks/registry/?registry=registry.a.example", json.dumps(body), content_type="application/json",
                HTTP_AUTHORIZATION="Bearer hook")
    client.post("/hooks/registry/?registry=registry.a.example", "{}", content_type="application/json",
                HTTP_AUTHORIZATION="Bearer wrong")
    after = scrape(client)
    assert value(after, 'hoist_webhook_publishes{outcome="ok"}') == 1
    for key in ('hoist_webhook_deliveries_total{outcome="accepted"}', 'hoist_webhook_deliveries_total{outcome="unauthorized"}',
                'hoist_webhook_events_total{result="published"}'):
        assert value(after, key) == value(before, key) + 1, key


def test_json_logs_carry_the_event_fields():
    record = logging.LogRecord("promotions.reconcile", logging.INFO, __file__, 1, "applied %s", ("x",), None)
    record.resource, record.promotion, record.digest = "shop/dev/web", 7, digest(1)
    entry = json.loads(logs.JSONFormatter().format(record))
    assert (entry["message"], entry["resource"], entry["promotion"], entry["digest"], entry["level"]) == (
        "applied x", "shop/dev/web", 7, digest(1), "INFO")
    plain = logs.PlainFormatter("%(message)s").format(record)
    assert plain == f"applied x resource=shop/dev/web promotion=7 digest={digest(1)}"


@pytest.mark.parametrize("status", ["200", "timeout"])
def test_the_registry_client_reports_every_request(status):
    import httpx

    from promotions.registry import RegistryClient

    seen = []

    def handler(request):
        if status == "timeout":
            raise httpx.ConnectTimeout("slow", request=request)
        return httpx.Response(200, headers={"Docker-Content-Digest": digest(1)})

    client = RegistryClient(http_client=httpx.Client(transport=httpx.MockTransport(handler)),
                            on_response=lambda host, code: seen.append((host, code)))
    try:
        client.resolve("registry.a.example/shop/web:1")
    except Exception:
        pass
    assert seen and seen[0] == ("registry.a.example", status)


def test_probes_answer_on_the_pods_own_address_without_https(client, db, settings):
    settings.ALLOWED_HOSTS, settings.SECURE_SSL_REDIRECT = ["hoist.example.com"], True
    assert client.get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/readyz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/api/v1/", HTTP_HOST="10.1.2.3:8000").status_code == 400  # everything else is checked
