"""One function decides what a resource's status reads as (environments.display), on every page and in the API."""

from datetime import timedelta

import pytest
from django.utils import timezone

from environments import selectors
from environments.display import FOLD_AT, display_state
from environments.models import Binding, Environment, Phase, Resource, SourceType
from tests.fixtures.domain import digest
from tests.fixtures.web import htmx

NOW = timezone.now()


def resource(**fields) -> Resource:
    """An unsaved resource with status fields as reconcile and the observer write them."""
    annotations = {k: fields.pop(k) for k in ("behind", "upstream_digest", "awaiting_approval") if k in fields}
    environment = fields.pop("environment", None) or Environment(name="prod", slug="prod")
    r = Resource(environment=environment, name="web", replicas=3, **fields)
    for name, value in annotations.items():
        setattr(r, name, value)
    return r


def promoted(**fields) -> Resource:
    fields.setdefault("binding", Binding.PIN_DIGEST)
    fields.setdefault("pinned_digest", digest(1))
    return resource(source_type=SourceType.PROMOTE, **fields)


def test_it_is_pending_before_the_first_reconcile():
    shown = display_state(resource(), now=NOW)
    assert (shown.state, shown.label, shown.tone, shown.detail) == ("pending", "Pending", "muted", "Not reconciled yet.")
    assert shown.behind == ""  # an image source has no upstream to be behind


def test_it_is_waiting_with_what_it_waits_for():
    shown = display_state(promoted(binding=Binding.TRACK_LATEST, pinned_digest="", phase=Phase.WAITING,
                                   message="Waiting for dev/web to publish an image.", upstream_digest=None), now=NOW)
    assert (shown.state, shown.label, shown.tone) == ("waiting", "Waiting", "muted")
    assert shown.detail == "Waiting for dev/web to publish an image."
    assert shown.behind == "upstream published nothing yet"


def test_it_is_rolling_out_with_its_progress():
    shown = display_state(resource(phase=Phase.PROGRESSING, message="rolling out 1/3", current_digest=digest(2),
                                   rollout_ready=1, rollout_total=3), now=NOW)
    assert (shown.state, shown.label, shown.tone, shown.detail) == ("rolling_out", "rolling out 1/3", "info", "")
    assert (shown.ready, shown.total) == (1, 3)
    # Before the Deployment reports, the total is the replicas wanted.
    assert display_state(resource(phase=Phase.PROGRESSING, current_digest=digest(2)), now=NOW).label == "rolling out 0/3"


def test_it_is_healthy_and_says_when_it_rolled_back():
    shown = display_state(resource(phase=Phase.READY, current_digest=digest(1), healthy_digest=digest(1)), now=NOW)
    assert (shown.state, shown.label, shown.tone, shown.detail) == ("healthy", "Healthy", "ok", "")
    rolled_back = display_state(resource(phase=Phase.READY, current_digest=digest(1), healthy_digest=digest(1),
                                         failed_digest=digest(2)), now=NOW)
    assert rolled_back.state == "healthy" and digest(2)[:19] in rolled_back.detail


def test_a_failed_rollout_is_failed_with_the_clusters_words():
    message = f"Rollout of {digest(2)[:19]}… failed: ProgressDeadlineExceeded"
    shown = display_state(resource(phase=Phase.FAILED, message=message, current_digest=digest(2),
                                   failed_digest=digest(2)), now=NOW)
    assert (shown.state, shown.label, shown.tone, shown.detail) == ("failed", "Failed", "error", message)


@pytest.mark.parametrize("phase, message", [
    # What record_failure() writes after the last attempt…
    (Phase.FAILED, "Will retry after attempt 4: registry.example.com: connection refused"),
    # …and what the rollout watch writes over it a moment later: the page read then agrees.
    (Phase.PROGRESSING, "rolling out 1/3"),
])
def test_a_transient_failure_is_retrying_whatever_the_phase_says(phase, message):
    r = resource(phase=phase, message=message, current_digest=digest(2), rollout_ready=1, rollout_total=3,
                 failures_in_a_row=2, backoff_until=NOW + timedelta(seconds=12))
    shown = display_state(r, now=NOW)
    assert (shown.state, shown.label, shown.tone) == ("retrying", "Retrying in 12 s", "warn")
    if phase == Phase.FAILED:
        assert shown.detail == message
    else:
        assert "2 in a row" in shown.detail  # the watch's progress note is not the reason
    assert r.rollout["state"] == "pending"  # the API's older vocabulary: not "failed", not "rolling_out"


