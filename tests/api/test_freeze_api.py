"""Freeze windows and an environment's approval settings through the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from environments.models import FreezeWindow
from projects.models import AuditEntry
from tests.fixtures.api import assert_error, url

pytestmark = pytest.mark.django_db

WINDOWS = url("projects", "shop", "environments", "dev", "freeze-windows")
WEEKLY = {"name": "Nights", "kind": "weekly", "weekdays": [0, 1, 2, 3, 4], "start_time": "18:00",
          "end_time": "06:00", "timezone": "Europe/Berlin"}


def window_url(pk) -> str:
    return f"{WINDOWS}{pk}/"


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_maintainers_add_change_and_delete_windows(api, dev):
    created = api["maintainer"].post(WINDOWS, WEEKLY, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert {key: body[key] for key in WEEKLY} == {**WEEKLY, "start_time": "18:00:00", "end_time": "06:00:00"}
    assert body["starts_at"] is None and body["created_by"] == "maintainer"
    assert body["summary"] == "weekly, Mon, Tue, Wed, Thu, Fri 18:00 → 06:00 (next day) Europe/Berlin"

    listed = api["viewer"].get(WINDOWS).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    assert api["viewer"].get(window_url(body["id"])).json()["name"] == "Nights"

    starts, ends = timezone.now() + timedelta(days=1), timezone.now() + timedelta(days=2)
    changed = api["maintainer"].patch(window_url(body["id"]), {"kind": "once", "starts_at": iso(starts),
                                                               "ends_at": iso(ends)}, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["kind"] == "once" and changed.json()["weekdays"] == [] and changed.json()["start_time"] is None

    assert api["maintainer"].delete(window_url(body["id"])).status_code == 204
    assert not FreezeWindow.objects.exists()
    actions = list(AuditEntry.objects.filter(action__startswith="freeze_window.", via="api", outcome="ok")
                   .order_by("pk").values_list("action", flat=True))
    assert actions == ["freeze_window.create", "freeze_window.update", "freeze_window.delete"]


@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_members_read_but_only_maintainers_write(api, dev, maintainer, role):
    window = api["maintainer"].post(WINDOWS, WEEKLY, format="json").json()
    assert api[role].get(WINDOWS).status_code == 200
    assert_error(api[role].post(WINDOWS, WEEKLY, format="json"), 403)
    assert_error(api[role].patch(window_url(window["id"]), {"name": "x"}, format="json"), 403)
    assert_error(api[role].delete(window_url(window["id"])), 403)
    assert FreezeWindow.objects.get().name == "Nights"
    assert AuditEntry.objects.filter(action__startswith="freeze_window.", outcome="refused").count() == 3


def test_outsiders_and_unknown_windows_are_404(api, dev):
    assert_error(api["outsider"].get(WINDOWS), 404)
    assert_error(api["viewer"].get(window_url(999)), 404)
    assert_error(api["viewer"].get(window_url("abc")), 404)
    assert_error(api["viewer"].get(url("projects", "shop", "environments", "nope", "freeze-windows")), 404)


@pytest.mark.parametrize("body, fields", [
    ({**WEEKLY, "weekdays": []}, ["weekdays"]),
    ({**WEEKLY, "weekdays": [9]}, ["weekdays.0"]),
    ({**WEEKLY, "weekdays": [1, "1"]}, ["weekdays.1"]),
    ({**WEEKLY, "timezone": "Berlin"}, ["timezone"]),
    ({**WEEKLY, "start_time": None}, ["start_time"]),
    ({**WEEKLY, "start_time": "noon"}, ["start_time"]),
    ({**WEEKLY, "name": ""}, ["name"]),
    ({**WEEKLY, "kind": "daily"}, ["kind"]),
    ({**WEEKLY, "starts_at": "2099-01-01T00:00:00Z"}, ["starts_at"]),
    ({**WEEKLY, "colour": "blue"}, ["colour"]),
    ({"name": "x", "kind": "once", "starts_at": "2099-01-02T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"}, ["ends_at"]),
    ({"name": "x", "kind": "once", "ends_at": "2099-01-01T00:00:00Z"}, ["starts_at"]),
    ({"name": "x", "kind": "once", "starts_at": "2000-01-01T00:00:00Z", "ends_at": "2000-01-02T00:00:00Z"}, ["ends_at"]),
    ({"name": "x", "kind": "once", "starts_at": "2099-01-01T00:00:00Z", "ends_at": "9999-12-31T23:59:59Z",
      "timezone": "Pacific/Kiritimati"}, ["ends_at"]),
])
def test_bad_windows_are_400_naming_the_fields(api, dev, body, fields):
    assert_error(api["maintainer"].post(WINDOWS, body, format="json"), 400, *fields)
    assert not FreezeWindow.objects.exists()


def test_the_environment_shows_when_it_is_frozen(api, dev, staging):
    now = timezone.now()
    FreezeWindow.objects.create(environment=dev, name="Release", kind="once", starts_at=now - timedelta(hours=1),
                                ends_at=now + timedelta(hours=1))
    listed = {e["slug"]: e for e in api["viewer"].get(url("projects", "shop", "environments")).json()["results"]}
    assert listed["dev"]["frozen"] == {"since": iso(now - timedelta(hours=1)), "until": iso(now + timedelta(hours=1)),
                                       "names": ["Release"]}
    assert listed["staging"]["frozen"] is None
    one = api["viewer"].get(url("projects", "shop", "environments", "dev")).json()
    assert one["frozen"]["names"] == ["Release"]
    assert (one["required_approvals"], one["approve_automatic"]) == (0, False)


def test_maintainers_set_the_approval_settings(api, dev):
    changed = api["maintainer"].patch(url("projects", "shop", "environments", "dev"),
                                      {"required_approvals": 2, "approve_automatic": True}, format="json")
    assert changed.status_code == 200, changed.json()
    assert (changed.json()["required_approvals"], changed.json()["approve_automatic"]) == (2, True)
    assert_error(api["maintainer"].patch(url("projects", "shop", "environments", "dev"), {"required_approvals": 11},
                                         format="json"), 400, "required_approvals")
    assert_error(api["maintainer"].patch(url("projects", "shop", "environments", "dev"), {"approve_automatic": "yes"},
                                         format="json"), 400, "approve_automatic")
    assert_error(api["developer"].patch(url("projects", "shop", "environments", "dev"), {"required_approvals": 0},
                                        format="json"), 403)
    # What a GET returned may be sent back as it is (frozen is read-only).
    current = api["maintainer"].get(url("projects", "shop", "environments", "dev")).json()
    sent_back = {key: current[key] for key in ("name", "required_approvals", "frozen")}
    assert api["maintainer"].patch(url("projects", "shop", "environments", "dev"), sent_back,
                                   format="json").status_code == 200


def test_the_schema_documents_freeze_windows(client):
    document = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = document["paths"]
    listing = paths["/api/v1/projects/{project}/environments/{environment}/freeze-windows/"]
    one = paths["/api/v1/projects/{project}/environments/{environment}/freeze-windows/{id}/"]
    assert {"get", "post"} <= set(listing) and {"get", "patch", "delete"} <= set(one)
    environment = document["components"]["schemas"]["Environment"]["properties"]
    assert {"required_approvals", "approve_automatic", "frozen"} <= set(environment)
