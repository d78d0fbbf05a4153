"""Issue 14 part 1: approvals of changes of what runs, through the service, the engine, the API, the pages and the admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from environments import services
from environments.models import Binding, ChangeRequest, Environment, Resource
from projects.models import AuditEntry
from promotions.models import Promotion
from tests.fixtures.api import api_client_for, assert_error, resource_url, url
from tests.fixtures.domain import digest

pytestmark = pytest.mark.django_db


@pytest.fixture
def prod_web(dev, staging, prod, make_resource):
    dev_web = make_resource(dev, "web", image="registry.example.com/shop/web@" + digest(1))
    services.artifact_publish(resource=dev_web, digest=digest(2))
    staging_web = make_resource(staging, upstream=dev_web)
    Resource.objects.filter(pk=staging_web.pk).update(current_digest=digest(2))  # as if reconciled
    staging_web.current_digest = digest(2)
    web = make_resource(prod, upstream=staging_web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    Environment.objects.filter(pk=prod.pk).update(required_approvals=2)
    web.environment.required_approvals = 2
    return web


def test_a_pin_edit_waits_for_two_other_maintainers_then_applies(prod_web, maintainers, events):
    asker, first, second = maintainers
    updated = services.resource_pin(resource=prod_web, digest=digest(2), actor=asker)
    change = updated.change_request
    assert change.status == ChangeRequest.Status.AWAITING and change.required == 2
    assert (change.kind, change.from_digest, change.to_digest) == ("pin_edit", "", digest(2))
    prod_web.refresh_from_db()
    assert prod_web.pinned_digest == digest(1)  # what runs doesn't change yet
    waiting = Promotion.objects.get(change_request=change)
    assert (waiting.status, waiting.actor) == (Promotion.Status.AWAITING_APPROVAL, asker)

    services.change_request_approve(request=change, actor=first)
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.AWAITING  # 1 of 2
    services.change_request_approve(request=change, actor=second, reason="looks good")
    change.refresh_from_db()
    prod_web.refresh_from_db()
    assert change.status == ChangeRequest.Status.APPLIED
    assert (prod_web.binding, prod_web.pinned_digest) == (Binding.PIN_DIGEST, digest(2))
    waiting.refresh_from_db()
    assert (waiting.status, waiting.reason, waiting.actor) == (Promotion.Status.QUEUED, "pin_edit", asker)
    assert [e for e, _ in events] == ["approval.requested", "approval.approved"]
    assert AuditEntry.objects.filter(action="change_request.approve", outcome="ok").count() == 2


def test_the_requester_and_non_maintainers_cannot_approve(prod_web, maintainers, members):
    change = services.resource_pin(resource=prod_web, digest=digest(2), actor=maintainers[0]).change_request
    with pytest.raises(ValidationError) as caught:
        services.change_request_approve(request=change, actor=maintainers[0])
    assert "another maintainer" in str(caught.value)
    for role in ("developer", "viewer"):
        with pytest.raises(PermissionDenied):
            services.change_request_approve(request=change, actor=members[role])
    services.change_request_approve(request=change, actor=maintainers[1])
    with pytest.raises(ValidationError) as caught:
        services.change_request_approve(request=change, actor=maintainers[1])
    assert "already decided" in str(caught.value)
    assert AuditEntry.objects.filter(action="change_request.approve", outcome="refused").count() == 4


def test_one_rejection_rejects_with_a_reason(prod_web, maintainers, events):
    change = services.resource_pin(resource=prod_web, digest=digest(2), actor=maintainers[0]).change_request
    with pytest.raises(ValidationError) as caught:
        services.change_request_reject(request=change, actor=maintainers[1], reason=" ")
    assert "reason" in caught.value.message_dict
    services.change_request_approve(request=change, actor=maintainers[1])
    services.change_request_reject(request=change, actor=maintainers[2], reason="not during the sale")
    change.refresh_from_db()
    assert (change.status, change.reason) == (ChangeRequest.Status.REJECTED, "not during the sale")
    assert Promotion.objects.get(change_request=change).status == Promotion.Status.REJECTED
    prod_web.refresh_from_db()
    assert prod_web.pinned_digest == digest(1)
    with pytest.raises(ValidationError):
        services.change_request_approve(request=change, actor=maintainers[2])
    assert events[-1][0] == "approval.rejected" and events[-1][1]["reason"] == "not during the sale"


def test_a_newer_request_supersedes_the_older(prod_web, maintainers):
    first = services.resource_pin(resource=prod_web, digest=digest(2), actor=maintainers[0]).change_request
    second = services.resource_pin(resource=prod_web, digest=digest(3), actor=maintainers[1]).change_request
    first.refresh_from_db()
    assert first.status == ChangeRequest.Status.SUPERSEDED
    assert Promotion.objects.get(change_request=first).status == Promotion.Status.SUPERSEDED
    assert second.status == ChangeRequest.Status.AWAITING
    with pytest.raises(ValidationError):
        services.change_request_approve(request=first, actor=maintainers[2])


def test_config_changes_in_the_same_edit_are_saved_at_once(prod_web, maintainers):
    updated = services.resource_update(resource=prod_web, actor=maintainers[0], pinned_digest=digest(2),
                                       binding=Binding.PIN_DIGEST, replicas=4)
    assert updated.change_request is not None
    prod_web.refresh_from_db()
    assert (prod_web.replicas, prod_web.pinned_digest) == (4, digest(1))


def test_switching_to_track_latest_and_one_click_promote_need_approval(prod_web, maintainers):
    change = services.resource_track_latest(resource=prod_web, actor=maintainers[0]).change_request
    assert change.kind == "track_latest"
    promote = services.resource_promote_upstream_current(resource=prod_web, actor=maintainers[0]).change_request
    assert promote.kind == "promote"
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.SUPERSEDED


def test_the_requester_may_cancel(prod_web, maintainers, members):
    change = services.resource_pin(resource=prod_web, digest=digest(2), actor=maintainers[0]).change_request
    with pytest.raises(PermissionDenied):
        services.change_request_cancel(request=change, actor=members["developer"])
    services.change_request_cancel(request=change, actor=maintainers[0])
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.CANCELLED


def test_environments_without_approvals_apply_at_once(staging, dev, make_resource, maintainers):
    dev_web = make_resource(dev, "web", image="registry.example.com/shop/web@" + digest(1))
    web = make_resource(staging, upstream=dev_web)
    updated = services.resource_pin(resource=web, digest=digest(1), actor=maintainers[0])
    assert updated.change_request is None and updated.pinned_digest == digest(1)


# --- the API ---------------------------------------------------------------------------------------


@pytest.fixture
def api_maintainers(maintainers):
    return [api_client_for(user) for user in maintainers]


def test_the_api_answers_202_with_the_request_and_decides_on_it(prod_web, prod, api_maintainers, api):
    asker, first, second = api_maintainers
    response = asker.patch(resource_url(prod, "web"), {"source": {"digest": digest(2)}}, format="json", HTTP_IF_MATCH="*")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "awaiting_approval" and body["change_request"]["to_digest"] == digest(2)
    pk = body["change_request"]["id"]
    listed = api["viewer"].get(url("projects", "shop", "approvals"), {"status": "awaiting"}).json()["results"]
    assert [r["id"] for r in listed] == [pk]
    assert_error(asker.post(url("projects", "shop", "approvals", pk, "approve"), {}, format="json"), 400, "request")
    assert api["developer"].post(url("projects", "shop", "approvals", pk, "approve"), {}, format="json").status_code == 403
    assert_error(first.post(url("projects", "shop", "approvals", pk, "reject"), {}, format="json"), 400, "reason")
    assert first.post(url("projects", "shop", "approvals", pk, "approve"), {"reason": "ok"}, format="json").json()["approvals"] == 1
    done = second.post(url("projects", "shop", "approvals", pk, "approve"), {}, format="json").json()
    assert done["status"] == "applied" and done["approvals"] == 2
    assert Resource.objects.get(pk=prod_web.pk).pinned_digest == digest(2)


def test_the_api_refuses_bad_filters_and_unknown_requests(api, prod_web):
    assert_error(api["viewer"].get(url("projects", "shop", "approvals"), {"status": "nope"}), 400, "status")
    assert api["viewer"].get(url("projects", "shop", "approvals", 999999)).status_code == 404
    assert api["outsider"].get(url("projects", "shop", "approvals")).status_code == 404
    assert_error(api["maintainer"].post(url("projects", "shop", "approvals", 1, "approve"), {"bogus": 1}, format="json"),
                 404)


# --- pages and the admin ----------------------------------------------------------------------------


def test_the_resource_page_and_the_pipeline_show_the_request_and_decide(client, prod_web, prod, maintainers):
    change = services.resource_pin(resource=prod_web, digest=digest(2), actor=maintainers[0]).change_request
    page_url = reverse("resource_detail", args=["shop", "prod", "web"])
    client.force_login(maintainers[0])
    page = client.get(page_url).content.decode()
    assert "Awaiting approval" in page and "another maintainer decides" in page
    pipeline = client.get(reverse("project_detail", args=["shop"])).content.decode()
    assert "awaiting approval" in pipeline
    client.force_login(maintainers[1])
    assert 'action="/projects/shop/approvals/' in client.get(page_url).content.decode()
    response = client.post(reverse("change_request_decide", args=["shop", change.pk, "approve"]), {"next": page_url})
    assert response.status_code == 302
    client.force_login(maintainers[2])
    response = client.post(reverse("change_request_decide", args=["shop", change.pk, "reject"]), {"reason": ""}, follow=True)
    assert "Say why" in response.content.decode()
    client.post(reverse("change_request_decide", args=["shop", change.pk, "approve"]), {"next": page_url})
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.APPLIED
    assert client.post(reverse("change_request_decide", args=["shop", change.pk, "explode"])).status_code == 404
    assert client.get(reverse("project_approvals", args=["shop"])).status_code == 200


def test_the_admin_decides_through_the_service(admin_client, prod_web, maintainers):
    change = services.resource_pin(resource=prod_web, digest=digest(2), actor=maintainers[0]).change_request
    change_url = reverse("admin:environments_changerequest_change", args=[change.pk])
    assert admin_client.get(reverse("admin:environments_changerequest_changelist")).status_code == 200
    assert admin_client.get(change_url).status_code == 200
    response = admin_client.post(change_url, {"decision": "reject", "reason": "", "freeze_override": ""})
    assert "Say why" in response.content.decode()
    response = admin_client.post(change_url, {"decision": "reject", "reason": "wrong build", "freeze_override": ""})
    assert response.status_code == 302
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.REJECTED
