"""Freeze windows end to end against the sandbox cluster: track-latest changes wait during a
freeze, the newest is applied at the thaw; a maintainer's override goes through at once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from environments import freeze, services, signals
from environments.models import Binding, FreezeWindow, Phase
from promotions import reconcile
from promotions.models import Promotion
from tests.fixtures.domain import digest

pytestmark = pytest.mark.django_db


def image_of(server, namespace, name):
    return server.get_object("apps/v1", "deployments", namespace, name)["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.fixture
def chain(dev, staging, make_resource, clusters):
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1), replicas=1)
    downstream = make_resource(staging, upstream=web, replicas=1, follow="published")
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(downstream.pk)
    downstream.refresh_from_db()
    assert downstream.current_digest == digest(1)
    return web, downstream


@pytest.fixture
def thaw_reconciles():
    asked = []

    def record(*, resource_ids, **_):
        asked.extend(resource_ids)

    signals.reconcile_requested.connect(record, weak=False, dispatch_uid="test-thaw")
    yield asked
    signals.reconcile_requested.disconnect(dispatch_uid="test-thaw")


def test_queued_track_latest_changes_wait_for_the_thaw_and_the_newest_is_applied(chain, staging, clusters, events,
                                                                                thaw_reconciles):
    web, downstream = chain
    now = timezone.now()
    window = FreezeWindow.objects.create(environment=staging, name="Release", kind="once",
                                         starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(hours=1))
    freeze.refresh()
    assert [e for e, _ in events if e.startswith("freeze.")] == ["freeze.started"]

    for n in (2, 3):  # two builds during the freeze
        services.artifact_publish(resource=web, digest=digest(n))
        reconcile.reconcile_resource(web.pk)
        assert reconcile.reconcile_resource(downstream.pk) is None  # held
    downstream.refresh_from_db()
    assert downstream.current_digest == digest(1) and downstream.phase == Phase.WAITING
    assert "frozen until" in downstream.message and "Release" in downstream.message
    assert image_of(clusters["a"], "shop-staging", "web").endswith(digest(1))

    FreezeWindow.objects.filter(pk=window.pk).update(ends_at=timezone.now())  # the window ends
    freeze.refresh()
    assert [e for e, _ in events if e.startswith("freeze.")] == ["freeze.started", "freeze.ended"]
    assert downstream.pk in thaw_reconciles
    reconcile.reconcile_resource(downstream.pk)
    downstream.refresh_from_db()
    assert downstream.current_digest == digest(3)  # the newest only, at once
    assert image_of(clusters["a"], "shop-staging", "web").endswith(digest(3))
    applied = Promotion.objects.filter(resource=downstream, applied_at__isnull=False).values_list("to_digest", flat=True)
    assert digest(2) not in applied and digest(3) in applied


def test_a_maintainer_override_goes_through_during_a_freeze(chain, staging, maintainer, clusters):
    web, downstream = chain
    services.artifact_publish(resource=web, digest=digest(2))
    reconcile.reconcile_resource(web.pk)
    now = timezone.now()
    FreezeWindow.objects.create(environment=staging, name="Release", kind="once",
                                starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(hours=1))
    services.resource_update(resource=downstream, actor=maintainer, binding=Binding.PIN_DIGEST,
                             pinned_digest=digest(2), freeze_override="customer hotfix")
    reconcile.reconcile_resource(downstream.pk)
    downstream.refresh_from_db()
    assert downstream.current_digest == digest(2)
    assert image_of(clusters["a"], "shop-staging", "web").endswith(digest(2))
