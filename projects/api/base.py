"""API views under /projects/{project}/: the caller's project and role, resolved once."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter

from core.api.base import HoistViewSet
from projects import audit, permissions
from projects.models import Project
from projects.selectors import Access, project_access

PROJECT_PARAM = OpenApiParameter("project", str, OpenApiParameter.PATH, description="Project slug.")
ENVIRONMENT_PARAM = OpenApiParameter("environment", str, OpenApiParameter.PATH, description="Environment slug.")
RESOURCE_PARAM = OpenApiParameter("resource", str, OpenApiParameter.PATH, description="Resource name.")


def require_staff(request, what: str, *, action: str) -> None:
    """The services' staff check, early (before the body is parsed), audited when it refuses."""
    with audit.guarding(action, actor=request.user):
        permissions.require_staff(request.user, what)


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

    # Early refusals (a viewer gets 403 before the body is even parsed). They are
    # the services' own checks, with the services' messages: the service checks
    # again (and audits) when it is called.
    def require(self, role: str, what: str, *, action: str, target=None) -> None:
        with audit.guarding(action, actor=self.request.user, target=target, project=self.project):
            permissions.check_access(self.access, role, what)

    def require_change(self, environment, what: str, *, action: str, target=None) -> None:
        with audit.guarding(action, actor=self.request.user, target=target or environment, project=self.project):
            permissions.check_access_change(self.access, environment, what)
