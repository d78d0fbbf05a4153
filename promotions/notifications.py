"""Notifications: a project's outgoing webhooks, the events they get, and their delivery.

Whoever has news sends `environments.signals.event_happened` (project, event,
data) inside its write's transaction: the engine when a promotion becomes
healthy, fails or rolls back (`promotion_event()`), the approval and freeze
services for theirs. `notify()` below only records a `WebhookDelivery` per
webhook that wants the event (the body built once, exactly what is sent)
and enqueues its task on commit. It never touches the network and never
raises into the sender: a receiver that is down, slow or hostile can never
hold up or fail a promotion.

Delivery is a django-q2 task per attempt (`deliver`): claim the attempt by
a conditional update, POST with no transaction open (connect 3 s, each read
5 s, no redirects, the outbound policy on the URL and, after DNS, on the
connection), then record. Network errors, 408, 429 and 5xx are tried again
later (6 attempts over about 10 minutes, a `Retry-After` honoured up to 10
minutes); any other answer is final. Bulkheads (promotions.guard): at most
SLOTS deliveries in flight installation-wide, and a circuit breaker per
receiver host; what they hold back waits without using up an attempt. A
schedule (`sweep`, every minute) hands out again what a lost task left
pending.

Formats: `slack` (a Slack-compatible incoming-webhook body: `text` and
`blocks`) and `hoist` (the event as JSON). Either is signed when the
webhook has a secret (the Hoist format requires one):

    X-Hoist-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>

The writes (create, update, delete, send a test) are the services at the
end: maintainers only, audited, called by the pages, the API and the admin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Subquery
from django.dispatch import receiver
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_q.models import Schedule
from django_q.tasks import async_task, schedule

from environments import outbound, rules, signals
from environments.fields import mask
from environments.models import Environment, Resource
from environments.services import Errors
from projects import audit
from projects.models import Project, Role
from projects.permissions import require_role

from . import guard, metrics, registry
from .models import ProjectWebhook, Promotion, WebhookDelivery

log = logging.getLogger(__name__)

EVENTS = signals.EVENTS
TEST = "test"
# What a webhook may subscribe to ("test" is sent to one webhook, on request).
SUBSCRIBABLE = tuple(event for event in EVENTS if event != TEST)

MAX_ATTEMPTS = 6
BACKOFF_S = (10, 30, 60, 120, 300)  # after attempts 1…5: about 9 minutes in all
RETRY_AFTER_CAP_S = 600  # a receiver's Retry-After is honoured up to this
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 5.0
DEADLINE_S = 10.0  # for reading the answer, whatever the receiver trickles
LOST_AFTER_S = 120  # a pending delivery this far past due lost its task: the sweep sends it
GIVE_UP_AFTER_S = 3600  # a delivery held back this long by a receiver's breaker is given up
SLOTS, SLOTS_KEY = 2, "notify"  # deliveries in flight at once, installation-wide (keep it below the workers)
KEEP_DELIVERIES = 200  # the log keeps this many per webhook, newest first
MAX_WEBHOOKS = 20  # per project
MAX_URL = 2000
SECRET_MIN, SECRET_MAX = 16, 256
SIGNATURE_HEADER = "X-Hoist-Signature"
USER_AGENT = "Hoist-Notifications/1"

EMOJI = {
    "promotion.healthy": ":white_check_mark:", "promotion.failed": ":x:", "promotion.rolled_back": ":rewind:",
    "approval.requested": ":raising_hand:", "approval.approved": ":+1:", "approval.rejected": ":no_entry_sign:",
    "freeze.started": ":snowflake:", "freeze.ended": ":sunny:", TEST: ":wave:",
}


# --- the URL a webhook posts to -----------------------------------------------------------------


def check_url(url: Any, field: str = "url") -> str:
    """An http(s) URL whose host the outbound policy allows (the same policy as registries);
    checked again, after DNS, on every connection. Raises ValidationError naming `field`."""
    if not isinstance(url, str) or not url.strip():
        raise rules.error(field, "Give the URL Hoist should send notifications to (https://…).")
    url = url.strip()
    if len(url) > MAX_URL:
        raise rules.error(field, f"The URL is too long (at most {MAX_URL} characters).")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise rules.error(field, "A URL has no spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise rules.error(field, "Not a valid URL: check the host and the port.") from None  # never quoted: it may be a credential
    if parts.scheme.lower() not in ("http", "https"):
        raise rules.error(field, "Hoist sends notifications to https:// (or http://) URLs only.")
    name = (parts.hostname or "").lower()
    if not name:
        raise rules.error(field, "The URL needs a host name.")
    if parts.username is not None or parts.password is not None:
        raise rules.error(field, "Put no user name or password in the URL: the secret authenticates Hoist's notifications.")
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    host = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
    try:
        rules.outbound_policy().check_host(host)
    except outbound.OutboundRefused as exc:
        why = str(exc).partition(outbound.REFUSED)[2].strip()
        raise rules.error(field, f"Hoist may not send to {name}: it is {outbound.REFUSED}{' ' + why if why else ''}.") from None
    return url


def destination(url: str) -> str:
    """What pages, the API and the audit trail show of a webhook's URL: scheme and host. The rest
    often is the credential (a Slack webhook's path), so it is never shown back."""
    try:
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:
        return "(not a valid URL)"
    return base + ("/…" if parts.path.strip("/") or parts.query else "/")


# --- events: recorded with the write that made them, sent after it ---------------------------------


@receiver(signals.event_happened, dispatch_uid="promotions.notify")
def notify(*, project: Project, event: str, data: dict, **_) -> None:
    """One delivery per active webhook of `project` that wants `event`, sent on commit.

    Runs inside the sender's transaction (a promotion's record, an approval):
    it writes in a savepoint and never raises, so a failure here costs the
    notification, never the sender's write.
    """
    try:
        if event not in EVENTS:
            log.warning("unknown event %r not sent (known: %s)", event, ", ".join(EVENTS))
            return
        hooks = [hook for hook in ProjectWebhook.objects.filter(project_id=project.pk, active=True).defer("url", "secret")
                 if event == TEST or hook.wants(event)]
        if not hooks:
            return
        at = timezone.now()
        with transaction.atomic():
            for hook in hooks:
                hook.project = project
                _record(hook, event, data, at)
    except Exception:
        log.exception("notifications of %s in project %s were not recorded", event, getattr(project, "slug", project))


def promotion_event(resource: Resource, event: str, digest: str, *, promotion: Promotion | None = None,
                    from_digest: str = "", error: str = "") -> None:
    """The engine's news: `promotion.healthy`, `promotion.failed` or `promotion.rolled_back` of
    `resource` on `digest` (inside the engine's transaction). Never raises."""
    try:
        if promotion is None:
            promotion = (Promotion.objects.filter(resource_id=resource.pk, to_digest=digest)
                         .select_related("actor").order_by("-queued_at", "-id").first())
        environment = resource.environment if Resource.environment.is_cached(resource) else None
        if environment is None or not Environment.project.is_cached(environment):
            environment = Environment.objects.select_related("project").get(pk=resource.environment_id)
        data = {
            "environment": environment.slug, "resource": resource.name, "digest": digest,
            "from_digest": from_digest or (promotion.from_digest if promotion else ""),
            "actor": promotion.who if promotion else "Hoist",
            "reason": promotion.reason if promotion else "",
            "promotion_id": promotion.pk if promotion else None,
        }
        if error:
            data["error"] = error[:1000]
        signals.event_happened.send(sender=Promotion, project=environment.project, event=event, data=data)
    except Exception:
        log.exception("could not announce %s of resource %s", event, resource.pk)


def _record(hook: ProjectWebhook, event: str, data: dict, at: datetime) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.create(
        webhook=hook, event=event, body=build_body(hook, event, data, at), next_attempt_at=timezone.now())
    # The log stays bounded: everything older than the newest KEEP_DELIVERIES goes (one statement).
    cutoff = WebhookDelivery.objects.filter(webhook=hook).order_by("-id").values("id")[KEEP_DELIVERIES:KEEP_DELIVERIES + 1]
    WebhookDelivery.objects.filter(webhook=hook, id__lte=Subquery(cutoff)).delete()
    transaction.on_commit(lambda: _enqueue(delivery.pk, 1), robust=True)
    return delivery


def _enqueue(delivery_id: int, attempt: int) -> None:
    async_task("promotions.notifications.deliver", delivery_id, attempt, group="notify",
               task_name=f"notify-{delivery_id}-{attempt}")


# --- bodies --------------------------------------------------------------------------------------


def _short(digest: Any) -> str:
    digest = str(digest or "")
    return digest[:19] + "…" if len(digest) > 19 else digest


def _when(value: Any) -> str:
    """An ISO time as people read it in a message ("2026-11-30 06:00 UTC")."""
    moment = parse_datetime(str(value or ""))
    if moment is None:
        return str(value or "")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt_timezone.utc)
    return f"{moment.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M} UTC"


