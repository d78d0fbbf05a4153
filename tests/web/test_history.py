"""Issue 16 part 2, the honest history: each promotion's cause, the duration that fits it, filters,
server-side paging that keeps them, and the CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from environments import services
from environments.models import ChangeRequest, Environment
from promotions.models import Promotion
from tests.fixtures.domain import digest
from tests.fixtures.web import htmx

HISTORY = "/projects/shop/promotions/"
CSV = "/projects/shop/promotions/export.csv"
PROMOTE = "/projects/shop/envs/prod/resources/web/promote/"

pytestmark = pytest.mark.django_db


def rows(body: str) -> list[str]:
    """The history table's rows, as `cause:status` (in page order)."""
    return [f"{cause}:{status}" for status, cause in re.findall(r'<tr data-status="(\w+)" data-cause="(\w+)">', body)]


def record(resource, *, reason, queued_ago=60.0, applied_after=None, healthy_after=None, **fields) -> Promotion:
    """A promotion as the engine would have recorded it, queued `queued_ago` seconds ago."""
    promotion = Promotion.objects.create(resource=resource, to_digest=fields.pop("to_digest", digest("x")), reason=reason, **fields)
    queued = timezone.now() - timedelta(seconds=queued_ago)
    Promotion.objects.filter(pk=promotion.pk).update(
        queued_at=queued,
        applied_at=queued + timedelta(seconds=applied_after) if applied_after is not None else None,
        healthy_at=queued + timedelta(seconds=healthy_after) if healthy_after is not None else None,
    )
    return Promotion.objects.with_cause().get(pk=promotion.pk)


@pytest.fixture
def approvals(pipeline_world, prod, maintainers):
    """prod needs two approvals; the first maintainer promotes prod/web with one click."""
    Environment.objects.filter(pk=prod.pk).update(required_approvals=2)
    prod_web = pipeline_world["prod_web"]
    prod_web.environment.required_approvals = 2
    change = services.resource_promote_upstream_current(resource=prod_web, actor=maintainers[0]).change_request
    return {**pipeline_world, "change": change, "maintainers": maintainers}


# --- causes -------------------------------------------------------------------------------------


def test_it_records_a_one_click_promote_as_promote_not_a_pin_edit(maintainer_client, pipeline_world):
    maintainer_client.post(PROMOTE)
    promoted = Promotion.objects.with_cause().get(resource=pipeline_world["prod_web"], to_digest=digest(3))
    assert (promoted.reason, promoted.cause, promoted.cause_label) == ("promote", "promote", "Promoted")
    body = maintainer_client.get(HISTORY + "?cause=promote").content.decode()
    assert rows(body) == ["promote:queued"] and "Promoted" in body


def test_it_says_approval_for_a_change_applied_after_its_approvals(approvals, maintainer_client):
    change, (asker, first, second) = approvals["change"], approvals["maintainers"]
    waiting = Promotion.objects.get(change_request=change)
    assert (waiting.reason, waiting.cause) == ("promote", "promote")  # not approved yet: still its own cause
    services.change_request_approve(request=change, actor=first)
    services.change_request_approve(request=change, actor=second)
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.APPLIED
    applied = Promotion.objects.with_cause().get(pk=waiting.pk)
    assert (applied.reason, applied.cause, applied.who) == ("promote", "approval", asker.username)
    assert applied.approved_at == change.decided_at
    body = maintainer_client.get(HISTORY + "?cause=approval").content.decode()
    assert rows(body) == ["approval:queued"]
    assert "Approval" in body and "Promoted" in body  # the cause, and the change it approved


def test_it_times_an_approval_from_the_last_approval(approvals):
    change, (_, first, second) = approvals["change"], approvals["maintainers"]
    services.change_request_approve(request=change, actor=first)
    services.change_request_approve(request=change, actor=second)
    change.refresh_from_db()
    promotion = Promotion.objects.get(change_request=change)
    Promotion.objects.filter(pk=promotion.pk).update(  # asked an hour before it was approved
        queued_at=change.decided_at - timedelta(hours=1), applied_at=change.decided_at + timedelta(seconds=2),
        healthy_at=change.decided_at + timedelta(seconds=9))
    duration = Promotion.objects.with_cause().get(pk=promotion.pk).duration
    assert (duration.start, duration.applied_s, duration.healthy_s) == ("approved", 2.0, 9.0)


