"""Who may do what in a project. Services call these, so every entry point agrees.

viewer reads; developer creates and changes resources in unprotected
environments; maintainer also changes protected environments, pins, and the
project's environments. Clusters are staff-only (they hold credentials).
"""

from django.core.exceptions import PermissionDenied

from .models import Project, Role


def require_role(user, project: Project, role: str, what: str) -> None:
    """Raise PermissionDenied unless `user` has at least `role` in `project`.

    `user=None` is Hoist itself (reconcile, webhooks after their own auth).
    """
    if user is None:
        return
    if not project.user_can(user, role):
        raise PermissionDenied(f"You need the {role} role in project {project.slug} to {what}.")


def require_change_environment(user, environment, what: str) -> None:
    role = Role.MAINTAINER if environment.protected else Role.DEVELOPER
    require_role(user, environment.project, role, f"{what} in {'protected ' if environment.protected else ''}environment {environment.slug}")


def require_staff(user, what: str) -> None:
    if user is None:
        return
    if not (user.is_authenticated and user.is_staff):
        raise PermissionDenied(f"Only staff operators may {what}.")
