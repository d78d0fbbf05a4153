"""What every API view shares: the caller's project and role, early role checks, the audit entry."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import OpenApiParameter
from rest_framework import viewsets
from rest_framework.exceptions import NotFound, ValidationError

from projects import audit
from projects.models import Project, Role
from projects.selectors import Access, project_access

PROJECT_PARAM = OpenApiParameter("project", str, OpenApiParameter.PATH, description="Project slug.")
ENVIRONMENT_PARAM = OpenApiParameter("environment", str, OpenApiParameter.PATH, description="Environment slug.")
RESOURCE_PARAM = OpenApiParameter("resource", str, OpenApiParameter.PATH, description="Resource name.")


class HoistViewSet(viewsets.GenericViewSet):
    """Base of every API viewset.

    Writes record an AuditEntry in the same transaction (`self.audit`).
    """

    # Any path segment reaches the view, which answers a JSON 404 for what does not exist.
    lookup_value_regex = "[^/]+"

    def initial(self, request, *args, **kwargs):
        # PostgreSQL text can't hold NUL: refuse it at the door rather than fail in a query.
        if any("\x00" in str(value) for value in kwargs.values()):
            raise NotFound()
        bad = [key for key, values in request.query_params.lists() if "\x00" in key or any("\x00" in v for v in values)]
        if bad:
            raise ValidationError({key.replace("\x00", "") or "query": ["NUL characters are not allowed."] for key in bad})
        super().initial(request, *args, **kwargs)

    def audit(self, action: str, target=None, *, changes: dict | None = None, project: Project | None = None, **target_fields):
        return audit.record(
            action=action, actor=self.request.user, target=target, changes=changes, request=self.request,
            project=project, via="api", **target_fields,
        )


class ProjectScopedViewSet(HoistViewSet):
    """A viewset under /projects/{project}/: non-members get 404 for everything in it."""

    _access: Access | None = None

    @property
    def access(self) -> Access:
        if self._access is None:
            self._access = project_access(self.request.user, self.kwargs["project"])
        return self._access

    @property
    def project(self) -> Project:
        return self.access.project

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if getattr(self, "swagger_fake_view", False):
            return
        self.access  # resolve now: 404 before anything else is looked at

    def require(self, role: str, what: str) -> None:
        """Refuse early (before the body is even validated) when the role is too low."""
        if not self.access.at_least(role):
            raise PermissionDenied(f"You need the {role} role in project {self.project.slug} to {what}.")

    def require_change(self, environment, what: str) -> None:
        if not self.access.can_change(environment):
            role = Role.MAINTAINER if environment.protected else Role.DEVELOPER
            where = f"{'protected ' if environment.protected else ''}environment {environment.slug}"
            raise PermissionDenied(f"You need the {role} role in project {self.project.slug} to {what} in {where}.")