def test_a_rejected_request_keeps_its_own_cause(approvals):
    change, (_, first, _) = approvals["change"], approvals["maintainers"]
    services.change_request_reject(request=change, actor=first, reason="not today")
    assert Promotion.objects.with_cause().get(change_request=change).cause == "promote"


def test_the_cause_without_the_annotation_follows_the_same_rule(approvals):
    change, (_, first, second) = approvals["change"], approvals["maintainers"]
    services.change_request_approve(request=change, actor=first)
    services.change_request_approve(request=change, actor=second)
    assert Promotion.objects.get(change_request=change).cause == "approval"  # loaded without with_cause()


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize("reason, person, start", [
    ("publish", False, "publish"),
    ("track_latest", False, "publish"),
    ("track_latest", True, "requested"),  # a person switched it to track latest
    ("pin_edit", True, "requested"),
    ("promote", True, "requested"),
    ("create", True, "requested"),
    ("drift", False, "detected"),
    ("rollback", False, "detected"),
])
def test_each_cause_is_timed_from_what_started_it(pipeline_world, maintainer, reason, person, start):
    # Published 10 minutes before; asked 60 s ago; applied 0.8 s and healthy 5 s after it was asked.
    promotion = record(pipeline_world["prod_web"], reason=reason, actor=maintainer if person else None,
                       applied_after=0.8, healthy_after=5, latency_s=600.8, healthy_latency_s=605.0)
    duration = promotion.duration
    assert duration.start == start
    if start == "publish":
        assert (duration.applied_s, duration.healthy_s) == (600.8, 605.0)
    else:
        assert (round(duration.applied_s, 3), round(duration.healthy_s, 3)) == (0.8, 5.0)


def test_the_page_labels_each_duration_with_its_start(viewer_client, pipeline_world, maintainer):
    Promotion.objects.all().delete()
    record(pipeline_world["dev_web"], reason="publish", applied_after=1, healthy_after=4, latency_s=1.2, healthy_latency_s=3.4)
    record(pipeline_world["prod_web"], reason="pin_edit", actor=maintainer, applied_after=0.8, healthy_after=6,
           latency_s=143.0, healthy_latency_s=149.0)
    record(pipeline_world["staging_web"], reason="create", actor=maintainer, applied_after=0.5, latency_s=102.0)
    body = viewer_client.get(HISTORY).content.decode()
    assert "publish → applied <strong>1.2 s</strong>" in body and "publish → healthy 3.4 s" in body
    assert "requested → applied <strong>0.8 s</strong>" in body and "requested → healthy 6.0 s" in body
    assert "requested → applied <strong>0.5 s</strong>" in body
    # Neither the upstream's old publish nor the person's think time.
    assert "2 min 23 s" not in body and "1 min 42 s" not in body and "2 min 29 s" not in body
    assert "Duration" in body


def test_a_duration_cell_never_says_when_it_was_applied(viewer_client, pipeline_world):
    Promotion.objects.all().delete()
    record(pipeline_world["dev_web"], reason="publish", queued_ago=400, applied_after=100)  # publish time unknown
    record(pipeline_world["prod_web"], reason="pin_edit", status="queued", queued_ago=30)
    record(pipeline_world["prod_web"], reason="pin_edit", status="superseded", queued_ago=50)
    cells = re.findall(r'<td class="duration">(.*?)</td>', viewer_client.get(HISTORY).content.decode(), re.S)
    text = [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells]
    assert text == ["not applied yet", "not applied", "applied; publish time unknown"]
    assert not any("ago" in cell for cell in text)


# --- filters ----------------------------------------------------------------------------------


