"""promotions.rows: the reconcile's hand-written statements behave as the ORM's, on both databases,
and a fan-out reconcile stays within its budget of round trips."""

import weakref
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from environments import services, signals
from environments.models import Artifact, Binding, FreezeWindow, Resource
from promotions import notifications, reconcile, rollout, rows
from promotions.models import ProjectWebhook, Promotion
from tests.fixtures.domain import digest

IMAGE = "registry.a.example/shop/web"


@pytest.fixture
def web(dev, make_resource, clusters):
    return make_resource(dev, "web", image=f"{IMAGE}@{digest(1)}", ports=[8080], database_url="postgres://u:pw@db/shop",
                         env=[{"name": "MODE", "value": "dev"}])


@pytest.fixture
def api(staging, make_resource, web):
    return make_resource(staging, "api", upstream=web, ports=[8080])


def _same(a, b) -> None:
    for field in type(a)._meta.concrete_fields:
        assert getattr(a, field.attname) == getattr(b, field.attname), field.name


def test_load_reads_what_the_orm_reads_with_what_it_also_knows(api, web):
    loaded = rows.load(api.pk)
    orm = Resource.objects.select_related("environment__cluster", "environment__project",
                                          "promote_from__environment__cluster").get(pk=api.pk)
    _same(loaded.resource, orm)
    _same(loaded.resource.environment, orm.environment)
    _same(loaded.resource.environment.cluster, orm.environment.cluster)
    _same(loaded.resource.environment.project, orm.environment.project)
    _same(loaded.resource.promote_from, orm.promote_from)
    _same(loaded.resource.promote_from.environment, orm.promote_from.environment)
    # Same cluster: the upstream's environment shares the resource's cluster object.
    assert loaded.resource.promote_from.environment.cluster is loaded.resource.environment.cluster
    assert (loaded.latest_artifact, loaded.has_env_vars, loaded.has_freeze_windows) == (None, False, False)
    assert loaded.has_queued  # its first deploy is queued
    own = rows.load(web.pk)
    assert own.resource.promote_from is None and own.has_env_vars
    assert own.resource.database_url == "postgres://u:pw@db/shop"  # decrypted, as the ORM does
    assert own.resource.ports == web.ports  # JSON
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(api.pk)
    latest = Artifact.objects.filter(resource=api).order_by("-sequence").first()
    assert rows.load(api.pk).latest_artifact == (latest.pk, latest.digest)
    FreezeWindow.objects.create(environment=api.environment, name="w", kind=FreezeWindow.Kind.ONCE,
                                starts_at=timezone.now() + timedelta(days=1), ends_at=timezone.now() + timedelta(days=2))
    assert rows.load(api.pk).has_freeze_windows
    assert rows.load(10**9) is None


def test_lock_says_who_follows_what_is_open_and_whether_anyone_listens(api, web, project):
    with connection.cursor():
        pass
    from django.db import transaction

    with transaction.atomic():
        row = rows.lock(web.pk)
        _same(row.resource, Resource.objects.get(pk=web.pk))
        assert (row.followed, row.has_open, row.hooked) == (True, True, False)
        assert (rows.lock(api.pk).followed, rows.lock(10**9)) == (False, None)
    ProjectWebhook.objects.create(project=project, name="ops", url="https://hooks.example.com/x", secret="s" * 32,
                                  format=ProjectWebhook.Format.HOIST)
    Promotion.objects.filter(resource=web).update(status=Promotion.Status.HEALTHY)
    with transaction.atomic():
        row = rows.lock(web.pk)
        assert (row.has_open, row.hooked) == (False, True)


