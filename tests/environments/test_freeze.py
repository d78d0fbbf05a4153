"""Issue 14 part 2: freeze windows: the window math, what a freeze holds back, a maintainer's
override, noticing a freeze start and end, and the window services."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from environments import freeze, services, signals
from environments.models import Environment, FreezeOverride, FreezeWindow, Resource
from projects.models import AuditEntry
from tests.fixtures.domain import digest

pytestmark = pytest.mark.django_db

UTC = dt_timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def once(name, starts_at, ends_at, environment=None) -> FreezeWindow:
    return FreezeWindow(environment=environment, name=name, kind="once", starts_at=starts_at, ends_at=ends_at)


def weekly(name, weekdays, start, end, zone="UTC", environment=None) -> FreezeWindow:
    return FreezeWindow(environment=environment, name=name, kind="weekly", weekdays=weekdays, start_time=start,
                        end_time=end, timezone=zone)


def save(window: FreezeWindow) -> FreezeWindow:
    """A window written as it is (the services refuse windows in the past)."""
    window.save()
    return window


# --- the window math -----------------------------------------------------------------------------


def test_a_once_window_is_on_from_its_start_until_its_end():
    window = once("launch", utc(2026, 11, 27, 8), utc(2026, 11, 27, 20))
    assert freeze.freeze_of([window], utc(2026, 11, 27, 7, 59)) is None
    assert freeze.freeze_of([window], utc(2026, 11, 27, 8)) == freeze.Freeze(
        since=utc(2026, 11, 27, 8), until=utc(2026, 11, 27, 20), names=["launch"])
    assert freeze.freeze_of([window], utc(2026, 11, 27, 19, 59)) is not None
    assert freeze.freeze_of([window], utc(2026, 11, 27, 20)) is None  # the end is the thaw
    assert freeze.freeze_of([], utc(2026, 11, 27, 12)) is None


def test_a_weekly_window_is_on_on_its_days_between_its_times():
    office = weekly("office hours", [0, 1, 2, 3, 4], time(9), time(17))
    wednesday = utc(2026, 12, 2, 10)
    assert wednesday.weekday() == 2
    assert freeze.freeze_of([office], wednesday) == freeze.Freeze(
        since=utc(2026, 12, 2, 9), until=utc(2026, 12, 2, 17), names=["office hours"])
    assert freeze.freeze_of([office], utc(2026, 12, 2, 17)) is None
    assert freeze.freeze_of([office], utc(2026, 12, 5, 10)) is None  # Saturday


def test_an_end_at_or_before_the_start_runs_past_midnight():
    nights = weekly("nights", [4], time(22), time(6))  # Friday 22:00 → Saturday 06:00
    friday_late, saturday_early = utc(2026, 12, 4, 23), utc(2026, 12, 5, 3)
    expected = freeze.Freeze(since=utc(2026, 12, 4, 22), until=utc(2026, 12, 5, 6), names=["nights"])
    assert freeze.freeze_of([nights], friday_late) == expected
    assert freeze.freeze_of([nights], saturday_early) == expected  # begun the day before
    assert freeze.freeze_of([nights], utc(2026, 12, 5, 23)) is None  # not on Saturday night
    whole_day = weekly("sunday", [6], time(0), time(0))  # the same time: a whole day
    assert freeze.freeze_of([whole_day], utc(2026, 12, 6, 12)).until == utc(2026, 12, 7)


def test_weekly_windows_are_read_in_their_time_zone():
    evening = weekly("evening", [0], time(18), time(20), zone="America/New_York")
    # Monday 18:00 in New York is 23:00 UTC in winter (EST) and 22:00 UTC in summer (EDT).
    assert freeze.freeze_of([evening], utc(2026, 1, 5, 23, 30)).since == utc(2026, 1, 5, 23)
    assert freeze.freeze_of([evening], utc(2026, 7, 6, 22, 30)).since == utc(2026, 7, 6, 22)
    assert freeze.freeze_of([evening], utc(2026, 7, 6, 21)) is None  # 17:00 in New York
    # The weekday is New York's: Monday 19:00 there is already Tuesday in UTC.
    assert freeze.freeze_of([evening], utc(2026, 1, 6, 0, 30)) is not None


def test_a_window_across_a_dst_change_keeps_its_local_times():
    nights = weekly("nights", [5], time(22), time(6), zone="Europe/Berlin")  # Saturday 22:00 → Sunday 06:00
    # Clocks go forward on Sunday 29 March 2026: the night is an hour shorter.
    spring = freeze.freeze_of([nights], utc(2026, 3, 29, 1))
    assert spring.since == datetime(2026, 3, 28, 22, tzinfo=BERLIN) == utc(2026, 3, 28, 21)
    assert spring.until == datetime(2026, 3, 29, 6, tzinfo=BERLIN) == utc(2026, 3, 29, 4)
    assert spring.until - spring.since == timedelta(hours=7)
    # And back on Sunday 25 October 2026: an hour longer.
    autumn = freeze.freeze_of([nights], utc(2026, 10, 25, 1))
    assert (autumn.since, autumn.until) == (utc(2026, 10, 24, 20), utc(2026, 10, 25, 5))
    assert autumn.until - autumn.since == timedelta(hours=9)
    # A start in the hour the clocks skip is read with the offset before the change.
    skipped = weekly("skipped", [6], time(2, 30), time(4), zone="Europe/Berlin")
    assert freeze.freeze_of([skipped], utc(2026, 3, 29, 1, 45)).since == utc(2026, 3, 29, 1, 30)


def test_overlapping_and_touching_windows_make_one_freeze():
    windows = [
        once("b", utc(2026, 12, 1, 11), utc(2026, 12, 1, 14)),
        once("a", utc(2026, 12, 1, 10), utc(2026, 12, 1, 12)),
        once("c", utc(2026, 12, 1, 14), utc(2026, 12, 1, 15)),  # touches b
        once("later", utc(2026, 12, 1, 16), utc(2026, 12, 1, 17)),
    ]
    assert freeze.freeze_of(windows, utc(2026, 12, 1, 10, 30)) == freeze.Freeze(
        since=utc(2026, 12, 1, 10), until=utc(2026, 12, 1, 15), names=["a", "b", "c"])
    assert freeze.freeze_of(windows, utc(2026, 12, 1, 16, 30)).names == ["later"]


def test_weekly_and_once_windows_merge_across_days():
    weekend = weekly("weekend", [5, 6], time(0), time(0), zone="Europe/Berlin")  # all Saturday and Sunday
    friday_night = weekly("friday night", [4], time(18), time(0), zone="Europe/Berlin")
    release = once("release", utc(2026, 12, 7, 22), utc(2026, 12, 8, 12))  # Monday after
    found = freeze.freeze_of([weekend, friday_night, release], utc(2026, 12, 5, 12))
    assert found.since == datetime(2026, 12, 4, 18, tzinfo=BERLIN)
    assert found.until == datetime(2026, 12, 7, 0, tzinfo=BERLIN)  # release starts later: not merged
    assert found.names == ["friday night", "weekend"]


def test_a_freeze_that_never_ends_is_followed_about_a_year():
    always = weekly("always", [0, 1, 2, 3, 4, 5, 6], time(0), time(0))
    at = utc(2026, 12, 1, 12)
    found = freeze.freeze_of([always], at)
    assert found.until - at >= freeze.HORIZON and found.since <= at - freeze.HORIZON


def test_for_environments_reads_every_window_in_one_query(dev, staging, prod, django_assert_num_queries):
    now = timezone.now()
    save(once("dev freeze", now - timedelta(hours=1), now + timedelta(hours=1), dev))
    save(once("prod later", now + timedelta(days=1), now + timedelta(days=2), prod))
    with django_assert_num_queries(1):
        found = freeze.for_environments([dev, staging, prod])
    assert set(found) == {dev.pk} and found[dev.pk].names == ["dev freeze"]
    assert freeze.current(dev) == found[dev.pk] and freeze.current(prod) is None


# --- what a freeze holds back -------------------------------------------------------------------


@pytest.fixture
def frozen_dev(dev):
    now = timezone.now()
    save(once("release", now - timedelta(hours=1), now + timedelta(hours=2), dev))
    return dev


def test_holds_a_new_digest_only_while_frozen(dev_web, dev):
    assert freeze.holds(dev_web, digest(2)) is None
    now = timezone.now()
    save(once("release", now - timedelta(hours=1), now + timedelta(hours=2), dev))
    held = freeze.holds(dev_web, digest(2))
    assert held is not None and held.names == ["release"]
    assert freeze.holds(dev_web, digest(2), at=now + timedelta(hours=3)) is None  # thawed


def test_an_override_lets_its_digest_in_during_this_freeze_only(frozen_dev, dev_web, maintainer):
    FreezeOverride.objects.create(resource=dev_web, digest=digest(2), reason="hotfix", actor=maintainer)
    assert freeze.holds(dev_web, digest(2)) is None
    assert freeze.holds(dev_web, digest(3)) is not None  # another digest still waits
    # An override from an earlier freeze doesn't count.
    FreezeOverride.objects.update(created_at=timezone.now() - timedelta(days=3))
    assert freeze.holds(dev_web, digest(2)) is not None


def test_an_override_without_a_digest_lets_the_change_in(frozen_dev, dev_web, maintainer):
    FreezeOverride.objects.create(resource=dev_web, digest="", reason="switch to the new upstream", actor=maintainer)
    assert freeze.holds(dev_web, digest(4)) is None


# --- a person's change during a freeze ------------------------------------------------------------


def test_a_person_change_outside_a_freeze_needs_nothing(dev_web, developer):
    assert freeze.gate_person_change(resource=dev_web, actor=developer, to_digest=digest(2)) is None


def test_a_person_change_during_a_freeze_needs_an_override(frozen_dev, dev_web, developer):
    with pytest.raises(ValidationError) as caught:
        freeze.gate_person_change(resource=dev_web, actor=developer, to_digest=digest(2))
    message = caught.value.message_dict["freeze_override"][0]
    assert message.startswith("dev is frozen until ") and "(release)" in message and "override with a reason" in message


def test_only_a_maintainer_overrides(frozen_dev, dev_web, developer):
    with pytest.raises(ValidationError) as caught:
        freeze.gate_person_change(resource=dev_web, actor=developer, to_digest=digest(2), override="please")
    assert "only maintainers" in caught.value.message_dict["freeze_override"][0]
    assert not FreezeOverride.objects.exists()


def test_a_maintainer_override_is_recorded(frozen_dev, dev_web, maintainer):
    made = freeze.gate_person_change(resource=dev_web, actor=maintainer, to_digest=digest(2), override="  hotfix  ")
    assert (made.resource, made.digest, made.reason, made.actor) == (dev_web, digest(2), "hotfix", maintainer)
    assert freeze.holds(dev_web, digest(2)) is None


def test_the_override_is_audited_with_the_change(frozen_dev, dev_web, developer, maintainer):
    new_image = "registry.example.com/shop/web@" + digest(2)
    with pytest.raises(ValidationError) as caught:
        services.resource_update(resource=dev_web, actor=developer, image=new_image)
    assert "freeze_override" in caught.value.message_dict
    refused = AuditEntry.objects.get(action="resource.update", outcome="refused")
    assert "frozen until" in refused.message
    with pytest.raises(ValidationError):
        services.resource_update(resource=dev_web, actor=developer, image=new_image, freeze_override="please")
    assert AuditEntry.objects.filter(action="resource.update", outcome="refused").count() == 2

    services.resource_update(resource=dev_web, actor=maintainer, image=new_image, freeze_override="hotfix for #12")
    entry = AuditEntry.objects.get(action="resource.update", outcome="ok")
    assert entry.actor == maintainer and entry.changes["freeze_override"] == "hotfix for #12"
    override = FreezeOverride.objects.get()
    assert (override.digest, override.reason, override.actor) == (digest(2), "hotfix for #12", maintainer)


# --- noticing a freeze start and end ---------------------------------------------------------------


@pytest.fixture
def reconciles():
    """Every `reconcile_requested` sent during the test: lists of resource ids."""
    seen = []

    def record(*, resource_ids, **_):
        seen.append(sorted(resource_ids))

    signals.reconcile_requested.connect(record, weak=False, dispatch_uid="test-freeze-reconciles")
    yield seen
    signals.reconcile_requested.disconnect(dispatch_uid="test-freeze-reconciles")


def test_refresh_sends_each_transition_once(dev, staging, events, reconciles):
    now = timezone.now()
    save(once("release", now + timedelta(minutes=1), now + timedelta(hours=1), dev))
    assert freeze.refresh(now) == [] and events == []
    start = now + timedelta(minutes=2)
    assert [(e.slug, event) for e, event in freeze.refresh(start)] == [("dev", "freeze.started")]
    assert freeze.refresh(start + timedelta(seconds=2)) == []  # noticed already
    dev.refresh_from_db()
    assert dev.frozen_until == now + timedelta(hours=1)
    assert events == [("freeze.started", {
        "environment": "dev", "since": freeze._iso(now + timedelta(minutes=1)),
        "until": freeze._iso(now + timedelta(hours=1)), "windows": ["release"]})]
    end = now + timedelta(hours=1, seconds=1)
    assert [event for _, event in freeze.refresh(end)] == ["freeze.ended"]
    assert freeze.refresh(end) == []
    dev.refresh_from_db()
    assert dev.frozen_until is None
    assert events[1] == ("freeze.ended", {"environment": "dev", "thawed_at": freeze._iso(now + timedelta(hours=1)),
                                          "windows": ["release"]})
    assert len(events) == 2


def test_only_one_observer_wins_a_transition(dev, events, monkeypatch):
    now = timezone.now()
    save(once("release", now - timedelta(minutes=1), now + timedelta(hours=1), dev))
    real_current = freeze.current

    def another_observer_first(environment, at=None):
        found = real_current(environment, at)
        # The other observer read the same and committed its transition in between.
        Environment.objects.filter(pk=environment.pk).update(frozen_until=found.until)
        return found

    monkeypatch.setattr(freeze, "current", another_observer_first)
    assert freeze.refresh(now) == [] and events == []
    dev.refresh_from_db()
    assert dev.frozen_until == now + timedelta(hours=1)


def test_the_thaw_applies_what_waited_and_asks_for_reconciles(dev, dev_web, make_resource, events, reconciles,
                                                              monkeypatch):
    worker = make_resource(dev, "worker")
    cron = make_resource(dev, "nightly", kind="cronjob", schedule="0 3 * * *")
    applied = []
    monkeypatch.setattr(services, "change_requests_apply_approved", applied.append, raising=False)
    now = timezone.now()
    save(once("release", now - timedelta(minutes=5), now + timedelta(minutes=5), dev))
    freeze.refresh(now)
    assert applied == [] and reconciles == []
    freeze.refresh(now + timedelta(minutes=6))
    assert [e.pk for e in applied] == [dev.pk]
    assert reconciles == [sorted([dev_web.pk, worker.pk])]  # the deployments (a cron job isn't run yet)
    assert cron.pk not in reconciles[0]
    assert [event for event, _ in events] == ["freeze.started", "freeze.ended"]


def test_a_thaw_still_happens_without_the_approvals_step(dev, dev_web, events, reconciles, monkeypatch):
    monkeypatch.delattr(services, "change_requests_apply_approved", raising=False)
    now = timezone.now()
    save(once("release", now - timedelta(minutes=5), now + timedelta(minutes=5), dev))
    freeze.refresh(now)
    freeze.refresh(now + timedelta(minutes=6))
    assert [event for event, _ in events] == ["freeze.started", "freeze.ended"] and reconciles == [[dev_web.pk]]


def test_deleting_the_window_thaws_at_the_next_look(dev, dev_web, maintainer, events, reconciles):
    now = timezone.now()
    window = save(once("release", now - timedelta(minutes=5), now + timedelta(hours=5), dev))
    freeze.refresh(now)
    freeze.freeze_window_delete(window=window, actor=maintainer)
    freeze.refresh(now + timedelta(seconds=2))
    assert [event for event, _ in events] == ["freeze.started", "freeze.ended"]
    assert events[1][1]["thawed_at"] == freeze._iso(now + timedelta(seconds=2)) and reconciles == [[dev_web.pk]]


def test_one_environment_failing_does_not_hold_up_the_others(dev, staging, events):
    now = timezone.now()
    for environment in (dev, staging):
        save(once("release", now - timedelta(minutes=5), now + timedelta(hours=1), environment))

    def broken(*, data, **_):
        if data["environment"] == "dev":
            raise RuntimeError("a broken receiver")

    signals.event_happened.connect(broken, weak=False, dispatch_uid="test-broken")
    try:
        assert [(e.slug, event) for e, event in freeze.refresh(now)] == [("staging", "freeze.started")]
    finally:
        signals.event_happened.disconnect(dispatch_uid="test-broken")
    dev.refresh_from_db()
    assert dev.frozen_until is None  # rolled back: tried again at the next look
    assert [(e.slug, event) for e, event in freeze.refresh(now)] == [("dev", "freeze.started")]


def test_an_extended_freeze_moves_the_thaw_without_new_events(dev, events):
    now = timezone.now()
    window = save(once("release", now - timedelta(minutes=5), now + timedelta(minutes=5), dev))
    freeze.refresh(now)
    FreezeWindow.objects.filter(pk=window.pk).update(ends_at=now + timedelta(hours=2))
    freeze.refresh(now + timedelta(minutes=1))
    dev.refresh_from_db()
    assert dev.frozen_until == now + timedelta(hours=2) and [e for e, _ in events] == ["freeze.started"]


def test_a_missed_thaw_into_the_next_freeze_sends_both(dev, events, reconciles):
    now = timezone.now()
    save(once("first", now - timedelta(hours=2), now - timedelta(hours=1), dev))
    save(once("second", now - timedelta(minutes=30), now + timedelta(hours=1), dev))
    Environment.objects.filter(pk=dev.pk).update(frozen_until=now - timedelta(hours=1))  # noticed, then no observer ran
    assert [event for _, event in freeze.refresh(now)] == ["freeze.ended", "freeze.started"]
    assert events[0][1]["windows"] == ["first"] and events[1][1]["windows"] == ["second"]
    assert reconciles == []  # frozen again: what waits goes on waiting


# --- the window services ----------------------------------------------------------------------------


def soon(hours=1) -> datetime:
    return timezone.now() + timedelta(hours=hours)


def test_maintainers_create_change_and_delete_windows(dev, maintainer):
    window = freeze.freeze_window_create(environment=dev, actor=maintainer, name=" Black Friday ", kind="once",
                                         starts_at=soon(1), ends_at=soon(30), timezone="Europe/Berlin")
    assert (window.name, window.created_by, window.environment) == ("Black Friday", maintainer, dev)
    changed = freeze.freeze_window_update(window=window, actor=maintainer, kind="weekly", weekdays=[4, 0, 4],
                                          start_time=time(18), end_time=time(6))
    changed.refresh_from_db()
    assert (changed.kind, changed.weekdays, changed.starts_at, changed.ends_at) == ("weekly", [0, 4], None, None)
    freeze.freeze_window_delete(window=changed, actor=maintainer)
    assert not FreezeWindow.objects.exists()
    entries = AuditEntry.objects.filter(action__startswith="freeze_window.", outcome="ok").order_by("pk")
    assert [e.action for e in entries] == ["freeze_window.create", "freeze_window.update", "freeze_window.delete"]
    assert entries[0].changes["after"]["name"] == "Black Friday" and entries[0].project == dev.project
    assert entries[1].changes["before"]["kind"] == "once" and entries[1].changes["after"]["weekdays"] == [0, 4]
    assert entries[2].target_id == str(window.pk)


@pytest.mark.parametrize("role", ["viewer", "developer", "outsider"])
def test_others_may_not_change_windows(dev, members, role):
    with pytest.raises(PermissionDenied):
        freeze.freeze_window_create(environment=dev, actor=members[role], name="x", kind="once",
                                    starts_at=soon(1), ends_at=soon(2))
    assert AuditEntry.objects.get(action="freeze_window.create").outcome == "refused"


@pytest.mark.parametrize("fields, errors", [
    ({"name": "  ", "kind": "once", "starts_at": soon(1), "ends_at": soon(2)}, ["name"]),
    ({"name": "x", "kind": "monthly"}, ["kind"]),
    ({"name": "x", "kind": "once"}, ["starts_at", "ends_at"]),
    ({"name": "x", "kind": "once", "starts_at": soon(2), "ends_at": soon(1)}, ["ends_at"]),
    ({"name": "x", "kind": "once", "starts_at": soon(-3), "ends_at": soon(-2)}, ["ends_at"]),
    ({"name": "x", "kind": "once", "starts_at": soon(1), "ends_at": soon(2), "weekdays": [1]}, ["weekdays"]),
    ({"name": "x", "kind": "once", "starts_at": "tomorrow", "ends_at": soon(2)}, ["starts_at"]),
    ({"name": "x", "kind": "weekly", "start_time": time(1), "end_time": time(2)}, ["weekdays"]),
    ({"name": "x", "kind": "weekly", "weekdays": [7], "start_time": time(1), "end_time": time(2)}, ["weekdays"]),
    ({"name": "x", "kind": "weekly", "weekdays": [True], "start_time": time(1), "end_time": time(2)}, ["weekdays"]),
    ({"name": "x", "kind": "weekly", "weekdays": [1]}, ["start_time", "end_time"]),
    ({"name": "x", "kind": "weekly", "weekdays": [1], "start_time": "25:00", "end_time": time(2)}, ["start_time"]),
    ({"name": "x", "kind": "weekly", "weekdays": [1], "start_time": time(1), "end_time": time(2),
      "starts_at": soon(1)}, ["starts_at"]),
    ({"name": "x", "kind": "weekly", "weekdays": [1], "start_time": time(1), "end_time": time(2),
      "timezone": "Mars/Olympus"}, ["timezone"]),
    ({"name": "x", "kind": "weekly", "weekdays": [1], "start_time": time(1), "end_time": time(2), "color": "red"},
     ["color"]),
])
def test_bad_windows_are_refused_naming_the_fields(dev, maintainer, fields, errors):
    with pytest.raises(ValidationError) as caught:
        freeze.freeze_window_create(environment=dev, actor=maintainer, **fields)
    assert sorted(caught.value.message_dict) == sorted(errors)
    assert not FreezeWindow.objects.exists()


def test_text_and_times_without_an_offset_are_read_in_the_window_time_zone(dev, maintainer):
    window = freeze.freeze_window_create(environment=dev, actor=maintainer, name="x", kind="once",
                                         starts_at="2099-01-01T18:00", ends_at="2099-01-02T06:00",
                                         timezone="Europe/Berlin")
    assert window.starts_at == utc(2099, 1, 1, 17) and window.ends_at == utc(2099, 1, 2, 5)
    weekly_window = freeze.freeze_window_create(environment=dev, actor=maintainer, name="y", kind="weekly",
                                                weekdays=[5], start_time="22:00", end_time="06:00")
    assert (weekly_window.start_time, weekly_window.end_time, weekly_window.timezone) == (time(22), time(6), "UTC")
    assert freeze.summary(weekly_window) == "weekly, Sat 22:00 → 06:00 (next day) UTC"
    assert freeze.summary(window) == "once, 2099-01-01 18:00 → 2099-01-02 06:00 Europe/Berlin"


def test_an_environment_has_at_most_fifty_windows(dev, maintainer):
    FreezeWindow.objects.bulk_create(
        once(f"w{i}", soon(i + 1), soon(i + 2), dev) for i in range(freeze.MAX_WINDOWS))
    with pytest.raises(ValidationError) as caught:
        freeze.freeze_window_create(environment=dev, actor=maintainer, name="one more", kind="once",
                                    starts_at=soon(1), ends_at=soon(2))
    assert "50 freeze windows" in caught.value.messages[0]


def test_approval_settings_are_changed_by_maintainers(dev, maintainer, developer):
    updated = services.environment_update(environment=dev, actor=maintainer, required_approvals=2,
                                          approve_automatic=True)
    assert (updated.required_approvals, updated.approve_automatic) == (2, True)
    entry = AuditEntry.objects.get(action="environment.update", outcome="ok")
    assert entry.changes["before"]["required_approvals"] == 0 and entry.changes["after"]["required_approvals"] == 2
    with pytest.raises(ValidationError) as caught:
        services.environment_update(environment=dev, actor=maintainer, required_approvals=11)
    assert "required_approvals" in caught.value.message_dict
    with pytest.raises(PermissionDenied):
        services.environment_update(environment=dev, actor=developer, required_approvals=0)
    assert Resource.objects.count() == 0


# --- the admin -------------------------------------------------------------------------------------


def test_the_admin_writes_windows_through_the_service(admin_client, dev):
    from django.urls import reverse

    add = reverse("admin:environments_freezewindow_add")
    form = {"environment": dev.pk, "name": "Nights", "kind": "weekly", "weekdays": ["4", "5"], "start_time": "22:00",
            "end_time": "06:00", "timezone": "Mars/Olympus", "starts_at_0": "", "starts_at_1": "", "ends_at_0": "",
            "ends_at_1": ""}
    refused = admin_client.post(add, form)
    assert refused.status_code == 200 and "is not a time zone" in refused.content.decode()
    assert not FreezeWindow.objects.exists()
    assert admin_client.post(add, {**form, "timezone": "Europe/Berlin"}).status_code == 302
    window = FreezeWindow.objects.get()
    assert (window.weekdays, window.timezone) == ([4, 5], "Europe/Berlin")
    entry = AuditEntry.objects.get(action="freeze_window.create", outcome="ok")
    assert entry.via == "admin"
    listing = admin_client.get(reverse("admin:environments_freezewindow_changelist")).content.decode()
    assert "weekly, Fri, Sat 22:00 → 06:00 (next day) Europe/Berlin" in listing
    delete = reverse("admin:environments_freezewindow_delete", args=[window.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert AuditEntry.objects.filter(action="freeze_window.delete", via="admin", outcome="ok").exists()


def test_overrides_are_read_only_in_the_admin(admin_client, frozen_dev, dev_web, maintainer):
    from django.urls import reverse

    made = freeze.gate_person_change(resource=dev_web, actor=maintainer, to_digest=digest(2), override="hotfix")
    listing = admin_client.get(reverse("admin:environments_freezeoverride_changelist")).content.decode()
    assert "hotfix" in listing
    assert admin_client.get(reverse("admin:environments_freezeoverride_add")).status_code == 403
    page = admin_client.post(reverse("admin:environments_freezeoverride_change", args=[made.pk]), {"reason": "x"})
    assert page.status_code == 403
    made.refresh_from_db()
    assert made.reason == "hotfix"


def test_the_environment_admin_sets_the_approval_settings(admin_client, dev):
    from django.urls import reverse

    change = reverse("admin:environments_environment_change", args=[dev.pk])
    assert "required_approvals" in admin_client.get(change).content.decode()
    assert "required_approvals" not in admin_client.get(reverse("admin:environments_environment_add")).content.decode()
    response = admin_client.post(change, {"project": dev.project_id, "name": "dev", "slug": "dev",
                                          "cluster": dev.cluster_id, "namespace": dev.namespace, "position": 0,
                                          "required_approvals": 2, "approve_automatic": "on"})
    assert response.status_code == 302
    dev.refresh_from_db()
    assert (dev.required_approvals, dev.approve_automatic) == (2, True)
    refused = admin_client.post(change, {"project": dev.project_id, "name": "dev", "slug": "dev",
                                         "cluster": dev.cluster_id, "namespace": dev.namespace, "position": 0,
                                         "required_approvals": 11})
    assert refused.status_code == 200 and "less than or equal to 10" in refused.content.decode()