@pytest.fixture
def busy(pipeline_world, maintainer, developer):
    """dev/web's 3 publishes (one by a registry webhook), staging and prod created, a pin edit that failed in prod."""
    Promotion.objects.filter(resource=pipeline_world["dev_web"], to_digest=digest(1)).update(actor_label="registry webhook (r.example.com)")
    Promotion.objects.filter(resource=pipeline_world["prod_web"]).update(actor=maintainer)
    record(pipeline_world["prod_web"], reason="pin_edit", actor=developer, status="failed", error="timed out", queued_ago=3 * 86400)
    return pipeline_world


@pytest.mark.parametrize("query, expected", [
    ("", ["pin_edit:failed", "create:queued", "create:queued", "publish:queued"] + ["publish:superseded"] * 2),
    ("environment=prod", ["pin_edit:failed", "create:queued"]),
    ("environment=dev", ["publish:queued"] + ["publish:superseded"] * 2),
    ("resource=web&environment=staging", ["create:queued"]),
    ("cause=create", ["create:queued", "create:queued"]),
    ("cause=pin_edit&cause=publish", ["pin_edit:failed", "publish:queued"] + ["publish:superseded"] * 2),
    ("status=failed", ["pin_edit:failed"]),
    ("who=developer", ["pin_edit:failed"]),
    ("who=MAINTAINER", ["create:queued"]),
    ("who=registry+webhook", ["publish:superseded"]),
    ("who=nobody", []),
    ("date_to=" + (timezone.now() - timedelta(days=2)).strftime("%Y-%m-%d"), ["pin_edit:failed"]),
    ("date_from=" + timezone.now().strftime("%Y-%m-%d"), ["create:queued"] * 2 + ["publish:queued"] + ["publish:superseded"] * 2),
    ("environment=prod&date_from=2020-01-01&date_to=2999-12-31", ["pin_edit:failed", "create:queued"]),
    ("environment=prod&date_from=0001-01-01&date_to=9999-12-31", ["pin_edit:failed", "create:queued"]),
    ("date_from=9999-12-31", []),
    ("date_to=0001-01-01", []),
])
def test_each_filter_narrows_the_history(viewer_client, busy, query, expected):
    body = viewer_client.get(HISTORY + "?" + query).content.decode()
    assert sorted(rows(body)) == sorted(expected)
    assert f"{len(expected)} promotion" in body


def test_hoist_is_a_person_filter_too(viewer_client, busy, dev_web):
    record(dev_web, reason="drift", actor_label="drift repair: cluster ran x@sha256:1")
    record(dev_web, reason="track_latest", actor_label="Hoist")
    record(dev_web, reason="track_latest")  # no label: shown as Hoist
    # Hoist: recorded as Hoist, or with no person and no label (staging's create, two of dev's publishes).
    assert sorted(rows(viewer_client.get(HISTORY + "?who=hoist").content.decode())) == [
        "create:queued", "publish:queued", "publish:superseded", "track_latest:queued", "track_latest:queued"]
    assert rows(viewer_client.get(HISTORY + "?who=drift+repair").content.decode()) == ["drift:queued"]


def test_the_form_shows_the_filters_in_use(viewer_client, busy):
    body = viewer_client.get(HISTORY + "?environment=prod&cause=pin_edit&who=developer&date_from=2020-01-02").content.decode()
    assert '<option value="prod" selected>' in body and '<option value="pin_edit" selected>' in body
    assert 'value="developer"' in body and 'value="2020-01-02"' in body
    for label in ("Environment", "Resource", "Cause", "Status", "Who", "From", "To"):
        assert re.search(rf'<label for="id_\w+">{label}</label>', body), label
    assert '<form id="history-filters"' in body and 'method="get"' in body and 'hx-push-url="true"' in body


@pytest.mark.parametrize("query, field, message", [
    ("environment=nowhere", "environment", "No environment “nowhere” in this project."),
    ("resource=ghost", "resource", "No resource “ghost” in this project."),
    ("cause=whim", "cause", "Select a valid choice."),
    ("status=lost", "status", "Select a valid choice."),
    ("date_from=2026-13-45", "date_from", "Enter a valid date."),
    ("date_from=yesterday", "date_from", "Enter a valid date."),
    ("date_from=2026-05-02&date_to=2026-05-01", "date_to", "“To” (2026-05-01) is before “From” (2026-05-02)."),
    ("who=" + "x" * 300, "who", "at most 200 characters"),
])
def test_a_bad_filter_is_an_error_next_to_its_field_and_shows_nothing(viewer_client, busy, query, field, message):
    response = viewer_client.get(HISTORY + "?" + query)
    body = response.content.decode()
    assert response.status_code == 200
    errors = re.search(rf'<div class="errors" id="{field}-errors"[^>]*>(.*?)</div>', body, re.S).group(1)
    assert message in errors
    assert f'id="id_{field}"' in body and 'aria-invalid="true"' in body
    assert rows(body) == [] and "fix the filters above" in body and "Download CSV" not in body


