"""Notifications (promotions/notifications.py): events become deliveries, deliveries reach real receivers.

A small HTTP receiver on loopback answers what each test scripts (200, 500,
404, 429 with Retry-After, a redirect); the black hole accepts and never
answers. The task runs by calling `deliver()` directly, one attempt at a
time, as a worker would. The engine's events come from real reconciles
against the sandbox cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_q.models import OrmQ, Schedule

from environments import services, signals
from environments.models import Phase, Resource
from projects.models import AuditEntry
from promotions import notifications, reconcile, rollout
from promotions.models import ProjectWebhook, Promotion, WebhookDelivery
from tests.fixtures.domain import cooldown_over, digest

pytestmark = pytest.mark.django_db

IMAGE = "registry.a.example/shop/web"
SECRET = "s3cret-s3cret-s3cret-0123456789"


class Receiver:
    """An HTTP server on loopback: answers POSTs from `script` in order (then 200), records each request."""

    def __init__(self):
        self.script: list[tuple[int, dict]] = []
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                payload = b"ok" if status < 300 else b'{"error": "no thanks"}'
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/hoist"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def hook(project, receiver):
    return notifications.webhook_create(project=project, name="ci", url=receiver.url, secret=SECRET)


@pytest.fixture
def slack(project, receiver):
    return notifications.webhook_create(project=project, name="#deploys", url=receiver.url.replace("hoist", "slack"),
                                        format="slack")


@pytest.fixture
def strict(settings):
    """Production's default outbound policy: no list, DEBUG off, public addresses only."""
    settings.HOIST_ALLOWED_REGISTRIES = []
    settings.HOIST_ALLOW_PRIVATE_REGISTRIES = False
    return settings


