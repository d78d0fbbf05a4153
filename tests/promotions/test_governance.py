"""Issue 14: what the engine holds back: automatic track-latest changes awaiting approval (and freezes)."""

from __future__ import annotations

import pytest

from environments import services
from environments.models import ChangeRequest, Environment
from promotions import reconcile
from tests.fixtures.domain import digest

pytestmark = pytest.mark.django_db


def test_automatic_track_latest_waits_for_approval_when_the_environment_says_so(dev, staging, make_resource, clusters,
                                                                             maintainers, events):
    dev_web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    staging_web = make_resource(staging, upstream=dev_web, follow="published")
    reconcile.reconcile_resource(dev_web.pk)
    reconcile.reconcile_resource(staging_web.pk)
    staging_web.refresh_from_db()
    assert staging_web.current_digest == digest(1)  # the first deploy is not held
    Environment.objects.filter(pk=staging.pk).update(required_approvals=1, approve_automatic=True)

    services.artifact_publish(resource=dev_web, digest=digest(2))
    reconcile.reconcile_resource(dev_web.pk)
    reconcile.reconcile_resource(staging_web.pk)
    staging_web.refresh_from_db()
    assert staging_web.current_digest == digest(1)
    assert "awaiting approval (0/1)" in staging_web.message
    change = ChangeRequest.objects.get(resource=staging_web)
    assert (change.kind, change.to_digest, change.requested_by) == ("automatic", digest(2), None)
    reconcile.reconcile_resource(staging_web.pk)  # asking again makes no second request
    assert ChangeRequest.objects.filter(resource=staging_web).count() == 1

    services.change_request_approve(request=change, actor=maintainers[1])
    reconcile.reconcile_resource(staging_web.pk)
    staging_web.refresh_from_db()
    change.refresh_from_db()
    assert staging_web.current_digest == digest(2)
    assert change.status == ChangeRequest.Status.APPLIED
    assert [e for e, _ in events if e.startswith("approval.")] == ["approval.requested", "approval.approved"]