def test_insert_and_update_write_what_save_and_update_write(web):
    before = timezone.now()
    artifact = Artifact(resource=web, sequence=7, repository=IMAGE, digest=digest(7), origin=Artifact.Origin.PROMOTION,
                        first_published_at=before)
    rows.insert(artifact)
    stored = Artifact.objects.get(pk=artifact.pk)
    _same(artifact, stored)
    assert stored.published_at >= before  # auto_now_add, as save() sets it
    assert not artifact._state.adding
    now = timezone.now()
    assert rows.update(Resource, web.pk, {"phase": "ready", "message": "", "healthy_at": now, "applied_versions": {"Service": "rv1"},
                                          "claim_token": "", "claimed_until": None}) == 1
    web.refresh_from_db()
    assert (web.phase, web.healthy_at, web.applied_versions, web.claimed_until) == ("ready", now, {"Service": "rv1"}, None)
    assert rows.update(Resource, 10**9, {"message": "x"}) == 0


def test_claim_takes_a_free_or_lapsed_lease_only(web):
    now = timezone.now()
    assert rows.claim(web.pk, "one", now, now + timedelta(seconds=5))
    assert not rows.claim(web.pk, "two", now, now + timedelta(seconds=5))
    later = now + timedelta(seconds=6)
    assert rows.claim(web.pk, "three", later, later + timedelta(seconds=5))
    web.refresh_from_db()
    assert web.claim_token == "three"


def test_status_artifacts_are_the_newest_healthy_or_of_the_digest(web):
    now = timezone.now()
    for sequence in range(11, 16):
        Artifact.objects.create(resource=web, sequence=sequence, repository=IMAGE, digest=digest(sequence % 2),
                                origin=Artifact.Origin.API, first_published_at=now,
                                healthy_at=now if sequence in (12, 13) else None)
    found = rows.status_artifacts(web.pk, digest(1), 3)
    assert [(a.sequence, a.digest) for a in found] == [(15, digest(1)), (13, digest(1)), (12, digest(0))]
    assert found[1].healthy_at == now and found[0].healthy_at is None and found[0].published_at is not None
    assert rows.newest_artifact(web.pk, digest(0)).sequence == 14
    assert rows.newest_artifact(web.pk, digest(9)) is None


def test_known_empty_answers_without_a_query(web):
    environment = rows.load(web.pk).resource.environment
    rows.known_empty(environment, "freeze_windows")
    with CaptureQueriesContext(connection) as queries:
        assert list(environment.freeze_windows.all()) == []
    assert len(queries) == 0


def test_promotion_events_have_no_listener_but_the_webhooks():
    """A reconcile skips announcing when its project has no active webhook (rows.Locked.hooked):
    right only while promotions.notifications is the one listener. A new listener must revisit it."""
    listeners = [receiver for _, receiver, *_ in signals.event_happened.receivers]
    resolved = [r() if isinstance(r, weakref.ReferenceType) else r for r in listeners]
    assert resolved == [notifications.notify]


def test_a_fan_out_reconcile_stays_within_its_round_trips(api, web, clusters):
    """A track-latest dependant on the same cluster, applied a new digest: claim, load, the
    upstream's record of the publish (shared by a fan-out's batch), publish its own artifact (2),
    the status's artifacts, lock, its promotion, its row: 9 (21 before this was counted). Its
    first deploy (queued promotion, no artifact yet) costs a few more."""
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(api.pk)
    services.artifact_publish(resource=web, digest=digest(2), origin="api")
    reconcile.reconcile_resource(web.pk)
    with CaptureQueriesContext(connection) as queries:
        outcome = reconcile.reconcile_resource(api.pk)
    # The test's own transaction makes the record's a savepoint: not a round trip in production.
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= 9, "\n".join(statements)
    assert outcome.changed and outcome.health == rollout.HEALTHY
    api.refresh_from_db()
    assert (api.current_digest, api.phase, api.claim_token, api.dirty_at) == (digest(2), "ready", "", None)
    promotion = Promotion.objects.filter(resource=api, to_digest=digest(2)).get()
    assert promotion.status == Promotion.Status.HEALTHY and promotion.healthy_at and promotion.applied_at
    assert promotion.healthy_latency_s is not None
    artifact = Artifact.objects.filter(resource=api).order_by("-sequence").first()
    assert artifact.digest == digest(2) and artifact.healthy_at is not None