def describe(event: str, project: str, data: dict) -> str:
    """The event as one sentence ("shop/prod web is healthy on sha256:abcd…")."""
    environment, resource = data.get("environment"), data.get("resource")
    where = f"{project}/{environment}" if environment else project
    what = f"{where} {resource}" if resource else where
    digest = _short(data.get("digest")) or "the change"
    actor = str(data.get("actor") or "Hoist")
    reason = str(data.get("reason") or "").strip()
    error = str(data.get("error") or "").strip()
    if event == "promotion.healthy":
        text = f"{what} is healthy on {digest}"
    elif event == "promotion.failed":
        text = f"{what} failed to roll out {digest}" + (f": {error}" if error else "")
    elif event == "promotion.rolled_back":
        failed = _short(data.get("from_digest"))
        text = f"{what} is rolling back to {digest}" + (f" after {failed} failed" if failed else "")
    elif event == "approval.requested":
        text = f"{what}: {actor} asks for approval to promote {digest}" + (f" ({reason})" if reason else "")
    elif event == "approval.approved":
        text = f"{what}: {actor} approved {digest}"
        if data.get("required"):
            text += f" ({data.get('approvals', '?')} of {data['required']} approvals)"
    elif event == "approval.rejected":
        text = f"{what}: {actor} rejected {digest}" + (f": {reason}" if reason else "")
    elif event == "freeze.started":
        windows = data.get("windows") if isinstance(data.get("windows"), list) else []
        text = (f"{where} is frozen" + (f" until {_when(data['until'])}" if data.get("until") else "")
                + (f" ({', '.join(str(w) for w in windows)})" if windows else "") + (f": {reason}" if reason else ""))
    elif event == "freeze.ended":
        text = f"{where} is no longer frozen"
    elif event == TEST:
        text = f"Test notification from Hoist for project {project}" + (f", sent by {actor}" if data.get("actor") else "")
    else:
        text = f"{what}: {event}"
    return text[:2000]


