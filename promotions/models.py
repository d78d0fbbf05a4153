from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Q, Value, When

from environments.fields import EncryptedTextField
from environments.models import Artifact, ChangeReason, ChangeRequest, Resource

# What caused a promotion, as the history, its CSV and the API say it: the reason the change was
# made with, or `approval` for a change that went ahead once its approvals were in.
Cause = models.TextChoices("Cause", [(r.name, (r.value, r.label)) for r in ChangeReason]
                           + [("APPROVAL", ("approval", "Approval"))])

# A change request in one of these states was approved: its promotion's cause is `approval`.
APPROVED_REQUEST = (ChangeRequest.Status.APPROVED, ChangeRequest.Status.APPLIED)


@dataclass(frozen=True)
class Duration:
    """How long a promotion took, timed from what started it (`start`).

    `publish`: the image's first publish in the project (publish, track latest: Hoist moved
    by itself). `requested`: when a person asked (pin edit, promote, a resource created, a
    switch to track latest). `approved`: when the last approval came in (a change that
    waited for approvals). `detected`: when Hoist found the drift or the failed rollout it
    rolled back from (it applies at once, so this is mostly the time to healthy).
    """

    start: str
    applied_s: float | None
    healthy_s: float | None

    STARTS = ("publish", "requested", "approved", "detected")

    @property
    def applied_label(self) -> str:
        return f"{self.start} → applied"

    @property
    def healthy_label(self) -> str:
        return f"{self.start} → healthy"


def _between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


class PromotionQuerySet(models.QuerySet):
    def with_cause(self) -> PromotionQuerySet:
        """Each promotion's cause (`annotated_cause`) and, for an approval, when it was approved
        (`annotated_approved_at`): the one rule the history page, its filter, the CSV and the API
        share (`Promotion.cause` reads it)."""
        approved = Q(change_request__status__in=APPROVED_REQUEST)
        return self.annotate(
            annotated_cause=Case(When(approved, then=Value(Cause.APPROVAL.value)), default=F("reason"),
                                 output_field=models.CharField()),
            annotated_approved_at=Case(When(approved, then=F("change_request__decided_at")), default=None,
                                       output_field=models.DateTimeField()),
        )


class Promotion(models.Model):
    """One change of what a resource runs: the record pages and the API read.

    queued → applying → rolling out → healthy | failed, or superseded when a
    newer decision replaces it before it is healthy. "Applied" alone means the
    API server accepted the spec; "healthy" means the new digest runs:
    observedGeneration caught up, every replica updated and available,
    `Available=True`.
    """

    Reason = ChangeReason
    Cause = Cause

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        APPLYING = "applying", "Applying"
        ROLLING_OUT = "rolling_out", "Rolling out"
        HEALTHY = "healthy", "Healthy"
        FAILED = "failed", "Failed"
        SUPERSEDED = "superseded", "Superseded"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        REJECTED = "rejected", "Rejected"

    # Still waiting for an outcome: a newer decision supersedes these.
    OPEN = (Status.QUEUED, Status.APPLYING, Status.ROLLING_OUT)

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="promotions")
    from_digest = models.CharField(max_length=71, blank=True)
    to_digest = models.CharField(max_length=71)
    # The artifact being applied (own for image sources, the upstream's for promotions).
    artifact = models.ForeignKey(Artifact, null=True, blank=True, on_delete=models.SET_NULL, related_name="promotions")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    # The change request this promotion waits on (or waited on) for approvals.
    change_request = models.ForeignKey("environments.ChangeRequest", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="promotions")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(max_length=200, blank=True, help_text="Who or what asked, when not a user.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    healthy_at = models.DateTimeField(null=True, blank=True)
    # Seconds from the image's first publish in the project to this apply, and to healthy.
    latency_s = models.FloatField(null=True, blank=True)
    healthy_latency_s = models.FloatField(null=True, blank=True)

    objects = PromotionQuerySet.as_manager()

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [models.Index(fields=["resource", "-queued_at"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.resource}: {self.from_digest[:19] or '∅'} → {self.to_digest[:19]} ({self.status})"

    @property
    def who(self) -> str:
        if self.actor_id:
            return str(self.actor)
        return self.actor_label or "Hoist"

    @property
    def cause(self) -> str:
        """What caused it (a `Cause` value): `with_cause()` decides; a promotion loaded without
        it asks its change request (a query), by the same rule."""
        if "annotated_cause" in self.__dict__:
            return self.annotated_cause
        approved = self.change_request_id is not None and self.change_request.status in APPROVED_REQUEST
        return Cause.APPROVAL.value if approved else self.reason

    @property
    def cause_label(self) -> str:
        return Cause(self.cause).label

    @property
    def approved_at(self) -> datetime | None:
        if "annotated_approved_at" in self.__dict__:
            return self.annotated_approved_at
        return self.change_request.decided_at if self.cause == Cause.APPROVAL else None

    @property
    def duration(self) -> Duration:
        """The time that matters for its cause (see `Duration`): an automatic promotion from the
        publish (the engine's `latency_s`, `healthy_latency_s`), anything else from the moment
        that started it, never from an older publish nor counting a person's think time."""
        cause = self.cause
        if cause == Cause.PUBLISH or (cause == Cause.TRACK_LATEST and not self.actor_id):
            return Duration("publish", self.latency_s, self.healthy_latency_s)
        if cause == Cause.APPROVAL and self.approved_at is not None:
            start, at = "approved", self.approved_at
        elif cause in (Cause.DRIFT, Cause.ROLLBACK):
            start, at = "detected", self.queued_at
        else:
            start, at = "requested", self.queued_at
        return Duration(start, _between(at, self.applied_at), _between(at, self.healthy_at))


class ObserverLease(models.Model):
    """Which `manage.py observe` process watches the clusters (one per installation).

    The holder renews it every few seconds; another process takes over once
    it has expired, so two observers can run (one standing by) without both
    watching.
    """

    name = models.CharField(max_length=50, unique=True)
    holder = models.CharField(max_length=200)
    expires_at = models.DateTimeField()
    # The clusters whose every watch is in sync, as of the last renewal: the drift sweep
    # leaves their resources to the observer while the lease holds.
    clusters = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.holder} until {self.expires_at:%H:%M:%S}"


class WebhookEvent(models.Model):
    """A registry notification already handled (by the registry's event id): a redelivery or a
    replay of the same event publishes nothing. Kept for a week."""

    registry = models.CharField(max_length=255)
    event_id = models.CharField(max_length=255)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["registry", "event_id"], name="webhook_event_once")]


