from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path

from promotions.webhooks import registry_notifications


def healthz(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("hooks/registry/", registry_notifications, name="registry-notifications"),
    path("api/", include("config.api_urls")),
    path("", include("web.urls")),
]