def _page(project: str, event: str, data: dict) -> str:
    """The path of the page the event is about."""
    try:
        if event == TEST:
            return reverse("project_notifications", args=[project])
        if data.get("environment") and data.get("resource"):
            return reverse("resource_detail", args=[project, data["environment"], data["resource"]])
        if data.get("environment"):
            return reverse("environment_detail", args=[project, data["environment"]])
        return reverse("project_detail", args=[project])
    except NoReverseMatch:
        return reverse("project_detail", args=[project])


def payload(project: str, event: str, data: dict, at: datetime) -> dict:
    """The Hoist format: the sender's data, plus event, project, time, a sentence and a link."""
    extra = {key: value for key, value in data.items() if key not in ("event", "project", "at", "text", "url")}
    path = data["url"] if isinstance(data.get("url"), str) and data["url"].startswith("/") else _page(project, event, data)
    return {
        "event": event, "project": project,
        "at": at.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z"),
        "text": describe(event, project, data), "url": settings.HOIST_PUBLIC_URL + path, **extra,
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(event_payload: dict) -> dict:
    """A Slack-compatible incoming-webhook body (Slack, Mattermost, Rocket.Chat, Teams' Slack
    connector): `text` for notifications and clients without blocks, the same in `blocks`."""
    event = event_payload["event"]
    text = f"{EMOJI.get(event, ':bell:')} {_slack_escape(event_payload['text'])}"
    context = [f"`{event}`"]
    if event_payload.get("actor"):
        context.append(f"by {_slack_escape(str(event_payload['actor']))}")
    if event_payload["url"].startswith(("http://", "https://")):
        context.append(f"<{event_payload['url']}|Open in Hoist>")
    return {"text": text, "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]},
    ]}


