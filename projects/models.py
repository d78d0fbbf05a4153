from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

SLUG_VALIDATOR = RegexValidator(
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z",
    "Use lower-case letters, digits and '-', starting and ending with a letter or digit (at most 63).",
)


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    DEVELOPER = "developer", "Developer"
    MAINTAINER = "maintainer", "Maintainer"


# What each role may do; higher roles include the lower ones.
ROLE_RANK = {Role.VIEWER: 1, Role.DEVELOPER: 2, Role.MAINTAINER: 3}


class Project(models.Model):
    """The workspace: nothing is shared or promoted across projects."""

    slug = models.SlugField(max_length=63, unique=True, validators=[SLUG_VALIDATOR])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def role_of(self, user) -> str | None:
        """The user's role here, or None. Staff superusers act as maintainers everywhere."""
        if not user.is_authenticated:
            return None
        if user.is_superuser:
            return Role.MAINTAINER
        membership = self.memberships.filter(user=user).only("role").first()
        return membership.role if membership else None

    def user_can(self, user, role: str) -> bool:
        actual = self.role_of(user)
        return actual is not None and ROLE_RANK[actual] >= ROLE_RANK[role]


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user_per_project"),
            models.CheckConstraint(
                condition=models.Q(role__in=[r.value for r in Role]), name="membership_role_valid"
            ),
        ]
        ordering = ["project_id", "user_id"]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


class ApiToken(models.Model):
    """A per-user API token. Only its SHA-256 is stored; the key is shown once, at creation.

    `prefix` (the first characters of the key) lets a person tell tokens apart
    in lists and logs without the key itself being kept anywhere.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'CI deploys'.")
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def state(self, now=None) -> str:
        from django.utils import timezone

        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or timezone.now()):
            return "expired"
        return "active"

    @property
    def is_active(self) -> bool:
        return self.state() == "active"


class AuditEntry(models.Model):
    """One write: who (user and token), what, when, from where. Never holds secret values."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept when the user is deleted, and for writes not made by a user (webhooks, Hoist itself).
    actor_label = models.CharField(max_length=200, blank=True)
    token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=64, db_index=True, help_text="e.g. resource.update")
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=300, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    via = models.CharField(max_length=20, blank=True, help_text="api, web, admin, webhook, command, system")

    class Outcome(models.TextChoices):
        OK = "ok", "Done"
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"

    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.OK, db_index=True)
    # Why a write was refused or failed, as the caller was told.
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.target_repr}"