def test_a_retry_that_is_due_reads_retrying():
    shown = display_state(resource(phase=Phase.FAILED, message="Will retry after attempt 4: boom", failures_in_a_row=1,
                                   backoff_until=NOW - timedelta(seconds=1)), now=NOW)
    assert (shown.state, shown.label) == ("retrying", "Retrying")


def test_a_change_awaiting_approval():
    held = promoted(phase=Phase.WAITING, current_digest=digest(1),
                    message=f"awaiting approval (0/2) of {digest(2)[:19]}… (track latest)")
    assert display_state(held, now=NOW).state == "awaiting_approval"  # the engine's hold, not annotated (the admin)
    asked = promoted(phase=Phase.READY, current_digest=digest(1), awaiting_approval=True, behind=2)
    shown = display_state(asked, now=NOW)
    assert (shown.state, shown.label, shown.tone) == ("awaiting_approval", "awaiting approval", "warn")
    assert "approvals" in shown.detail and shown.behind == "2 behind"


def test_a_hold_for_a_freeze_is_frozen_only_while_the_environment_is():
    frozen_env = Environment(name="prod", slug="prod", frozen_until=NOW + timedelta(hours=1))
    held = dict(phase=Phase.WAITING, current_digest=digest(1), message="prod is frozen until 18:00 UTC: … waits for the thaw")
    shown = display_state(promoted(environment=frozen_env, **held), now=NOW)
    assert (shown.state, shown.label, shown.tone) == ("frozen", "Frozen", "muted") and "thaw" in shown.detail
    thawed = Environment(name="prod", slug="prod", frozen_until=None)
    assert display_state(promoted(environment=thawed, **held), now=NOW).state == "waiting"
    # A first deploy is never held: nothing runs, so it waits for its upstream, frozen or not.
    first = promoted(environment=frozen_env, phase=Phase.WAITING, message="Waiting for dev/web to publish an image.")
    assert display_state(first, now=NOW).state == "waiting"


@pytest.mark.parametrize("behind, words, tone", [
    (0, "up to date", "ok"), (2, "2 behind", "warn"), (None, "not from upstream", "muted"),
])
def test_the_behind_line(behind, words, tone):
    shown = display_state(promoted(phase=Phase.READY, current_digest=digest(1), behind=behind, upstream_digest=digest(3)), now=NOW)
    assert (shown.behind, shown.behind_tone) == (words, tone)


def test_nothing_running_is_never_up_to_date():
    """with_status() counts a pin's place from its pinned digest before the first reconcile:
    behind = 0. With nothing running, the line says so instead."""
    stuck = promoted(phase=Phase.FAILED, message="Will retry after attempt 4: registry down", failures_in_a_row=3,
                     backoff_until=NOW + timedelta(seconds=30), behind=0, upstream_digest=digest(1))
    shown = display_state(stuck, now=NOW)
    assert shown.state == "retrying" and not shown.running
    assert shown.behind == "nothing running yet" and "up to date" not in shown.behind


def test_a_long_message_folds_to_its_first_line():
    short = display_state(resource(phase=Phase.FAILED, message="x" * FOLD_AT), now=NOW)
    assert not short.folds
    error = "registry.example.com: " + "unauthorized: authentication required " * 12
    shown = display_state(resource(phase=Phase.FAILED, message=error), now=NOW)
    assert shown.folds and shown.detail == error.strip()
    assert len(shown.summary) <= FOLD_AT and shown.summary.endswith("…")
    lines = display_state(resource(phase=Phase.FAILED, message="Apply failed\ncluster said: 422"), now=NOW)
    assert lines.folds and lines.summary == "Apply failed"