def test_an_environment_of_another_project_is_unknown_here(viewer_client, busy, other_project, cluster_a):
    services.environment_create(project=other_project, name="qa", slug="qa", cluster=cluster_a, namespace="other-qa")
    assert "No environment “qa”" in viewer_client.get(HISTORY + "?environment=qa").content.decode()


def test_an_empty_field_is_no_filter(viewer_client, busy):
    body = viewer_client.get(HISTORY + "?environment=&resource=&cause=&status=&who=&date_from=&date_to=").content.decode()
    assert len(rows(body)) == 6 and "6 promotions, page 1 of 1" in body and "fix the filters" not in body
    assert 'href="/projects/shop/promotions/export.csv" download' in body


def test_filters_the_page_does_not_show_are_ignored(viewer_client, busy):
    assert len(rows(viewer_client.get(HISTORY + "?reason=create&queued_after=2999-01-01T00:00:00Z").content.decode())) == 6


# --- HTMX -------------------------------------------------------------------------------------


def test_with_htmx_the_form_swaps_only_the_table_and_brings_the_field_errors(viewer_client, busy):
    response = viewer_client.get(HISTORY + "?environment=prod&resource=", **htmx("history"))
    body = response.content.decode()
    assert "<html" not in body and "<form" not in body and body.lstrip().startswith("<section id=\"history\"")
    assert rows(body) == ["create:queued", "pin_edit:failed"]
    # The refresh every 5 s keeps the filters (only the ones given).
    assert 'hx-get="/projects/shop/promotions/?environment=prod"' in body and 'hx-trigger="every 5s"' in body
    # Each field's errors come along out of band (empty now: a fixed filter clears its old error).
    assert '<div class="errors" id="environment-errors" hx-swap-oob="true"></div>' in body
    bad = viewer_client.get(HISTORY + "?date_from=2026-02-31", **htmx("history")).content.decode()
    assert re.search(r'id="date_from-errors" hx-swap-oob="true"><p>Enter a valid date.</p>', bad)
    assert 'hx-trigger' not in bad  # no refresh of an invalid filter


def test_the_full_page_has_no_out_of_band_errors(viewer_client, busy):
    assert "hx-swap-oob" not in viewer_client.get(HISTORY + "?environment=nowhere").content.decode()


# --- paging -----------------------------------------------------------------------------------


def test_paging_is_on_the_server_and_keeps_the_filters(viewer_client, busy):
    prod_web = busy["prod_web"]
    Promotion.objects.bulk_create([Promotion(resource=prod_web, to_digest=digest(i), reason="pin_edit") for i in range(118)])
    body = viewer_client.get(HISTORY + "?environment=prod&cause=pin_edit").content.decode()
    assert "119 promotions matching the filters, page 1 of 3" in body and len(rows(body)) == 50
    assert 'href="/projects/shop/promotions/?environment=prod&amp;cause=pin_edit&amp;page=2" rel="next"' in body
    body = viewer_client.get(HISTORY + "?environment=prod&cause=pin_edit&page=3").content.decode()
    assert "page 3 of 3" in body and len(rows(body)) == 19 and set(rows(body)) <= {"pin_edit:queued", "pin_edit:failed"}
    assert 'href="/projects/shop/promotions/?environment=prod&amp;cause=pin_edit&amp;page=2" rel="prev"' in body
    assert 'hx-trigger="every 5s"' not in body  # only the first page refreshes
    assert "page 3 of 3" in viewer_client.get(HISTORY + "?environment=prod&cause=pin_edit&page=999").content.decode()


