"""Browser pages (filled in by the web UI)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns: list = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("projects.urls")),
    path("", include("projects.token_urls")),
    path("projects/<slug:project>/", include("promotions.urls")),
    path("projects/<slug:project>/envs/<slug:env>/", include("environments.urls")),
]