def build_body(hook: ProjectWebhook, event: str, data: dict, at: datetime) -> str:
    event_payload = payload(hook.project.slug, event, data, at)
    if hook.format == ProjectWebhook.Format.SLACK:
        return json.dumps(slack_body(event_payload), ensure_ascii=False, default=str)
    return json.dumps(event_payload, ensure_ascii=False, default=str)


def signature(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: a receiver recomputes it with the
    shared secret, compares in constant time, and refuses old timestamps (replays)."""
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


# --- delivery ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """What one attempt came to."""

    delivered: bool
    retry: bool = False
    code: int | None = None
    error: str = ""
    retry_after: float | None = None
    deferred_until: datetime | None = None  # not sent at all (no free slot, the host's breaker open)


class _Undelivered(Exception):
    def __init__(self, sent: Sent):
        super().__init__(sent.error)
        self.sent = sent


def _counts_against_host(exc: BaseException) -> bool | None:
    """For the receiver host's breaker: no answer or a 5xx counts, any other answer proves it
    alive, a refusal by the policy (nothing sent) says nothing."""
    if not isinstance(exc, _Undelivered):
        return None
    sent = exc.sent
    if sent.code is None:
        return True if sent.retry else None
    return sent.code >= 500


def _send(hook: ProjectWebhook, delivery: WebhookDelivery) -> Sent:
    """One POST inside the bulkheads (promotions.guard): one of SLOTS deliveries in flight
    installation-wide, so receivers that hang hold that many workers at most and promotions keep
    the rest; and the receiver host's circuit breaker, so a dead host is not called again and
    again (its deliveries wait for the breaker instead)."""
    host = (urlsplit(hook.url).hostname or "?").lower()
    lease_s = CONNECT_TIMEOUT_S + DEADLINE_S + 5
    try:
        slot = guard.take_slot(SLOTS_KEY, SLOTS, lease_s=lease_s, label="notifications")
    except guard.Closed as exc:
        return Sent(False, error=exc.message, deferred_until=exc.retry_at)
    try:
        with guard.passage(f"notify:{host}", label=f"webhook host {host}", lease_s=lease_s,
                           transient=_counts_against_host):
            sent = _post(hook, delivery)
            if not sent.delivered:
                raise _Undelivered(sent)
        return sent
    except _Undelivered as exc:
        return exc.sent
    except guard.Closed as exc:
        return Sent(False, error=exc.message, deferred_until=exc.retry_at)
    finally:
        guard.give_back(SLOTS_KEY, *slot)


def _post(hook: ProjectWebhook, delivery: WebhookDelivery) -> Sent:
    body = delivery.body.encode()
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
               "X-Hoist-Event": delivery.event, "X-Hoist-Delivery": str(delivery.pk)}
    if hook.secret:
        headers[SIGNATURE_HEADER] = signature(hook.secret, body)
    try:
        answer = registry.post_once(hook.url, body, headers, policy=rules.outbound_policy(),
                                    connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S, deadline=DEADLINE_S)
    except registry.RegistryError as exc:
        return Sent(False, retry=exc.retryable, error=str(exc))
    status = answer.status
    if 200 <= status < 300:
        return Sent(True, code=status)
    said = " ".join(answer.text.split())[:300]
    if 300 <= status < 400:
        error = f"HTTP {status}: redirected to {answer.headers.get('location', '?')[:200]}; Hoist follows no redirects"
    else:
        error = f"HTTP {status}" + (f": {said}" if said else "")
    retry = status in (408, 429) or status >= 500
    return Sent(False, retry=retry, code=status, error=error,
                retry_after=registry.retry_after_seconds(answer.headers.get("retry-after", "")) if retry else None)


def deliver(delivery_id: int, attempt: int = 1) -> str:
    """Attempt `attempt` of one delivery (a django-q2 task; tests call it directly). Returns its outcome."""
    now = timezone.now()
    # Claim this attempt: a second task for it (a retry also handed out by the sweep) finds nothing.
    lease = now + timedelta(seconds=CONNECT_TIMEOUT_S + DEADLINE_S + 30)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, attempts=attempt - 1, status__in=WebhookDelivery.PENDING,
    ).update(attempts=attempt, next_attempt_at=lease)
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first() if claimed else None
    if delivery is None:
        return "skipped"  # delivered, given up, deleted, or another task has this attempt
    hook = delivery.webhook
    if not hook.active and delivery.event != TEST:
        sent = Sent(False, error="the webhook was paused before this was sent")
    else:
        sent = _send(hook, delivery)
    if sent.deferred_until is not None:
        return _defer(delivery, attempt, sent)
    return _record_attempt(delivery, attempt, sent)


def _defer(delivery: WebhookDelivery, attempt: int, sent: Sent) -> str:
    """Nothing was sent: the same attempt again when the bulkhead says, not counted as one;
    given up once the delivery is older than GIVE_UP_AFTER_S."""
    now = timezone.now()
    if now - delivery.created_at > timedelta(seconds=GIVE_UP_AFTER_S):
        return _record_attempt(delivery, attempt, Sent(False, error=f"not sent: {sent.error}"))
    retry_at = max(sent.deferred_until, now + timedelta(seconds=1))
    if WebhookDelivery.objects.filter(pk=delivery.pk, attempts=attempt).update(attempts=attempt - 1, next_attempt_at=retry_at):
        transaction.on_commit(lambda: schedule(
            "promotions.notifications.deliver", delivery.pk, attempt, schedule_type=Schedule.ONCE, next_run=retry_at,
            name=f"notify-{delivery.pk}-{attempt}-{now:%H%M%S%f}"), robust=True)
    return "deferred"


def _record_attempt(delivery: WebhookDelivery, attempt: int, sent: Sent) -> str:
    now = timezone.now()
    fields: dict[str, Any] = {"response_code": sent.code}
    retry_at = None
    if sent.delivered:
        outcome = WebhookDelivery.Status.DELIVERED
        fields.update(delivered_at=now, next_attempt_at=None)
    elif sent.retry and attempt < MAX_ATTEMPTS:
        outcome = WebhookDelivery.Status.RETRYING
        pause = BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1]
        if sent.retry_after is not None:
            pause = max(pause, min(sent.retry_after, RETRY_AFTER_CAP_S))
        retry_at = now + timedelta(seconds=pause)
        fields.update(last_error=sent.error[:2000], next_attempt_at=retry_at)
    else:
        outcome = WebhookDelivery.Status.FAILED
        error = sent.error + (f" (gave up after {attempt} attempts)" if sent.retry else "")
        fields.update(last_error=error[:2000], next_attempt_at=None)
    fields["status"] = outcome
    recorded = WebhookDelivery.objects.filter(pk=delivery.pk, attempts=attempt).update(**fields)
    metrics.notification_attempt(outcome.value)
    if recorded and retry_at is not None:
        arguments = (delivery.pk, attempt + 1)
        transaction.on_commit(lambda: schedule(
            "promotions.notifications.deliver", *arguments, schedule_type=Schedule.ONCE, next_run=retry_at,
            name=f"notify-{delivery.pk}-{attempt + 1}"), robust=True)  # a ONCE schedule is deleted once it has run
    if outcome != WebhookDelivery.Status.DELIVERED:
        log.info("notification %s (%s) attempt %s: %s", delivery.pk, delivery.event, attempt, fields.get("last_error"))
    return outcome.value  # plain text: django-q2 stores it as the task's result


def sweep() -> int:
    """The schedule's safety net (every minute): a pending delivery whose task was lost (a worker
    killed mid-send, a broker that dropped it) is handed out again. Returns how many."""
    now = timezone.now()
    overdue = list(WebhookDelivery.objects.filter(
        status__in=WebhookDelivery.PENDING, next_attempt_at__lt=now - timedelta(seconds=LOST_AFTER_S),
    ).order_by("next_attempt_at").values_list("pk", "attempts")[:200])
    handed = 0
    for pk, attempts in overdue:
        mine = WebhookDelivery.objects.filter(pk=pk, attempts=attempts, status__in=WebhookDelivery.PENDING)
        if attempts >= MAX_ATTEMPTS:
            mine.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None,
                        last_error=f"the last of {attempts} attempts was lost (its worker stopped)")
        elif mine.update(next_attempt_at=now + timedelta(seconds=LOST_AFTER_S)):
            _enqueue(pk, attempts + 1)
            handed += 1
    return handed


# --- the writes: maintainers only, audited ------------------------------------------------------

WEBHOOK_FIELDS = ("name", "url", "format", "secret", "events", "active")
WHAT = "manage notifications"


def _summary(hook: ProjectWebhook) -> dict:
    return {"name": hook.name, "url": destination(hook.url), "format": hook.format, "events": list(hook.events),
            "active": hook.active, "secret": mask(hook.secret)}


def _check(hook: ProjectWebhook, *, url_changed: bool) -> None:
    """Every rule of a webhook, all errors at once, each naming its field; normalises `hook`."""
    errors = Errors()
    if not isinstance(hook.name, str) or not hook.name.strip():
        errors.add("name", "Give the webhook a name (e.g. #deploys).")
    elif len(hook.name.strip()) > 100 or any(ord(c) < 32 for c in hook.name):
        errors.add("name", "A name is at most 100 characters, without control characters.")
    else:
        hook.name = hook.name.strip()
        if ProjectWebhook.objects.filter(project_id=hook.project_id, name=hook.name).exclude(pk=hook.pk).exists():
            errors.add("name", f"Project {hook.project.slug} already has a webhook named {hook.name!r}.")
    if url_changed:
        hook.url = errors.run(check_url, hook.url) or hook.url
    if hook.format not in ProjectWebhook.Format.values:
        errors.add("format", f"Format must be one of: {', '.join(ProjectWebhook.Format.values)}.")
    if not isinstance(hook.secret, str):
        errors.add("secret", "The secret must be a string.")
    elif hook.secret and not SECRET_MIN <= len(hook.secret) <= SECRET_MAX:
        errors.add("secret", f"A secret is {SECRET_MIN} to {SECRET_MAX} characters (e.g. the output of openssl rand -hex 32).")
    elif not hook.secret and hook.format == ProjectWebhook.Format.HOIST:
        errors.add("secret", f"The Hoist format signs every body: give a secret of at least {SECRET_MIN} characters "
                             "(e.g. the output of openssl rand -hex 32).")
    if not isinstance(hook.events, (list, tuple)) or not all(isinstance(e, str) for e in hook.events):
        errors.add("events", "Events must be a list of event names.")
    else:
        unknown = sorted(set(hook.events) - set(SUBSCRIBABLE))
        if unknown:
            errors.add("events", f"Unknown events: {', '.join(unknown)} (known: {', '.join(SUBSCRIBABLE)}).")
        hook.events = [event for event in SUBSCRIBABLE if event in hook.events]  # one order, no repeats
    if not isinstance(hook.active, bool):
        errors.add("active", "Active must be true or false.")
    errors.raise_if_any()


def _save(hook: ProjectWebhook) -> None:
    try:
        with transaction.atomic():
            hook.save()
    except IntegrityError:  # two saves raced past the name check
        raise rules.error("name", f"Project {hook.project.slug} already has a webhook named {hook.name!r}.") from None


def webhook_create(*, project: Project, name: str, url: str, format: str = ProjectWebhook.Format.HOIST,
                   secret: str = "", events: list[str] | tuple = (), active: bool = True, actor=None,
                   validate_only: bool = False) -> ProjectWebhook:
    """Add a webhook to `project` (maintainers)."""
    with audit.attempt("webhook.create", actor=actor, project=project) as entry:
        require_role(actor, project, Role.MAINTAINER, WHAT)
        hook = ProjectWebhook(project=project, name=name, url=url, format=format, secret=secret,
                              events=list(events) if isinstance(events, (list, tuple)) else events, active=active)
        _check(hook, url_changed=True)
        if ProjectWebhook.objects.filter(project=project).count() >= MAX_WEBHOOKS:
            raise ValidationError(f"Project {project.slug} has {MAX_WEBHOOKS} webhooks already; delete one first.")
        if validate_only:
            entry.skip()
            return hook
        _save(hook)
        entry.describe(target=hook, after=_summary(hook))
    return hook


def webhook_update(*, webhook: ProjectWebhook, actor=None, validate_only: bool = False, **changes: Any) -> ProjectWebhook:
    """Change a webhook (maintainers): only the keys given change; `secret=""` clears it."""
    with audit.attempt("webhook.update", actor=actor, target=webhook) as entry:
        require_role(actor, webhook.project, Role.MAINTAINER, WHAT)
        unknown = sorted(set(changes) - set(WEBHOOK_FIELDS))
        if unknown:
            raise ValidationError({field: ["Unknown field."] for field in unknown})
        stored = ProjectWebhook.objects.select_for_update().select_related("project").get(pk=webhook.pk)
        before = _summary(stored)
        url_changed = "url" in changes and changes["url"] != stored.url
        for field, value in changes.items():
            setattr(stored, field, value)
        _check(stored, url_changed=url_changed)
        if validate_only:
            entry.skip()
            return stored
        _save(stored)
        entry.describe(target=stored, before=before, after=_summary(stored))
    return stored


def webhook_delete(*, webhook: ProjectWebhook, actor=None) -> None:
    """Delete a webhook and its delivery log (maintainers); what is queued for it is not sent."""
    with audit.attempt("webhook.delete", actor=actor, target=webhook) as entry:
        require_role(actor, webhook.project, Role.MAINTAINER, WHAT)
        entry.describe(before=_summary(webhook))
        webhook.delete()


def webhook_test(*, webhook: ProjectWebhook, actor=None) -> WebhookDelivery:
    """Send a `test` event to this one webhook (maintainers), paused or not; returns the queued delivery."""
    with audit.attempt("webhook.test", actor=actor, target=webhook) as entry:
        require_role(actor, webhook.project, Role.MAINTAINER, WHAT)
        who = actor.get_username() if getattr(actor, "is_authenticated", False) else "Hoist"
        delivery = _record(webhook, TEST, {"webhook": webhook.name, "actor": who}, timezone.now())
        entry.describe(changes={"delivery": delivery.pk})
    return delivery