def test_the_page_reads_a_fixed_number_of_queries(viewer_client, busy):
    prod_web = busy["prod_web"]
    viewer_client.get(HISTORY)
    with CaptureQueriesContext(connection) as few:
        viewer_client.get(HISTORY + "?environment=prod&who=developer")
    Promotion.objects.bulk_create([Promotion(resource=prod_web, to_digest=digest(i), reason="pin_edit") for i in range(80)])
    with CaptureQueriesContext(connection) as many:
        viewer_client.get(HISTORY + "?environment=prod&who=developer")
    assert len(many.captured_queries) == len(few.captured_queries)


# --- CSV --------------------------------------------------------------------------------------


def read_csv(response) -> list[dict]:
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="shop-promotions.csv"'
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_csv_has_every_filtered_row_on_every_page(viewer_client, busy, maintainer):
    prod_web = busy["prod_web"]
    Promotion.objects.bulk_create([Promotion(resource=prod_web, to_digest=digest(i), reason="pin_edit") for i in range(120)])
    record(prod_web, reason="pin_edit", actor=maintainer, applied_after=0.75, healthy_after=4.5, latency_s=900.0,
           to_digest=digest("edited"))
    table = read_csv(viewer_client.get(CSV + "?environment=prod&cause=pin_edit"))
    assert len(table) == 122 and {row["environment"] for row in table} == {"prod"}
    assert list(table[0]) == ["queued_at", "environment", "resource", "cause", "who", "from_digest", "to_digest", "status",
                              "error", "duration_from", "applied_seconds", "healthy_seconds", "applied_at", "healthy_at"]
    edited = next(row for row in table if row["to_digest"] == digest("edited"))
    assert (edited["cause"], edited["who"], edited["duration_from"]) == ("pin_edit", "maintainer", "requested")
    assert (edited["applied_seconds"], edited["healthy_seconds"]) == ("0.750", "4.500")
    failed = next(row for row in table if row["status"] == "failed")
    assert (failed["who"], failed["error"], failed["applied_seconds"]) == ("developer", "timed out", "")


def test_the_page_links_the_csv_with_its_filters(viewer_client, busy):
    body = viewer_client.get(HISTORY + "?environment=prod&status=failed&page=1").content.decode()
    assert 'href="/projects/shop/promotions/export.csv?environment=prod&amp;status=failed" download>Download CSV</a>' in body


def test_the_csv_guards_against_formulas(viewer_client, busy):
    dev_web = busy["dev_web"]
    record(dev_web, reason="publish", actor_label="=HYPERLINK(\"http://evil\")", error="-2+3", status="failed")
    record(dev_web, reason="publish", actor_label="@SUM(A1)", error="+1")
    record(dev_web, reason="publish", actor_label="\tHoist", error="plain")
    table = read_csv(viewer_client.get(CSV + "?cause=publish"))
    cells = {(row["who"], row["error"]) for row in table}
    assert {("'=HYPERLINK(\"http://evil\")", "'-2+3"), ("'@SUM(A1)", "'+1"), ("'\tHoist", "plain")} <= cells
    assert not any(value.startswith(("=", "+", "-", "@")) for row in table for value in row.values())


def test_the_csv_is_for_members_only(client, outsider_client, busy):
    assert outsider_client.get(CSV).status_code == 404
    assert client.get(CSV).status_code == 302  # signed out: to the login page


def test_a_bad_csv_filter_is_a_400_not_a_500(viewer_client, busy):
    response = viewer_client.get(CSV + "?environment=nowhere&date_from=x")
    assert response.status_code == 400 and "environment: No environment" in response.content.decode()


# --- the resource page ------------------------------------------------------------------------


def test_the_resource_page_history_says_the_cause_and_duration(maintainer_client, pipeline_world, maintainer):
    record(pipeline_world["prod_web"], reason="promote", actor=maintainer, applied_after=1.5, latency_s=300.0)
    body = maintainer_client.get("/projects/shop/envs/prod/resources/web/").content.decode()
    assert "Promoted" in body and "requested → applied <strong>1.5 s</strong>" in body