def test_the_api_rollout_keeps_its_older_shape():
    r = resource(phase=Phase.PROGRESSING, current_digest=digest(2), rollout_ready=2, rollout_total=3, message="rolling out 2/3")
    assert r.rollout == {"state": "rolling_out", "ready": 2, "total": 3, "summary": "rolling out 2/3"}
    failed = resource(phase=Phase.FAILED, message="boom")
    assert failed.rollout["state"] == "failed" and failed.rollout["summary"] == "Failed: boom"


# --- on the pages, with what the selectors annotate -------------------------------------------------


def test_a_new_pin_stuck_retrying_reads_the_same_on_the_pipeline_and_its_page(maintainer_client, pipeline_world, staging,
                                                                             make_resource):
    """The walk-through's resource: nothing runs yet and the registry keeps failing."""
    api = make_resource(staging, "api", upstream=pipeline_world["dev_web"], binding=Binding.PIN_DIGEST, pinned=digest(3))
    long_error = "Will retry after attempt 4: mirror of registry.example.com/shop/web failed: " + "denied: " * 30
    Resource.objects.filter(pk=api.pk).update(phase=Phase.FAILED, message=long_error, failures_in_a_row=3,
                                              backoff_until=timezone.now() + timedelta(seconds=40))
    listed = {r.name: r for r in selectors.with_status(Resource.objects.filter(environment=staging))}
    assert listed["api"].behind == 0  # what used to read "up to date" beside "no image yet"

    pipeline = maintainer_client.get("/projects/shop/", **htmx("pipeline")).content.decode()
    cell = pipeline[pipeline.index('data-resource="staging/api"'):]
    cell = cell[:cell.index("</td>")]
    assert 'data-state="retrying"' in cell and "no image yet" in cell and "nothing running yet" in cell
    assert "up to date" not in cell and "Failed" not in cell
    assert '<details class="status-detail' in cell and "<summary>Will retry after attempt 4" in cell

    page = maintainer_client.get("/projects/shop/envs/staging/resources/api/", **htmx("resource-live")).content.decode()
    assert 'data-state="retrying"' in page and "Retrying in" in page and "up to date" not in page
    assert '<details class="status-detail' in page and long_error.strip() in page

    # The observer's next event writes "progressing" over the failure: nothing the pages say changes.
    Resource.objects.filter(pk=api.pk).update(phase=Phase.PROGRESSING, message="rolling out 0/1")
    again = maintainer_client.get("/projects/shop/", **htmx("pipeline")).content.decode()
    assert 'data-state="retrying"' in again[again.index('data-resource="staging/api"'):]


def test_deciding_reads_no_query(pipeline_world, django_assert_num_queries):
    resources = list(selectors.with_status(Resource.objects.select_related("environment", "promote_from__environment")))
    with django_assert_num_queries(0):
        states = {f"{r.environment.slug}/{r.name}": display_state(r).state for r in resources}
    assert states == {"dev/web": "healthy", "staging/web": "healthy", "prod/web": "healthy"}



def test_an_opened_detail_keeps_its_element_while_it_says_the_same():
    """Pages keep an opened detail open across their live refresh by its id (htmx hx-preserve)."""
    first = resource(pk=7, phase=Phase.FAILED, message="boom", failures_in_a_row=1, backoff_until=NOW + timedelta(seconds=9))
    later = resource(pk=7, phase=Phase.FAILED, message="boom", failures_in_a_row=2, backoff_until=NOW + timedelta(seconds=3))
    assert display_state(first, now=NOW).element_id == display_state(later, now=NOW).element_id  # the label moved on
    other = resource(pk=7, phase=Phase.FAILED, message="bang", failures_in_a_row=1)
    assert display_state(other, now=NOW).element_id != display_state(first, now=NOW).element_id
    assert display_state(resource(pk=8, phase=Phase.FAILED, message="boom", failures_in_a_row=1),
                         now=NOW).element_id != display_state(first, now=NOW).element_id
