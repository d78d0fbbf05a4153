"""Browser pages."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from .views import approvals, freeze, graph, notifications, projects, promotions, registries, resources, tokens, wizard

environment_pages = [
    path("", resources.environment_detail, name="environment_detail"),
    path("new-resource/", wizard.resource_new, name="resource_new"),
    path("new-resource/check-digest/", wizard.digest_check, name="digest_check"),
    path("resources/<slug:name>/", resources.resource_detail, name="resource_detail"),
    path("resources/<slug:name>/edit/", resources.resource_edit, name="resource_edit"),
    path("resources/<slug:name>/promote/", promotions.resource_promote, name="resource_promote"),
    path("freeze-windows/", freeze.freeze_window_add, name="freeze_window_add"),
    path("freeze-windows/<int:pk>/delete/", freeze.freeze_window_remove, name="freeze_window_remove"),
]

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", projects.project_list, name="project_list"),
    path("tokens/", tokens.token_list, name="token_list"),
    path("registries/", registries.registry_list, name="registry_list"),
    path("tokens/<int:pk>/revoke/", tokens.token_revoke, name="token_revoke"),
    path("projects/<slug:project>/", projects.project_detail, name="project_detail"),
    path("projects/<slug:project>/graph/", graph.project_graph, name="project_graph"),
    path("projects/<slug:project>/promotions/", promotions.project_promotions, name="project_promotions"),
    path("projects/<slug:project>/promotions/export.csv", promotions.project_promotions_csv, name="project_promotions_csv"),
    path("projects/<slug:project>/notifications/", notifications.project_notifications, name="project_notifications"),
    path("projects/<slug:project>/notifications/<int:pk>/test/", notifications.webhook_test, name="webhook_test"),
    path("projects/<slug:project>/notifications/<int:pk>/toggle/", notifications.webhook_toggle, name="webhook_toggle"),
    path("projects/<slug:project>/notifications/<int:pk>/delete/", notifications.webhook_delete, name="webhook_delete"),
    path("projects/<slug:project>/approvals/", approvals.project_approvals, name="project_approvals"),
    path("projects/<slug:project>/approvals/<int:pk>/<str:decision>/", approvals.decide, name="change_request_decide"),
    path("projects/<slug:project>/envs/<slug:env>/", include(environment_pages)),
]
