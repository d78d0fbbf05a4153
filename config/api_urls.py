"""REST API under /api/: /api/v1/… endpoints, the OpenAPI schema and its docs UI."""

from csp.decorators import csp_update
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.decorators import api_view, authentication_classes, permission_classes, schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.routers import SimpleRouter

from environments.api.approvals import ChangeRequestViewSet
from environments.api.freeze import FreezeWindowViewSet
from environments.api.views import ClusterViewSet, EnvironmentViewSet, RegistryViewSet, ResourceViewSet
from projects.api.views import MemberViewSet, ProjectViewSet, TokenViewSet, UserViewSet
from promotions.api.notifications import WebhookViewSet
from promotions.api.views import ArtifactViewSet, ProjectPromotionViewSet, ResourcePromotionViewSet


@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([AllowAny])
@schema(None)
def not_found(request):
    raise NotFound("No such API endpoint.")


# The API docs pages, Swagger UI and ReDoc, from drf-spectacular-sidecar's static files (no CDN).
# Both get the site's Content-Security-Policy (settings.CONTENT_SECURITY_POLICY): their templates
# (templates/api/) link a static stylesheet instead of drf-spectacular's inline <style>, and
# Swagger UI's start-up script comes from the split view's own URL (?script), not inline.
# ReDoc's page also drops drf-spectacular's links to Google Fonts (ReDoc falls back to the
# browser's sans-serif font); ReDoc 2.x always shows Redocly's logo from cdn.redoc.ly in its menu,
# which img-src keeps off (ReDoc hides a logo that fails to load).
#
# ReDoc alone needs two loosenings, for its page only (csp_update adds them to the site's policy):
# - style-src 'unsafe-inline': ReDoc styles itself through styled-components, which writes
#   <style> elements at run time from its bundle; they can't carry a nonce (the bundle has no way
#   to be given one) and their content changes with the schema, so hashes can't list them. The page
#   shows only Hoist's own schema, no user content, and scripts stay 'self' only.
# - worker-src blob:: its search index runs in a Web Worker that ReDoc starts from a blob: URL it
#   builds in the page (worker-src would otherwise fall back to script-src 'self', and search would
#   find nothing). A blob: URL holds only what the page's own script put there.
REDOC_CSP = {"style-src": ["'unsafe-inline'"], "worker-src": ["'self'", "blob:"]}
swagger_ui = SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/swagger_ui.html")
redoc = csp_update(REDOC_CSP)(SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html"))


# Anything up to the next "/": the views answer 404 (JSON) for what does not exist.
SLUG = r"[^/]+"
PROJECT = rf"projects/(?P<project>{SLUG})"
ENVIRONMENT = rf"{PROJECT}/environments/(?P<environment>{SLUG})"
RESOURCE = rf"{ENVIRONMENT}/resources/(?P<resource>{SLUG})"

router = SimpleRouter()
router.register(r"projects", ProjectViewSet, basename="api-project")
router.register(rf"{PROJECT}/members", MemberViewSet, basename="api-member")
router.register(rf"{PROJECT}/environments", EnvironmentViewSet, basename="api-environment")
router.register(rf"{PROJECT}/promotions", ProjectPromotionViewSet, basename="api-project-promotion")
router.register(rf"{PROJECT}/webhooks", WebhookViewSet, basename="api-webhook")
router.register(rf"{PROJECT}/approvals", ChangeRequestViewSet, basename="api-change-request")
router.register(rf"{ENVIRONMENT}/resources", ResourceViewSet, basename="api-resource")
router.register(rf"{ENVIRONMENT}/freeze-windows", FreezeWindowViewSet, basename="api-freeze-window")
router.register(rf"{RESOURCE}/artifacts", ArtifactViewSet, basename="api-artifact")
router.register(rf"{RESOURCE}/promotions", ResourcePromotionViewSet, basename="api-resource-promotion")
router.register(r"clusters", ClusterViewSet, basename="api-cluster")
router.register(r"registries", RegistryViewSet, basename="api-registry")
router.register(r"tokens", TokenViewSet, basename="api-token")
router.register(r"users", UserViewSet, basename="api-user")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", swagger_ui, name="api-docs"),
    path("redoc/", redoc, name="api-redoc"),
    # Everything else under /api/ is a JSON 404, never the HTML page of the web UI.
    re_path(r"^", not_found),
]
