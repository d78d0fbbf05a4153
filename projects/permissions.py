"""Who may do what in a project: the one place a role is checked and the refusal worded.

viewer reads; developer creates and changes resources in unprotected
environments; maintainer also changes protected environments, pins and
bindings, and the project's environments and members. Only staff change
clusters (they hold credentials); who sees which cluster is
environments.selectors.clusters_visible_to.

Services call the `require_*` functions (they look the role up); pages and
API views that already resolved the caller's `Access` call `check_access*`
to refuse early. Both word a refusal the same way, so a write refused in the
browser, the admin and the API reads the same.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied

from .models import ROLE_RANK, Project, Role


def needed_role(environment) -> str:
    """The role that changes what runs in `environment`."""
    return Role.MAINTAINER if environment.protected else Role.DEVELOPER


def where(environment) -> str:
    return f"{'protected ' if environment.protected else ''}environment {environment.slug}"


def denied(role: str, project_slug: str, what: str) -> PermissionDenied:
    return PermissionDenied(f"You need the {role} role in project {project_slug} to {what}.")


# --- services (actor may be None: Hoist itself, after its own authentication) ----------------


def require_role(user, project: Project, role: str, what: str) -> None:
    """Raise PermissionDenied unless `user` has at least `role` in `project`.

    `user=None` is Hoist itself (reconcile, the registry webhook after its own
    token check, management commands).
    """
    if user is None:
        return
    if not project.user_can(user, role):
        raise denied(role, project.slug, what)


def require_change_environment(user, environment, what: str) -> None:
    require_role(user, environment.project, needed_role(environment), f"{what} in {where(environment)}")


def require_pin(user, environment, what: str = "change pins and bindings") -> None:
    """Pins and bindings are the maintainer's, in every environment."""
    require_change_environment(user, environment, what)
    require_role(user, environment.project, Role.MAINTAINER, what)


def require_staff(user, what: str) -> None:
    if user is None:
        return
    if not (user.is_authenticated and user.is_staff):
        raise PermissionDenied(f"Only staff operators may {what}.")


# --- doors that resolved the caller's Access already (no query) -----------------------------


def check_access(access, role: str, what: str) -> None:
    if ROLE_RANK[access.role] < ROLE_RANK[role]:
        raise denied(role, access.project.slug, what)


def check_access_change(access, environment, what: str) -> None:
    check_access(access, needed_role(environment), f"{what} in {where(environment)}")


def check_access_pin(access, environment, what: str = "change pins and bindings") -> None:
    check_access_change(access, environment, what)
    check_access(access, Role.MAINTAINER, what)
