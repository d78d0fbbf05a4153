from django.contrib import admin
from django.urls import include, path

from core.health import healthz, readyz
from promotions.metrics import metrics
from promotions.webhooks import registry_notifications


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("hooks/registry/", registry_notifications, name="registry-notifications"),
    path("api/", include("config.api_urls")),
    path("", include("web.urls")),
]
