"""Included under projects/<project>/."""

from django.urls import path

from . import views

urlpatterns = [
    path("promotions/", views.project_promotions, name="project_promotions"),
    path("envs/<slug:env>/resources/<slug:name>/promote/", views.resource_promote, name="resource_promote"),
]
