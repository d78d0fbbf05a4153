"""Registries through every door: the API (staff), the admin, the pages; a resource's tag watch in its status."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from environments.models import RegistryHost, TagWatch
from projects.models import AuditEntry
from tests.fixtures.api import assert_error, resource_url, url

pytestmark = pytest.mark.django_db

HOST = "registry.example.com"


@pytest.fixture
def watched(dev, staging, make_resource):
    web = make_resource(dev, "web", image=f"{HOST}/shop/web:main")
    make_resource(staging, "web", image=f"{HOST}/shop/web:main")
    make_resource(dev, "pinned", image=f"{HOST}/shop/web@sha256:" + "c" * 64)
    RegistryHost.objects.get_or_create(host=HOST)
    now = timezone.now()
    TagWatch.objects.filter(tag="main").update(digest="sha256:" + "d" * 64, checked_at=now, changed_at=now - timedelta(hours=1))
    return web


def test_staff_list_registries_with_what_hoist_observed(api, watched):
    response = api["admin"].get(url("registries"))
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["host"] == HOST and row["watched_tags"] == 1
    assert row["effective"] == {"watch_interval_s": 30, "rate_per_s": 20.0, "concurrency": 2, "protect": False}
    assert row["requests_per_min"] == 0 and row["last_error"] == ""


@pytest.mark.parametrize("role", ["viewer", "developer", "maintainer", "outsider"])
def test_only_staff_see_or_change_registries(api, watched, role):
    assert api[role].get(url("registries")).status_code == 403
    assert api[role].patch(url("registries", HOST), {"watch_interval_s": 60}, format="json").status_code == 403
    assert AuditEntry.objects.filter(action="registry.update", outcome="refused").exists()


def test_staff_tune_a_registry_and_it_is_audited(api, watched):
    response = api["admin"].patch(url("registries", HOST), {"watch_interval_s": 300, "rate_per_s": 2.5, "protect": True},
                                  format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["effective"]["watch_interval_s"] == 300
    assert response.json()["effective"]["rate_per_s"] == 2.5
    entry = AuditEntry.objects.filter(action="registry.update", outcome="ok").get()
    assert entry.changes["after"]["watch_interval_s"] == 300
    # Back to the default.
    response = api["admin"].patch(url("registries", HOST), {"watch_interval_s": None}, format="json")
    assert response.json()["effective"]["watch_interval_s"] == 30


@pytest.mark.parametrize("body, field", [
    ({"watch_interval_s": 1}, "watch_interval_s"),
    ({"watch_interval_s": "30"}, "watch_interval_s"),
    ({"rate_per_s": 0}, "rate_per_s"),
    ({"rate_per_s": True}, "rate_per_s"),
    ({"concurrency": 1000}, "concurrency"),
    ({"protect": "yes"}, "protect"),
    ({"host": "elsewhere"}, "host"),
])
def test_bad_registry_settings_name_the_field_and_change_nothing(api, watched, body, field):
    assert_error(api["admin"].patch(url("registries", HOST), body, format="json"), 400, field)
    row = RegistryHost.objects.get(host=HOST)
    assert (row.watch_interval_s, row.rate_per_s, row.concurrency, row.protect) == (None, None, None, False)


def test_an_unknown_registry_is_404(api, watched):
    assert_error(api["admin"].get(url("registries", "nowhere.example.com")), 404)


def test_a_resource_given_by_tag_says_how_its_tag_is_watched(api, watched, dev):
    status = api["viewer"].get(resource_url(dev, "web")).json()["status"]
    watch = status["watch"]
    assert watch["tag"] == f"{HOST}/shop/web:main" and watch["interval_s"] == 30
    assert watch["checked_at"] and watch["changed_at"] and watch["digest"] == "sha256:" + "d" * 64
    assert watch["error"] is None
    assert api["viewer"].get(resource_url(dev, "pinned")).json()["status"]["watch"] is None
    listed = {r["name"]: r["status"]["watch"] for r in api["viewer"].get(resource_url(dev)).json()["results"]}
    assert listed["web"]["tag"] == watch["tag"] and listed["pinned"] is None


def test_the_registries_page_is_for_staff(client, admin_user, members, watched):
    client.force_login(members["maintainer"])
    assert client.get(reverse("registry_list")).status_code == 403
    client.force_login(admin_user)
    page = client.get(reverse("registry_list"))
    assert page.status_code == 200
    assert HOST in page.content.decode() and "Registries" in page.content.decode()


def test_the_resource_page_shows_the_watch(client, members, watched, dev):
    client.force_login(members["viewer"])
    page = client.get(reverse("resource_detail", args=[dev.project.slug, dev.slug, "web"])).content.decode()
    assert "Watched every 30 s" in page and "last checked" in page


def test_the_admin_tunes_a_registry_through_the_service(admin_client, watched):
    row = RegistryHost.objects.get(host=HOST)
    assert admin_client.get(reverse("admin:environments_registryhost_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:environments_tagwatch_changelist")).status_code == 200
    change = reverse("admin:environments_registryhost_change", args=[row.pk])
    assert admin_client.get(change).status_code == 200
    response = admin_client.post(change, {"watch_interval_s": "3", "rate_per_s": "", "concurrency": "", "protect": ""})
    assert response.status_code == 200
    assert "watch_interval_s" in response.context["adminform"].form.errors
    response = admin_client.post(change, {"watch_interval_s": "600", "rate_per_s": "", "concurrency": "4", "protect": "on"})
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.watch_interval_s, row.concurrency, row.protect) == (600, 4, True)
    assert AuditEntry.objects.filter(action="registry.update", outcome="ok").exists()
