"""Read queries for the project pages, and who may see or do what there.

Pages decide what to *show* from `Access`; the services decide what is
*allowed* (they raise PermissionDenied), so a hidden button and a refused
write always agree because both read the same role.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, OuterRef, Subquery
from django.http import Http404

from .models import ROLE_RANK, Membership, Project, Role
from .permissions import needed_role


@dataclass(frozen=True)
class Access:
    """A user's role in one project, resolved once per request (no query per check)."""

    project: Project
    role: str

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def can_change(self, environment) -> bool:
        """Create, edit and delete resources in `environment` (developer; maintainer if protected)."""
        return self.at_least(needed_role(environment))

    def can_pin(self, environment) -> bool:
        """Change pins and bindings (the one-click promote is a pin change)."""
        return self.can_change(environment) and self.at_least(Role.MAINTAINER)

    @property
    def is_viewer_only(self) -> bool:
        return not self.at_least(Role.DEVELOPER)


def projects_for_user(user):
    """The user's projects, each with `my_role` and `environment_count`."""
    projects = Project.objects.all()
    if user.is_superuser:
        projects = projects.annotate(
            my_role=Subquery(
                Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
            )
        )
    else:
        projects = projects.filter(memberships__user=user).annotate(
            my_role=Subquery(Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1])
        )
    projects = projects.annotate(environment_count=Count("environments", distinct=True)).order_by("name")
    result = list(projects)
    if user.is_superuser:
        for project in result:
            project.my_role = Role.MAINTAINER
    return result


def project_access(user, slug: str) -> Access:
    """The project named `slug` and the user's role in it, in one query.

    Anything in a project the user is not a member of is a 404, not a 403:
    a non-member can't even learn that the project exists.
    """
    if not user.is_authenticated:
        raise Http404("No such project.")
    if user.is_superuser:
        project = Project.objects.filter(slug=slug).first()
        role = Role.MAINTAINER
    else:
        project = (
            Project.objects.filter(slug=slug, memberships__user=user)
            .annotate(my_role=Subquery(Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]))
            .first()
        )
        role = project.my_role if project else None
    if project is None or role is None:
        raise Http404("No such project.")
    return Access(project=project, role=role)
