"""Included under projects/<project>/envs/<env>/."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.environment_detail, name="environment_detail"),
    path("new-resource/", views.resource_new, name="resource_new"),
    path("new-resource/check-digest/", views.digest_check, name="digest_check"),
    path("resources/<slug:name>/", views.resource_detail, name="resource_detail"),
    path("resources/<slug:name>/edit/", views.resource_edit, name="resource_edit"),
]