def verify(header: str, body: bytes, secret: str = SECRET, tolerance_s: int = 300) -> bool:
    """What a receiver does (the README's snippet): recompute the HMAC, compare, refuse old timestamps."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    stamp = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - stamp) <= tolerance_s


def announce(project, event="promotion.healthy", **data):
    data = {"environment": "prod", "resource": "web", "digest": digest(1), "from_digest": digest(0), "actor": "ana",
            "reason": "pin_edit", "promotion_id": 7, **data}
    signals.event_happened.send(sender=None, project=project, event=event, data=data)


def attempt(django_capture_on_commit_callbacks, delivery, number) -> str:
    """One attempt, as the worker runs it; the retry it schedules (on commit) is written."""
    with django_capture_on_commit_callbacks(execute=True):
        return notifications.deliver(delivery.pk, number)


# --- the Hoist format and its signature ----------------------------------------------------------


def test_a_test_delivery_is_signed_and_the_signature_verifies(hook, receiver, maintainer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        delivery = notifications.webhook_test(webhook=hook, actor=maintainer)
    assert len(queued) == 1 and delivery.status == "queued" and delivery.attempts == 0 and receiver.requests == []
    assert notifications.deliver(delivery.pk, 1) == "delivered"

    (request,) = receiver.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert request["path"] == "/hooks/hoist"
    assert headers["x-hoist-event"] == "test" and headers["x-hoist-delivery"] == str(delivery.pk)
    assert headers["content-type"].startswith("application/json")
    assert verify(headers["x-hoist-signature"], request["body"])
    assert not verify(headers["x-hoist-signature"], request["body"] + b" ")  # a changed body fails
    assert not verify(headers["x-hoist-signature"], request["body"], secret="another-secret-0123456")
    body = json.loads(request["body"])
    assert body["event"] == "test" and body["project"] == "shop" and body["actor"] == "maintainer"
    assert body["url"] == "http://127.0.0.1:8000/projects/shop/notifications/"
    assert abs((parse_datetime(body["at"]) - timezone.now()).total_seconds()) < 30

    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_code, delivery.attempts) == ("delivered", 200, 1)
    assert delivery.body.encode() == request["body"]  # the log keeps exactly what was sent
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None


def test_an_old_timestamp_is_refused_by_the_verifier():
    body = b'{"event": "test"}'
    stale = notifications.signature(SECRET, body, timestamp=int(time.time()) - 3600)
    assert not verify(stale, body)
    assert verify(notifications.signature(SECRET, body), body)


def test_the_hoist_body_carries_the_event_its_data_and_a_link(hook, receiver, project, settings):
    settings.HOIST_PUBLIC_URL = "https://hoist.example.com"
    announce(project, "promotion.failed", error="ReplicaSet web-x timed out")
    delivery = WebhookDelivery.objects.get()
    notifications.deliver(delivery.pk, 1)
    body = json.loads(receiver.requests[0]["body"])
    assert body == {
        "event": "promotion.failed", "project": "shop", "at": body["at"],
        "text": f"shop/prod web failed to roll out {digest(1)[:19]}…: ReplicaSet web-x timed out",
        "url": "https://hoist.example.com/projects/shop/envs/prod/resources/web/",
        "environment": "prod", "resource": "web", "digest": digest(1), "from_digest": digest(0), "actor": "ana",
        "reason": "pin_edit", "promotion_id": 7, "error": "ReplicaSet web-x timed out",
    }


# --- the Slack format ------------------------------------------------------------------------------


def test_the_slack_body_reads_as_a_message(slack, receiver, project):
    announce(project)
    notifications.deliver(WebhookDelivery.objects.get().pk, 1)
    body = json.loads(receiver.requests[0]["body"])
    assert set(body) == {"text", "blocks"}
    assert body["text"] == f":white_check_mark: shop/prod web is healthy on {digest(1)[:19]}…"
    section, context = body["blocks"]
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": body["text"]}}
    assert context["type"] == "context"
    assert context["elements"][0]["text"] == ("`promotion.healthy` · by ana · "
                                              "<http://127.0.0.1:8000/projects/shop/envs/prod/resources/web/|Open in Hoist>")
    # No secret: unsigned, as Slack expects.
    assert "x-hoist-signature" not in {k.lower() for k in receiver.requests[0]["headers"]}


def test_slack_text_is_escaped(slack, receiver, project):
    announce(project, "approval.rejected", reason="<!channel> & friends", actor="<b>")
    body = json.loads(WebhookDelivery.objects.get().body)
    assert body["text"] == f":no_entry_sign: shop/prod web: &lt;b&gt; rejected {digest(1)[:19]}…: &lt;!channel&gt; &amp; friends"


@pytest.mark.parametrize("event, data, text", [
    ("promotion.rolled_back", {}, "shop/prod web is rolling back to {d1} after {d0} failed"),
    ("approval.requested", {"reason": "", "request_id": 3}, "shop/prod web: ana asks for approval to promote {d1}"),
    ("approval.approved", {}, "shop/prod web: ana approved {d1}"),
    ("approval.approved", {"approvals": 1, "required": 2}, "shop/prod web: ana approved {d1} (1 of 2 approvals)"),
    ("freeze.started", {"resource": None, "digest": "", "reason": "release week"}, "shop/prod is frozen: release week"),
    ("freeze.started", {"resource": None, "digest": "", "until": "2026-11-30T05:00:00Z", "windows": ["Black Friday"]},
     "shop/prod is frozen until 2026-11-30 05:00 UTC (Black Friday)"),
    ("freeze.ended", {"resource": None, "digest": ""}, "shop/prod is no longer frozen"),
])
def test_every_event_has_a_sentence(project, event, data, text):
    base = {"environment": "prod", "resource": "web", "digest": digest(1), "from_digest": digest(0), "actor": "ana"}
    said = notifications.describe(event, "shop", {**base, **data})
    assert said == text.format(d1=digest(1)[:19] + "…", d0=digest(0)[:19] + "…")


# --- retries ---------------------------------------------------------------------------------------


def test_a_500_receiver_is_tried_again_later_until_it_answers(hook, receiver, project, django_capture_on_commit_callbacks):
    receiver.script = [(500, {}), (502, {})]
    announce(project)
    delivery = WebhookDelivery.objects.get()

    before = timezone.now()
    assert attempt(django_capture_on_commit_callbacks, delivery, 1) == "retrying"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("retrying", 1, 500)
    assert delivery.last_error.startswith("HTTP 500")
    assert timedelta(seconds=9) < delivery.next_attempt_at - before < timedelta(seconds=12)
    retry = Schedule.objects.get(func="promotions.notifications.deliver")
    assert (retry.schedule_type, retry.next_run, retry.args) == (Schedule.ONCE, delivery.next_attempt_at, f"({delivery.pk}, 2)")

    assert attempt(django_capture_on_commit_callbacks, delivery, 2) == "retrying"
    delivery.refresh_from_db()
    assert delivery.next_attempt_at - timezone.now() > timedelta(seconds=25)  # backing off: 10 s, then 30 s
    assert attempt(django_capture_on_commit_callbacks, delivery, 3) == "delivered"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 3, 200)

    assert len(receiver.requests) == 3
    assert len({r["body"] for r in receiver.requests}) == 1  # every attempt sends the same bytes…
    assert {r["headers"]["X-Hoist-Delivery"] for r in receiver.requests} == {str(delivery.pk)}
    assert all(verify(r["headers"]["X-Hoist-Signature"], r["body"]) for r in receiver.requests)  # …each signed afresh


def test_a_receiver_that_keeps_failing_is_given_up_after_six_attempts(hook, receiver, project, django_capture_on_commit_callbacks):
    receiver.script = [(503, {})] * 10
    announce(project)
    delivery = WebhookDelivery.objects.get()
    outcomes = []
    for n in range(1, 7):
        cooldown_over()  # the retries come 10 s to 5 min apart: the host's breaker lets each one probe
        outcomes.append(attempt(django_capture_on_commit_callbacks, delivery, n))
    assert outcomes == ["retrying"] * 5 + ["failed"]
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == 6
    assert delivery.last_error == "HTTP 503: {\"error\": \"no thanks\"} (gave up after 6 attempts)"
    assert Schedule.objects.filter(func="promotions.notifications.deliver").count() == 5
    assert notifications.deliver(delivery.pk, 7) == "skipped"


def test_a_404_fails_at_once(hook, receiver, project, django_capture_on_commit_callbacks):
    receiver.script = [(404, {})]
    announce(project)
    delivery = WebhookDelivery.objects.get()
    assert attempt(django_capture_on_commit_callbacks, delivery, 1) == "failed"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 1, 404)
    assert not Schedule.objects.filter(func="promotions.notifications.deliver").exists()


def test_retry_after_is_honoured_up_to_ten_minutes(hook, receiver, project, django_capture_on_commit_callbacks):
    receiver.script = [(429, {"Retry-After": "120"}), (503, {"Retry-After": "86400"})]
    announce(project)
    delivery = WebhookDelivery.objects.get()
    attempt(django_capture_on_commit_callbacks, delivery, 1)
    delivery.refresh_from_db()
    assert timedelta(seconds=118) < delivery.next_attempt_at - timezone.now() <= timedelta(seconds=120)
    attempt(django_capture_on_commit_callbacks, delivery, 2)
    delivery.refresh_from_db()
    assert timedelta(seconds=590) < delivery.next_attempt_at - timezone.now() <= timedelta(seconds=600)


def test_a_dead_host_is_not_called_again_until_its_breaker_lets_a_probe_through(project, black_hole, monkeypatch,
                                                                                django_capture_on_commit_callbacks):
    monkeypatch.setattr(notifications, "READ_TIMEOUT_S", 0.2)
    hook = notifications.webhook_create(project=project, name="hole", url=f"http://{black_hole.host}/", secret=SECRET)
    for n in range(4):
        announce(project, promotion_id=n)
    first, second, third, fourth = hook.deliveries.order_by("id")
    for delivery in (first, second, third):
        assert attempt(django_capture_on_commit_callbacks, delivery, 1) == "retrying"
    assert black_hole.accepted == 3
    # Three failures in a row opened the host's breaker: the next delivery waits, and isn't counted.
    assert attempt(django_capture_on_commit_callbacks, fourth, 1) == "deferred"
    assert black_hole.accepted == 3
    fourth.refresh_from_db()
    assert (fourth.status, fourth.attempts) == ("queued", 0) and fourth.next_attempt_at > timezone.now()
    assert Schedule.objects.filter(func="promotions.notifications.deliver", args=f"({fourth.pk}, 1)").exists()
    cooldown_over()
    assert attempt(django_capture_on_commit_callbacks, fourth, 1) == "retrying"  # the probe
    assert black_hole.accepted == 4


def test_at_most_two_deliveries_are_in_flight_so_workers_stay_free_for_promotions(hook, receiver, project,
                                                                                 django_capture_on_commit_callbacks):
    from promotions import guard

    held = [guard.take_slot(notifications.SLOTS_KEY, notifications.SLOTS, lease_s=30, label="x") for _ in range(2)]
    announce(project)
    delivery = WebhookDelivery.objects.get()
    assert attempt(django_capture_on_commit_callbacks, delivery, 1) == "deferred"
    assert receiver.requests == []
    guard.give_back(notifications.SLOTS_KEY, *held[0])
    assert attempt(django_capture_on_commit_callbacks, delivery, 1) == "delivered"


def test_a_delivery_held_back_for_an_hour_is_given_up(hook, receiver, project, django_capture_on_commit_callbacks):
    from promotions import guard

    guard.take_slot(notifications.SLOTS_KEY, 1, lease_s=30, label="x")
    guard.take_slot(notifications.SLOTS_KEY, 2, lease_s=30, label="x")
    announce(project)
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(hours=2))
    assert attempt(django_capture_on_commit_callbacks, delivery, 1) == "failed"
    delivery.refresh_from_db()
    assert delivery.last_error.startswith("not sent: notifications already has 2 calls")


def test_the_url_never_reaches_the_logs(project, receiver, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    receiver.script = [(500, {})]
    hook = notifications.webhook_create(project=project, name="slack", format="slack",
                                        url=receiver.url.replace("/hooks/hoist", "/services/T0/B0/credential-123"))
    notifications.deliver(notifications.webhook_test(webhook=hook).pk, 1)
    assert receiver.requests[0]["path"] == "/services/T0/B0/credential-123"
    assert caplog.records and "credential-123" not in caplog.text


def test_a_redirect_is_not_followed(hook, receiver, project):
    receiver.script = [(302, {"Location": "http://169.254.169.254/latest/meta-data/"})]
    announce(project)
    delivery = WebhookDelivery.objects.get()
    assert notifications.deliver(delivery.pk, 1) == "failed"
    delivery.refresh_from_db()
    assert "Hoist follows no redirects" in delivery.last_error and len(receiver.requests) == 1


def test_a_second_task_for_the_same_attempt_sends_nothing(hook, receiver, project):
    announce(project)
    delivery = WebhookDelivery.objects.get()
    assert notifications.deliver(delivery.pk, 1) == "delivered"
    assert notifications.deliver(delivery.pk, 1) == "skipped"
    assert len(receiver.requests) == 1


def test_the_sweep_hands_out_a_delivery_whose_task_was_lost(hook, project, monkeypatch):
    handed = []
    monkeypatch.setattr(notifications, "_enqueue", lambda pk, number: handed.append((pk, number)))
    announce(project)
    delivery = WebhookDelivery.objects.get()
    assert notifications.sweep() == 0  # just queued: its task is on its way
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    assert notifications.sweep() == 1 and handed == [(delivery.pk, 1)]
    assert notifications.sweep() == 0  # handed out once, not every minute
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=6, next_attempt_at=timezone.now() - timedelta(minutes=5))
    notifications.sweep()
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "lost" in delivery.last_error


# --- the delivery log --------------------------------------------------------------------------------


def test_the_log_records_each_event_for_each_webhook_that_wants_it(hook, slack, project, make_user, receiver):
    failures_only = notifications.webhook_create(project=project, name="pager", url=receiver.url, secret=SECRET,
                                                 events=["promotion.failed", "promotion.rolled_back"])
    paused = notifications.webhook_create(project=project, name="paused", url=receiver.url, secret=SECRET, active=False)
    announce(project, "promotion.healthy")
    announce(project, "promotion.failed")
    logged = {(d.webhook.name, d.event) for d in WebhookDelivery.objects.select_related("webhook")}
    assert logged == {("ci", "promotion.healthy"), ("#deploys", "promotion.healthy"), ("ci", "promotion.failed"),
                      ("#deploys", "promotion.failed"), ("pager", "promotion.failed")}
    assert not paused.deliveries.exists() and failures_only.events == ["promotion.failed", "promotion.rolled_back"]


def test_the_log_keeps_the_newest_deliveries(hook, project, monkeypatch):
    monkeypatch.setattr(notifications, "KEEP_DELIVERIES", 3)
    for n in range(5):
        announce(project, promotion_id=n)
    kept = [json.loads(d.body)["promotion_id"] for d in hook.deliveries.order_by("-id")]
    assert kept == [4, 3, 2]


def test_a_paused_webhook_gets_no_events_but_can_be_tested(hook, receiver, project, maintainer):
    notifications.webhook_update(webhook=hook, active=False, actor=maintainer)
    announce(project)
    assert not WebhookDelivery.objects.exists()
    delivery = notifications.webhook_test(webhook=hook, actor=maintainer)
    assert notifications.deliver(delivery.pk, 1) == "delivered"


def test_an_unknown_event_is_not_sent(hook, project):
    announce(project, "promotion.exploded")
    assert not WebhookDelivery.objects.exists()


# --- the outbound policy -------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook", "http://10.0.0.5/hook", "https://metadata.google.internal/", "http://0.0.0.0:9/",
])
def test_a_loopback_private_or_metadata_url_is_refused(strict, project, url):
    with pytest.raises(ValidationError) as refused:
        notifications.webhook_create(project=project, name="x", url=url, secret=SECRET)
    assert "outbound policy" in refused.value.message_dict["url"][0]
    assert not ProjectWebhook.objects.exists()


@pytest.mark.parametrize("url, says", [
    ("ftp://hooks.example.com/x", "https://"), ("https://", "host"), ("https://user:pw@hooks.example.com/", "password"),
    ("https://hooks.example.com/a b", "spaces"), ("", "Give the URL"), ("https://hooks.example.com:99999/", "valid"),
])
def test_a_url_hoist_cant_send_to_is_refused(project, url, says):
    with pytest.raises(ValidationError) as refused:
        notifications.webhook_create(project=project, name="x", url=url, secret=SECRET)
    assert says in refused.value.message_dict["url"][0]


def test_an_allow_list_also_governs_webhooks(settings, project):
    settings.HOIST_ALLOWED_REGISTRIES = ["ghcr.io", "hooks.slack.com"]
    settings.HOIST_ALLOW_PRIVATE_REGISTRIES = False
    notifications.webhook_create(project=project, name="slack", url="https://hooks.slack.com/services/T/B/x", format="slack")
    with pytest.raises(ValidationError, match="HOIST_ALLOWED_REGISTRIES"):
        notifications.webhook_create(project=project, name="other", url="https://hooks.example.com/x", format="slack")


def test_a_name_that_resolves_to_loopback_is_refused_when_connecting(settings, project, receiver, monkeypatch):
    """DNS rebinding: the name passed when the webhook was added; the connection is checked after DNS."""
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: (
        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))] if host == "hooks.rebind.example"
        else real(host, port, *a, **k)))
    settings.HOIST_ALLOWED_REGISTRIES, settings.HOIST_ALLOW_PRIVATE_REGISTRIES = [], False
    hook = notifications.webhook_create(project=project, name="rebind", secret=SECRET,
                                        url=f"http://hooks.rebind.example:{receiver.port}/x")
    delivery = notifications.webhook_test(webhook=hook)
    assert notifications.deliver(delivery.pk, 1) == "failed"  # final: retrying can't make it allowed
    delivery.refresh_from_db()
    assert "outbound policy" in delivery.last_error and delivery.attempts == 1
    assert receiver.requests == []


def test_a_black_hole_costs_one_attempt_its_timeouts_and_no_more(project, black_hole, monkeypatch):
    monkeypatch.setattr(notifications, "READ_TIMEOUT_S", 0.3)
    hook = notifications.webhook_create(project=project, name="hole", url=f"http://{black_hole.host}/", secret=SECRET)
    delivery = notifications.webhook_test(webhook=hook)
    started = time.monotonic()
    assert notifications.deliver(delivery.pk, 1) == "retrying"
    assert time.monotonic() - started < 2
    delivery.refresh_from_db()
    assert "did not answer in time" in delivery.last_error and delivery.response_code is None


# --- the engine's events ------------------------------------------------------------------------


@pytest.fixture
def web(dev, make_resource, clusters):
    return make_resource(dev, "web", image=f"{IMAGE}@{digest(1)}", ports=[8080], replicas=2)


def events_of(hook) -> list[tuple[str, dict]]:
    return [(d.event, json.loads(d.body)) for d in hook.deliveries.order_by("id")]


def test_the_engine_announces_healthy_failed_and_rolled_back(web, hook, clusters):
    Resource.objects.filter(pk=web.pk).update(rollback_on_failure=True)
    reconcile.reconcile_resource(web.pk)
    services.artifact_publish(resource=web, digest=digest(2))
    clusters["a"].api.hold_rollouts(True)
    reconcile.reconcile_resource(web.pk)
    web.refresh_from_db()
    rollout.record(web.pk, rollout.Health(rollout.FAILED, web.current_image, 0, 2, "timed out progressing"))
    clusters["a"].api.hold_rollouts(False)
    reconcile.reconcile_resource(web.pk)  # the rollback, healthy at once

    events = events_of(hook)
    assert [event for event, _ in events] == ["promotion.healthy", "promotion.failed", "promotion.rolled_back",
                                              "promotion.healthy"]
    first = Promotion.objects.filter(resource=web).order_by("id").first()
    failed = Promotion.objects.get(resource=web, to_digest=digest(2))
    rollback = Promotion.objects.get(resource=web, reason=Promotion.Reason.ROLLBACK)
    healthy, failure, rolled_back, healthy_again = (body for _, body in events)
    assert (healthy["environment"], healthy["resource"], healthy["digest"], healthy["promotion_id"]) == (
        "dev", "web", digest(1), first.pk)
    assert (failure["digest"], failure["from_digest"], failure["promotion_id"], failure["error"]) == (
        digest(2), digest(1), failed.pk, "timed out progressing")
    assert (rolled_back["digest"], rolled_back["from_digest"], rolled_back["promotion_id"]) == (
        digest(1), digest(2), rollback.pk)
    assert rolled_back["actor"].startswith("rollback:")
    assert healthy_again["promotion_id"] == rollback.pk
    assert all(body["url"].endswith("/projects/shop/envs/dev/resources/web/") for _, body in events)


def test_a_broken_notification_never_fails_the_engines_record(web, hook, monkeypatch):
    def broken(*args, **kwargs):
        raise DatabaseError("the delivery log is on fire")

    monkeypatch.setattr(notifications, "build_body", broken)
    reconcile.reconcile_resource(web.pk)
    web.refresh_from_db()
    assert web.phase == Phase.READY
    assert Promotion.objects.get(resource=web).status == Promotion.Status.HEALTHY
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_black_hole_receiver_never_holds_up_a_promotion(dev, make_resource, clusters, black_hole):
    hook = notifications.webhook_create(project=dev.project, name="hole", url=f"http://{black_hole.host}/", secret=SECRET)
    web = make_resource(dev, "web", image=f"{IMAGE}@{digest(1)}", ports=[8080])
    started = time.monotonic()
    reconcile.reconcile_resource(web.pk)
    assert time.monotonic() - started < 5
    # Committed: a new connection sees the healthy promotion and the queued delivery.
    assert Promotion.objects.get(resource=web).status == Promotion.Status.HEALTHY
    delivery = hook.deliveries.get()
    assert (delivery.event, delivery.status, delivery.attempts) == ("promotion.healthy", "queued", 0)
    assert black_hole.accepted == 0  # nothing was sent inline…
    assert OrmQ.objects.count() >= 1  # …the delivery waits in the queue for a worker


# --- the services: maintainers only, audited ------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "developer", "outsider"])
def test_only_maintainers_manage_webhooks(members, project, receiver, role):
    with pytest.raises(PermissionDenied, match="maintainer role in project shop to manage notifications"):
        notifications.webhook_create(project=project, name="x", url=receiver.url, secret=SECRET, actor=members[role])
    assert not ProjectWebhook.objects.exists()
    entry = AuditEntry.objects.get(action="webhook.create")
    assert entry.outcome == "refused" and entry.project == project


def test_writes_are_audited_without_the_url_or_the_secret(maintainer, project, receiver):
    hook = notifications.webhook_create(project=project, name="ci", url=receiver.url + "?token=abc", secret=SECRET,
                                        actor=maintainer)
    notifications.webhook_update(webhook=hook, events=["promotion.failed"], actor=maintainer)
    notifications.webhook_test(webhook=hook, actor=maintainer)
    notifications.webhook_delete(webhook=hook, actor=maintainer)
    entries = list(AuditEntry.objects.order_by("id"))
    assert [(e.action, e.outcome) for e in entries] == [("webhook.create", "ok"), ("webhook.update", "ok"),
                                                        ("webhook.test", "ok"), ("webhook.delete", "ok")]
    assert entries[0].changes["after"] == {"name": "ci", "url": f"http://127.0.0.1:{receiver.port}/…", "format": "hoist",
                                           "events": [], "active": True, "secret": "set"}
    assert entries[1].changes["after"]["events"] == ["promotion.failed"]
    text = json.dumps([e.changes for e in entries])
    assert SECRET not in text and "token=abc" not in text and "/hooks/hoist" not in text


def test_the_url_and_the_secret_are_encrypted_at_rest(hook, receiver):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT url, secret FROM promotions_projectwebhook WHERE id = %s", [hook.pk])
        url, secret = cursor.fetchone()
    assert url.startswith("fernet:") and secret.startswith("fernet:")
    assert receiver.url not in url and SECRET not in secret


def test_every_field_is_checked_at_once(project):
    with pytest.raises(ValidationError) as refused:
        notifications.webhook_create(project=project, name="", url="gopher://x", format="xml", secret="short",
                                     events=["promotion.healthy", "nope"], active="yes")
    assert set(refused.value.message_dict) == {"name", "url", "format", "secret", "events", "active"}


def test_the_hoist_format_needs_a_secret_and_names_are_unique(project, receiver, hook):
    with pytest.raises(ValidationError, match="signs every body"):
        notifications.webhook_create(project=project, name="other", url=receiver.url)
    with pytest.raises(ValidationError) as taken:
        notifications.webhook_create(project=project, name="ci", url=receiver.url, format="slack")
    assert "already has a webhook named 'ci'" in taken.value.message_dict["name"][0]
    with pytest.raises(ValidationError, match="signs every body"):
        notifications.webhook_update(webhook=hook, secret="")


# --- the admin ----------------------------------------------------------------------------------


def test_the_admin_lists_adds_and_tests_webhooks_through_the_services(admin_client, project, receiver, hook):
    from django.urls import reverse

    assert admin_client.get(reverse("admin:promotions_projectwebhook_changelist")).status_code == 200
    page = admin_client.get(reverse("admin:promotions_projectwebhook_change", args=[hook.pk])).content.decode()
    assert SECRET not in page and "/hooks/hoist" not in page  # write-only, never shown back
    inline = {f"deliveries-{k}": v for k, v in
              {"TOTAL_FORMS": "0", "INITIAL_FORMS": "0", "MIN_NUM_FORMS": "0", "MAX_NUM_FORMS": "0"}.items()}
    response = admin_client.post(reverse("admin:promotions_projectwebhook_add"), {
        "project": project.pk, "name": "#ops", "url": "ftp://hooks.example.com/", "format": "slack", "active": "on", **inline})
    assert response.status_code == 200 and "Hoist sends notifications to https://" in response.content.decode()
    assert not ProjectWebhook.objects.filter(name="#ops").exists()
    response = admin_client.post(reverse("admin:promotions_projectwebhook_add"), {
        "project": project.pk, "name": "#ops", "url": receiver.url, "format": "slack", "events": ["promotion.failed"],
        "active": "on", **inline})
    assert response.status_code == 302, response.content.decode()[:3000]
    added = ProjectWebhook.objects.get(name="#ops")
    assert (added.format, added.events, added.url) == ("slack", ["promotion.failed"], receiver.url)
    assert AuditEntry.objects.filter(action="webhook.create", via="admin", outcome="ok").count() == 1
    response = admin_client.post(reverse("admin:promotions_projectwebhook_changelist"), {
        "action": "send_test", "_selected_action": [hook.pk, added.pk]}, follow=True)
    assert "Test notifications queued: 2." in response.content.decode()
    assert WebhookDelivery.objects.filter(event="test").count() == 2
    assert admin_client.get(reverse("admin:promotions_webhookdelivery_changelist")).status_code == 200


def test_the_readme_verifier_accepts_hoists_signature_and_refuses_the_rest():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Notifications"):readme.index("## Performance")]
    code = section[section.index("```python\n") + len("```python\n"):]
    namespace: dict = {}
    exec(code[:code.index("```")], namespace)
    body = b'{"event": "test"}'
    assert namespace["verify"](SECRET, body, notifications.signature(SECRET, body))
    assert not namespace["verify"](SECRET, body + b"x", notifications.signature(SECRET, body))
    assert not namespace["verify"](SECRET, body, notifications.signature(SECRET, body, int(time.time()) - 600))