class TagHead(models.Model):
    """The newest push of a registry tag Hoist has seen, by the registry's own clock: an event
    older than it (a late or replayed push) can't move the tag back. A tag watch moves `digest`
    (and `seen_at`) but not `pushed_at`: it can't know when the push happened."""

    registry = models.CharField(max_length=255)
    repository = models.CharField(max_length=255)
    tag = models.CharField(max_length=128)
    digest = models.CharField(max_length=71)
    pushed_at = models.DateTimeField()
    # When Hoist last learnt the tag moved (its own clock, whoever told it): a tag watch whose
    # HEAD started before this must not publish what it saw (the tag has moved on since).
    seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["registry", "repository", "tag"], name="tag_head_unique")]


class Gate(models.Model):
    """A circuit breaker for one outbound host (`registry:<host>`) or cluster (`cluster:<id>:<endpoint hash>`),
    shared by every worker and web process (see promotions.guard).

    Closed: calls go through. After `failures` reaches the threshold it opens until
    `open_until`; then one call at a time (`probe_until`: a probe's lease) tries it,
    and a success closes it again while a failure doubles `cooldown_s`.
    """

    key = models.CharField(max_length=300, unique=True)
    failures = models.PositiveIntegerField(default=0)
    open_until = models.DateTimeField(null=True, blank=True)
    cooldown_s = models.FloatField(default=0)
    probe_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.key}: {'open' if self.open_until else 'closed'} ({self.failures} failures)"


class GateSlot(models.Model):
    """One of the N concurrent calls allowed to a host, held under a lease: a process killed
    mid-call gives its slot back when `held_until` passes."""

    key = models.CharField(max_length=300)
    slot = models.PositiveSmallIntegerField()
    token = models.CharField(max_length=32, blank=True)
    held_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "slot"], name="gate_slot_unique")]


class ProjectWebhook(models.Model):
    """Where a project's notifications go (promotions.notifications): a URL that gets a POST per event.

    `url` is stored encrypted and shown only as scheme and host: a Slack webhook's URL is
    itself the credential. `secret` (encrypted, shown as set/not set) signs every body
    (`X-Hoist-Signature`); the Hoist format requires one. `events` empty: every event.
    """

    class Format(models.TextChoices):
        SLACK = "slack", "Slack-compatible"
        HOIST = "hoist", "Hoist JSON, signed"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=100)
    url = EncryptedTextField()
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.HOIST)
    secret = EncryptedTextField(blank=True)
    events = models.JSONField(default=list, blank=True, help_text="Event names; empty: every event.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="project_webhook_name_unique")]

    def __str__(self) -> str:
        return self.name

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to one webhook: the delivery log pages and the API read.

    queued → delivered | retrying → … → delivered | failed. `body` is exactly the bytes
    POSTed (every attempt sends the same). The log keeps the newest few hundred per webhook.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RETRYING = "retrying", "Retrying"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    PENDING = (Status.QUEUED, Status.RETRYING)

    webhook = models.ForeignKey(ProjectWebhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # When the next attempt is due (or, while one runs, when it counts as lost): the sweep
    # hands out again what stays pending past it.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["webhook", "-id"], name="webhook_delivery_log"),
                   models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]

    def __str__(self) -> str:
        return f"{self.event} #{self.pk} ({self.status})"
