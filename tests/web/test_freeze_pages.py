"""Freeze windows in the browser: the environment page (list, "frozen until", add and delete)
and the pipeline's frozen column."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.utils import timezone

from environments.models import FreezeWindow
from projects.models import AuditEntry
from tests.fixtures.web import htmx

pytestmark = pytest.mark.django_db

PAGE = "/projects/shop/envs/dev/"
ADD = "/projects/shop/envs/dev/freeze-windows/"


@pytest.fixture
def frozen(dev):
    now = timezone.now().replace(microsecond=0)
    return FreezeWindow.objects.create(environment=dev, name="Release week", kind="once",
                                       starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=3))


def test_the_environment_page_shows_its_windows_and_the_thaw(viewer_client, frozen):
    body = viewer_client.get(PAGE).content.decode()
    thaw = frozen.ends_at.strftime("%Y-%m-%d %H:%M")
    assert "Freeze windows" in body and "Release week" in body
    assert f"frozen until {thaw} UTC" in body and f"Frozen until {thaw} UTC" in body
    assert "Add a freeze window" not in body and "Delete" not in body  # viewers only look


def test_maintainers_see_the_form_and_no_inline_script(maintainer_client, dev):
    body = maintainer_client.get(PAGE).content.decode()
    assert "Add a freeze window" in body and 'name="weekdays"' in body and 'type="datetime-local"' in body
    assert '<datalist id="zones">' in body and "Europe/Berlin" in body
    assert "No freeze windows." in body
    assert "<script>" not in body and "onclick" not in body and "style=" not in body


def test_a_maintainer_adds_a_once_window_in_its_time_zone(maintainer_client, dev, maintainer):
    response = maintainer_client.post(ADD, {"name": "Black Friday", "kind": "once", "starts_at": "2099-11-27T18:00",
                                            "ends_at": "2099-11-30T06:00", "timezone": "Europe/Berlin",
                                            "weekdays": ["1"], "start_time": "09:00"})  # the other kind's: ignored
    assert response.status_code == 302 and response["Location"] == PAGE
    window = FreezeWindow.objects.get()
    assert (window.kind, window.created_by, window.weekdays) == ("once", maintainer, [])
    assert window.starts_at == datetime(2099, 11, 27, 17, tzinfo=dt_timezone.utc)
    assert AuditEntry.objects.get(action="freeze_window.create").via == "web"
    assert "Freeze window Black Friday added" in maintainer_client.get(PAGE).content.decode()


def test_a_maintainer_adds_a_weekly_window(maintainer_client, dev):
    response = maintainer_client.post(ADD, {"name": "Nights", "kind": "weekly", "weekdays": ["4", "5"],
                                            "start_time": "22:00", "end_time": "06:00", "timezone": "UTC",
                                            "starts_at": "2099-01-01T00:00"})
    assert response.status_code == 302
    window = FreezeWindow.objects.get()
    assert (window.weekdays, window.start_time, window.end_time, window.starts_at) == ([4, 5], time(22), time(6), None)
    assert "weekly, Fri, Sat 22:00 → 06:00 (next day) UTC" in maintainer_client.get(PAGE).content.decode()


def test_errors_show_next_to_their_fields_with_what_was_typed(maintainer_client, dev):
    response = maintainer_client.post(ADD, {"name": "", "kind": "weekly", "weekdays": [], "start_time": "22:00",
                                            "end_time": "", "timezone": "Mars/Olympus"})
    body = response.content.decode()
    assert response.status_code == 200 and not FreezeWindow.objects.exists()
    assert 'id="name-errors"' in body and "Give the window a name" in body
    assert "Pick at least one weekday." in body and "is not a time zone" in body
    assert 'id="end_time-errors"' in body and "Required for a weekly window" in body
    assert 'value="Mars/Olympus"' in body and 'value="22:00"' in body  # what was typed stays
    assert 'aria-invalid="true"' in body and "Please fix these" in body
    assert "<html" in body and 'id="resources"' in body  # the whole page again


@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_others_may_not_add_or_delete(client_as, frozen, role):
    client = client_as(role)
    assert client.post(ADD, {"name": "x", "kind": "once"}).status_code == 403
    assert client.post(f"{ADD}{frozen.pk}/delete/").status_code == 403
    assert FreezeWindow.objects.count() == 1
    assert AuditEntry.objects.filter(action__startswith="freeze_window.", outcome="refused").count() == 2


def test_a_maintainer_deletes_a_window(maintainer_client, frozen):
    assert f'action="{ADD}{frozen.pk}/delete/"' in maintainer_client.get(PAGE).content.decode()
    response = maintainer_client.post(f"{ADD}{frozen.pk}/delete/")
    assert response.status_code == 302 and not FreezeWindow.objects.exists()
    assert maintainer_client.get(f"{ADD}{frozen.pk}/delete/").status_code == 405
    assert maintainer_client.post(f"{ADD}{frozen.pk}/delete/").status_code == 404


def test_the_pipeline_shows_a_frozen_column_and_its_thaw(maintainer_client, frozen, staging):
    body = maintainer_client.get("/projects/shop/").content.decode()
    assert body.count('class="badge frozen"') == 1
    assert f"thaws {frozen.ends_at:%Y-%m-%d %H:%M} UTC" in body and "(Release week)" in body
    refreshed = maintainer_client.get("/projects/shop/", **htmx("pipeline")).content.decode()
    assert "<html" not in refreshed and 'class="badge frozen"' in refreshed
