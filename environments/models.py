import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator, URLValidator
from django.db import models
from django.db.models import Q

from projects.models import SLUG_VALIDATOR, Project

from .fields import EncryptedTextField, mask
from .references import DIGEST_PATTERN

def validate_kubeconfig(value: str) -> None:
    from .rules import check_kubeconfig

    try:
        check_kubeconfig(value)
    except ValidationError as exc:
        raise ValidationError(exc.message_dict["kubeconfig"]) from None


DIGEST_VALIDATOR = RegexValidator(
    DIGEST_PATTERN, "A digest is 'sha256:' followed by exactly 64 lower-case hex characters."
)


class Cluster(models.Model):
    """A Kubernetes API endpoint and the registry its nodes pull from."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=63, unique=True, validators=[SLUG_VALIDATOR])
    api_url = models.CharField(
        "API server URL",
        max_length=500,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="e.g. https://k8s.example.com:6443",
    )
    ca_cert = models.TextField(
        "CA certificate", blank=True, help_text="PEM bundle that signs the API server's certificate."
    )
    token = EncryptedTextField(blank=True, help_text="Bearer token of a service account. Stored encrypted.")
    kubeconfig = EncryptedTextField(
        blank=True, validators=[validate_kubeconfig],
        help_text="A kubeconfig instead of URL/CA/token (its current context is used; inline credentials only). "
        "Stored encrypted.",
    )
    registry = models.CharField(
        max_length=300,
        blank=True,
        help_text="Registry host (and optional path prefix) this cluster's nodes pull from, e.g. registry.a.internal:5000.",
    )
    registry_username = models.CharField(max_length=200, blank=True)
    registry_password = EncryptedTextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def token_status(self) -> str:
        return mask(self.token)

    @property
    def kubeconfig_status(self) -> str:
        return mask(self.kubeconfig)


class Environment(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="environments")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=63, validators=[SLUG_VALIDATOR])
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="environments")
    namespace = models.CharField(max_length=63, validators=[SLUG_VALIDATOR])
    protected = models.BooleanField(default=False, help_text="Only maintainers change what runs here.")
    position = models.PositiveIntegerField(default=0, help_text="Column order in the pipeline (dev before prod).")
    # Governance: approvals of changes of what runs here, and when nothing may change by itself.
    required_approvals = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(10)],
        help_text="Maintainers other than the requester who must approve a person's change of what runs here "
        "(a pin edit, a one-click promote, a switch to track latest); 0: none.",
    )
    approve_automatic = models.BooleanField(
        default=False, help_text="Automatic track-latest changes need the same approvals.",
    )
    # As the engine last noticed: frozen until this moment (None: not frozen). Moves when a
    # freeze window starts or ends, which is when `freeze.started`/`freeze.ended` are sent.
    frozen_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Raw id columns, not the related models' own orderings: ordering by a
        # relation drags its Meta.ordering in as JOINs on every query.
        ordering = ["project_id", "position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "slug"], name="environment_unique_slug_per_project"),
            # Two environments writing the same namespace would overwrite each other's objects.
            models.UniqueConstraint(fields=["cluster", "namespace"], name="environment_unique_namespace_per_cluster"),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.slug}"


class Kind(models.TextChoices):
    DEPLOYMENT = "deployment", "Deployment"
    CRONJOB = "cronjob", "CronJob"


# Kinds whose image other resources can promote from, and which can be promoted.
PROMOTABLE_KINDS = {Kind.DEPLOYMENT}


class SourceType(models.TextChoices):
    IMAGE = "image", "Image"
    PROMOTE = "promote", "Promote from environment"


class Binding(models.TextChoices):
    TRACK_LATEST = "track_latest", "Track latest"
    PIN_DIGEST = "pin_digest", "Pin to digest"


class Phase(models.TextChoices):
    PENDING = "pending", "Pending"
    PROGRESSING = "progressing", "Rolling out"
    READY = "ready", "Healthy"
    WAITING = "waiting", "Waiting for upstream"
    FAILED = "failed", "Failed"


class Follow(models.TextChoices):
    """What a track-latest resource follows of its upstream."""

    HEALTHY = "healthy", "What the upstream runs healthy"
    PUBLISHED = "published", "What the upstream publishes"


class ChangeReason(models.TextChoices):
    """Why what a resource runs changes: the reason a service gives the engine, kept on the Promotion."""

    PUBLISH = "publish", "Publish"
    TRACK_LATEST = "track_latest", "Track latest"
    PIN_EDIT = "pin_edit", "Pin edited"
    PROMOTE = "promote", "Promoted"  # the one-click promote: pinned to what the upstream runs now
    ROLLBACK = "rollback", "Rollback"
    CREATE = "create", "Resource created"
    DRIFT = "drift", "Drift corrected"


class Resource(models.Model):
    """Something Hoist runs in an environment, with its own config and an image source."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="resources")
    name = models.CharField(max_length=63)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.DEPLOYMENT)

    # Own config: never copied from the upstream by a promotion.
    runtime = models.CharField(max_length=253, blank=True, help_text="RuntimeClass name, e.g. gvisor (optional).")
    ports = models.JSONField(default=list, blank=True)
    replicas = models.PositiveIntegerField(default=1, validators=[MaxValueValidator(1000)])
    ingress_host = models.CharField(max_length=253, blank=True)
    database_url = EncryptedTextField(blank=True, help_text="Given to the container as DATABASE_URL (secret).")
    schedule = models.CharField(max_length=100, blank=True, help_text="Cron schedule (cronjobs only).")

    # Source.
    source_type = models.CharField(max_length=10, choices=SourceType.choices, default=SourceType.IMAGE)
    image = models.CharField(
        max_length=500, blank=True, help_text="Image reference for source=image (a tag is resolved to a digest)."
    )
    promote_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="dependants"
    )
    binding = models.CharField(max_length=20, choices=Binding.choices, blank=True)
    pinned_digest = models.CharField(max_length=71, blank=True, validators=[DIGEST_VALIDATOR])

    # Rollout policy (own config too).
    follow = models.CharField(
        max_length=10, choices=Follow.choices, default=Follow.HEALTHY,
        help_text="Track latest: follow what the upstream runs healthy (default) or what it publishes.",
    )
    soak_seconds = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(7 * 24 * 3600)],
        help_text="Track latest: an upstream digest must have run healthy this long before it is taken.",
    )
    rollback_on_failure = models.BooleanField(
        default=False, help_text="A failed rollout re-applies the last healthy digest (never moves a pin).",
    )
    progress_deadline_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(1), MaxValueValidator(24 * 3600)],
        help_text="A rollout not progressing for this long has failed (the Deployment's progressDeadlineSeconds).",
    )

    # Publishing: sequence of this resource's own Artifacts (grows only).
    artifact_seq = models.PositiveBigIntegerField(default=0)
    # Own artifacts at or below this sequence belong to an earlier image reference
    # (the image was changed to a tag since): they no longer count as "latest".
    artifact_floor = models.PositiveBigIntegerField(default=0)

    # Status, written by reconcile.
    current_digest = models.CharField(max_length=71, blank=True)
    current_image = models.CharField(max_length=600, blank=True)
    # Sequence of the upstream artifact (or own artifact for image sources) now
    # running; a candidate is applied only if newer (forward-only).
    applied_seq = models.PositiveBigIntegerField(default=0)
    # Fingerprint of the applied config (all but the image): unchanged config skips re-applying.
    config_hash = models.CharField(max_length=64, blank=True)
    # Per kind, the generation or resourceVersion of the object as Hoist last wrote it
    # (promotions.applied): the observer tells Hoist's writes from anyone else's by it.
    applied_versions = models.JSONField(default=dict, blank=True)
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.PENDING)
    message = models.TextField(blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    # What the cluster runs, as observed: the last digest whose rollout was healthy, and
    # the progress of the current rollout (ready of total replicas).
    healthy_digest = models.CharField(max_length=71, blank=True)
    healthy_at = models.DateTimeField(null=True, blank=True)
    rollout_ready = models.PositiveIntegerField(default=0)
    rollout_total = models.PositiveIntegerField(default=0)
    # A digest whose rollout failed: not applied again by itself until something newer arrives.
    failed_digest = models.CharField(max_length=71, blank=True)

    # Engine bookkeeping (no lock is held across cluster or registry calls, so work is
    # claimed instead): desired state changed at `dirty_at` and no reconcile has
    # finished since; a reconcile holds a lease until `claimed_until`; `next_check_at`
    # is when the observer should look again (a soak ending, a lost task).
    dirty_at = models.DateTimeField(null=True, blank=True, db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # When the observer last handed this resource out (it doesn't again for a few seconds).
    nudged_at = models.DateTimeField(null=True, blank=True)
    # After a transient failure, not retried before this (the delay doubles with each failure);
    # a new change of desired state is still reconciled at once.
    backoff_until = models.DateTimeField(null=True, blank=True)
    failures_in_a_row = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment_id", "name"]
        indexes = [
            # The observer looks at what rolls out every tick; a few rows among thousands at rest.
            models.Index(fields=["phase"], condition=Q(phase="progressing"), name="resource_rolling_out"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="resource_unique_name_per_environment"),
            models.CheckConstraint(condition=~Q(promote_from=models.F("id")), name="resource_not_promoted_from_itself"),
            models.CheckConstraint(
                condition=(
                    Q(source_type="image", promote_from__isnull=True, binding="", pinned_digest="")
                    | Q(source_type="promote", promote_from__isnull=False, kind="deployment", binding="track_latest", pinned_digest="")
                    | Q(source_type="promote", promote_from__isnull=False, kind="deployment", binding="pin_digest", pinned_digest__regex=DIGEST_PATTERN)
                ),
                name="resource_source_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.environment}/{self.name}"

    @property
    def project(self) -> Project:
        return self.environment.project

    @property
    def is_promoted(self) -> bool:
        return self.source_type == SourceType.PROMOTE

    @property
    def produces_images(self) -> bool:
        return self.kind in PROMOTABLE_KINDS

    @property
    def rollout(self) -> dict:
        """Desired vs running as the API's `status.rollout` and the admin show it: state, ready/total, a
        summary. Decided by `environments.display`, as every page's status is."""
        from .display import rollout_summary

        return rollout_summary(self)

    @property
    def behind_running(self) -> bool:
        """What Hoist applied is not (yet) what runs healthy."""
        return bool(self.current_digest) and self.current_digest != self.healthy_digest


class EnvVar(models.Model):
    """One environment variable of a resource; secret values are write-only outside the cluster."""

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="env_vars")
    name = models.CharField(max_length=255)
    # Encrypted for every variable; `secret` decides whether pages and the API may show it.
    value = EncryptedTextField(blank=True)
    secret = models.BooleanField(default=False)

    class Meta:
        ordering = ["resource_id", "name"]
        constraints = [models.UniqueConstraint(fields=["resource", "name"], name="envvar_unique_name_per_resource")]

    def __str__(self) -> str:
        return self.name

    @property
    def display_value(self) -> str:
        return mask(self.value) if self.secret else self.value


class Artifact(models.Model):
    """An image a resource published. A resource's latest artifact is what track-latest follows.

    Image-source resources publish by API, webhook or tag resolution; promoted
    resources publish what they applied, so a chain dev → staging → prod
    follows what each hop actually runs.
    """

    class Origin(models.TextChoices):
        API = "api", "API"
        WEBHOOK = "webhook", "Registry webhook"
        ADMIN = "admin", "Admin"
        RESOLVE = "resolve", "Tag resolution"
        WATCH = "watch", "Tag watch"
        IMAGE = "image", "Digest in the resource's image reference"
        PROMOTION = "promotion", "Promotion"
        DEMO = "demo", "Demo data"

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="artifacts")
    sequence = models.PositiveBigIntegerField()
    repository = models.CharField(max_length=500, help_text="Registry host and path, without tag or digest.")
    digest = models.CharField(max_length=71, validators=[DIGEST_VALIDATOR])
    tag = models.CharField(max_length=128, blank=True)
    origin = models.CharField(max_length=20, choices=Origin.choices)
    upstream = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="For a promoted resource: the upstream artifact this one re-publishes.",
    )
    # When the image first entered the project (kept along a chain) for publish→applied latency.
    first_published_at = models.DateTimeField()
    published_at = models.DateTimeField(auto_now_add=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # When this digest first ran healthy in its resource's environment: what track-latest
    # dependants that follow "healthy" (and their soak time) go by.
    healthy_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["resource_id", "-sequence"]
        get_latest_by = "sequence"
        constraints = [
            models.UniqueConstraint(fields=["resource", "sequence"], name="artifact_unique_sequence_per_resource"),
            models.CheckConstraint(condition=Q(digest__regex=DIGEST_PATTERN), name="artifact_digest_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.resource} #{self.sequence} {self.digest[:19]}"

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


class RegistryHost(models.Model):
    """A registry host Hoist calls, recorded the first time it is seen: how often its tags are
    watched, how hard Hoist may call it, and what Hoist observed of it.

    An empty limit means the installation's default (the HOIST_* setting of the same name), so
    changing a setting moves every registry nobody tuned by hand.
    """

    host = models.CharField(max_length=255, unique=True, help_text="host[:port], as in image references.")
    watch_interval_s = models.PositiveIntegerField(
        "watch interval (s)", null=True, blank=True, validators=[MinValueValidator(5), MaxValueValidator(24 * 3600)],
        help_text="Seconds between two checks of each watched tag (default HOIST_TAG_WATCH_INTERVAL_S). "
        "A registry that sends webhooks can be given a long interval: the watch is then only a safety net.",
    )
    rate_per_s = models.FloatField(
        "requests per second", null=True, blank=True, validators=[MinValueValidator(0.1), MaxValueValidator(10000)],
        help_text="Requests per second Hoist sends here, all uses together (default HOIST_REGISTRY_RATE_PER_S).",
    )
    concurrency = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="Calls in flight at once, all processes together (default HOIST_REGISTRY_CONCURRENCY; "
        "the central registry has no limit unless set here).",
    )
    protect = models.BooleanField(
        default=False,
        help_text="Hoist may push keep tags here (it needs push credentials) so that clean-up never deletes a "
        "digest some resource runs or may roll back to. The central registry is always protected.",
    )

    # The limiter (a GCRA): the moment, in seconds since the epoch, from which the next request
    # is on schedule. Reserving a request moves it on by 1/rate.
    paced_until = models.FloatField(default=0)
    # A 429's Retry-After: nothing is sent before this.
    throttled_until = models.DateTimeField(null=True, blank=True)

    # Requests in the current minute (`minute`: minutes since the epoch) and the one before.
    minute = models.PositiveBigIntegerField(default=0)
    minute_requests = models.PositiveIntegerField(default=0)
    last_minute_requests = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["host"]
        verbose_name = "registry"
        verbose_name_plural = "registries"

    def __str__(self) -> str:
        return self.host

    @property
    def is_central(self) -> bool:
        return self.host == settings.HOIST_CENTRAL_REGISTRY.split("/", 1)[0]

    def effective(self) -> dict:
        """The limits that apply now: this row's, else the installation's defaults. The central
        registry is the operator's own: no concurrency limit unless set, always protected."""
        return {
            "watch_interval_s": int(self.watch_interval_s or settings.HOIST_TAG_WATCH_INTERVAL_S),
            "rate_per_s": float(self.rate_per_s or settings.HOIST_REGISTRY_RATE_PER_S),
            "concurrency": int(self.concurrency or (0 if self.is_central else settings.HOIST_REGISTRY_CONCURRENCY)),
            "protect": self.is_central or self.protect,
        }

    def requests_last_minute(self, now: float | None = None) -> int:
        """Requests in the last complete minute, as the limiter counted them."""
        minute = int((now if now is not None else time.time()) // 60)
        if self.minute == minute:
            return self.last_minute_requests
        if self.minute == minute - 1:
            return self.minute_requests
        return 0


class TagWatch(models.Model):
    """A registry tag some image-source resource follows, checked with one HEAD per interval
    however many resources name it. A change publishes as a registry push does."""

    host = models.CharField(max_length=255)
    repository = models.CharField(max_length=255, help_text="Path in the registry, without host or tag.")
    tag = models.CharField(max_length=128)
    digest = models.CharField(max_length=71, blank=True, help_text="What the tag pointed at when last checked.")
    next_check_at = models.DateTimeField(db_index=True)
    # A watcher claims a due watch under a lease: two watchers never check it twice.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True, help_text="When a check last found a new digest.")
    last_error = models.TextField(blank=True)
    checks = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["host", "repository", "tag"]
        constraints = [models.UniqueConstraint(fields=["host", "repository", "tag"], name="tag_watch_unique")]

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"


class Keep(models.Model):
    """A digest Hoist keeps from registry clean-up by pointing a tag of its own at it
    (`hoist-keep-<hex>`); released by pointing that tag elsewhere."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        KEPT = "kept", "Protected"
        RELEASED = "released", "Released"
        UNPROTECTED = "unprotected", "Unprotected"
        FAILED = "failed", "Failed"

    repository = models.CharField(max_length=500, help_text="Registry host and path.")
    digest = models.CharField(max_length=71, validators=[DIGEST_VALIDATOR])
    tag = models.CharField(max_length=128, blank=True)
    # Child manifests of an index, tagged too: clean-up deletes untagged children of a tagged index.
    children = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    detail = models.TextField(blank=True)
    kept_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["repository", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["repository", "digest"], name="keep_unique_digest_per_repository")]

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest[:19]} ({self.state})"


class ChangeRequest(models.Model):
    """A change of what runs in an environment that needs approvals before it is applied.

    A person's source change (the pin, the binding, the upstream, the image) in an
    environment with `required_approvals`, or, with `approve_automatic`, a digest
    track-latest would take by itself. It waits until `required` distinct maintainers
    other than the requester approve it; one rejection rejects it; a newer request
    for the same resource supersedes it.
    """

    class Kind(models.TextChoices):
        PIN_EDIT = "pin_edit", "Pin edit"
        PROMOTE = "promote", "One-click promote"
        TRACK_LATEST = "track_latest", "Switch to track latest"
        SOURCE = "source", "Source change"
        AUTOMATIC = "automatic", "Automatic track latest"

    class Status(models.TextChoices):
        AWAITING = "awaiting", "Awaiting approval"
        APPROVED = "approved", "Approved, waiting to apply"
        APPLIED = "applied", "Approved and applied"
        REJECTED = "rejected", "Rejected"
        SUPERSEDED = "superseded", "Superseded"
        CANCELLED = "cancelled", "Cancelled"

    OPEN = (Status.AWAITING, Status.APPROVED)

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="change_requests")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AWAITING, db_index=True)
    # The source fields to write when applied (never config or secrets): source_type, image,
    # promote_from (an id), binding, pinned_digest. Empty for an automatic change.
    source = models.JSONField(default=dict, blank=True)
    from_digest = models.CharField(max_length=71, blank=True)
    to_digest = models.CharField(max_length=71, blank=True)
    required = models.PositiveSmallIntegerField(help_text="Approvals needed, as the environment said when asked.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why it was rejected (or cancelled).")

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["resource", "status"])]

    def __str__(self) -> str:
        return f"{self.resource}: {self.get_kind_display()} {self.to_digest[:19] or ''} ({self.status})"


class Approval(models.Model):
    """One maintainer's decision on a change request."""

    request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    approved = models.BooleanField()
    reason = models.TextField(blank=True)
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["decided_at", "id"]
        constraints = [models.UniqueConstraint(fields=["request", "user"], name="approval_once_per_user")]


class FreezeWindow(models.Model):
    """A time during which nothing automatic changes what runs in an environment.

    Either once (`starts_at` to `ends_at`) or weekly (on `weekdays`, 0 = Monday, from
    `start_time` to `end_time` in `timezone`; an end at or before the start runs past
    midnight into the next day).
    """

    class Kind(models.TextChoices):
        ONCE = "once", "Once"
        WEEKLY = "weekly", "Every week"

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="freeze_windows")
    name = models.CharField(max_length=200, help_text="What it is for, e.g. 'Black Friday'.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    weekdays = models.JSONField(default=list, blank=True, help_text="Weekly: days, 0 = Monday … 6 = Sunday.")
    start_time = models.TimeField(null=True, blank=True)
    end_time = models.TimeField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Berlin.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["environment_id", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.environment}: {self.name}"


class FreezeOverride(models.Model):
    """A maintainer let one digest into one resource during a freeze, with a reason."""

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="freeze_overrides")
    digest = models.CharField(max_length=71, blank=True)
    reason = models.TextField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
