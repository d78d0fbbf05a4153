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
        ordering = ["project", "user"]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"