def test_a_project_with_webhooks_still_hears_of_each_healthy_rollout(api, web, clusters, project, events):
    ProjectWebhook.objects.create(project=project, name="ops", url="https://hooks.example.com/x", secret="s" * 32,
                                  format=ProjectWebhook.Format.HOIST)
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(api.pk)
    healthy = [data for event, data in events if event == "promotion.healthy"]
    assert {d["resource"] for d in healthy} == {"web", "api"}
    assert all(d["promotion_id"] for d in healthy)


def test_without_webhooks_nothing_is_announced(api, web, clusters, events):
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(api.pk)
    assert [event for event, _ in events if event == "promotion.healthy"] == []
    assert Resource.objects.get(pk=api.pk).phase == "ready"


def test_a_change_while_recording_keeps_the_resource_dirty(api, web, clusters, monkeypatch):
    """The record gives the claim back in its own UPDATE only if nothing changed since the claim."""
    reconcile.reconcile_resource(web.pk)
    queued = []
    monkeypatch.setattr(reconcile.queue, "enqueue_reconcile", lambda pk, **kw: queued.append(pk))
    real = reconcile.apply_objects

    def meanwhile(*args, **kwargs):
        Resource.objects.filter(pk=api.pk).update(dirty_at=timezone.now())
        return real(*args, **kwargs)

    monkeypatch.setattr(reconcile, "apply_objects", meanwhile)
    reconcile.reconcile_resource(api.pk)
    api.refresh_from_db()
    assert api.dirty_at is not None and api.claim_token == "" and queued == [api.pk]
    assert api.current_digest == digest(1)


def test_a_pin_edit_promotion_is_written_healthy_in_one_go(staging, web, make_resource, clusters):
    pinned = make_resource(staging, "pinned", upstream=web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(pinned.pk)
    promotion = Promotion.objects.get(resource=pinned, to_digest=digest(1))
    assert promotion.status == Promotion.Status.HEALTHY and promotion.attempts == 1 and promotion.applied_at


def test_publish_takes_the_next_sequence_only_for_the_claims_holder(web):
    now = timezone.now()
    rows.claim(web.pk, "mine", now, now + timedelta(seconds=5))
    first = Artifact(resource=web, repository=IMAGE, digest=digest(3), origin=Artifact.Origin.PROMOTION, first_published_at=now)
    assert rows.publish(first, "mine")
    web.refresh_from_db()
    assert first.pk and first.sequence == web.artifact_seq
    _same(first, Artifact.objects.get(pk=first.pk))
    lost = Artifact(resource=web, repository=IMAGE, digest=digest(4), origin=Artifact.Origin.PROMOTION, first_published_at=now)
    assert not rows.publish(lost, "someone-else") and lost.pk is None
    assert Resource.objects.get(pk=web.pk).artifact_seq == web.artifact_seq  # nothing taken
    unclaimed = Artifact(resource=web, repository=IMAGE, digest=digest(5), origin=Artifact.Origin.PROMOTION, first_published_at=now)
    assert rows.publish(unclaimed, None) and unclaimed.sequence == web.artifact_seq + 1


def test_claim_and_load_takes_the_lease_and_reads_the_row_as_it_now_is(api, web):
    now = timezone.now()
    taken, loaded = rows.claim_and_load(api.pk, "one", now, now + timedelta(seconds=5))
    assert taken and (loaded.resource.claim_token, loaded.resource.claimed_until) == ("one", now + timedelta(seconds=5))
    stored = Resource.objects.get(pk=api.pk)
    _same(loaded.resource, stored)
    assert loaded.resource.promote_from.pk == web.pk and loaded.has_queued
    assert rows.claim_and_load(api.pk, "two", now, now + timedelta(seconds=5)) == (False, None)
    later = now + timedelta(seconds=6)
    taken, loaded = rows.claim_and_load(api.pk, "three", later, later + timedelta(seconds=5))
    assert taken and Resource.objects.get(pk=api.pk).claim_token == "three" == loaded.resource.claim_token
    assert rows.claim_and_load(10**9, "x", now, now) == (False, None)
