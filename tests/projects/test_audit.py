"""projects.audit: one entry per write attempt, the door it came through, never a secret."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import RequestFactory

from core import doors
from projects import audit
from projects.models import AuditEntry


def test_it_records_a_write_with_where_it_came_from(dev_web, developer):
    request = RequestFactory().post("/", REMOTE_ADDR="192.0.2.7", HTTP_USER_AGENT="curl/8")
    with doors.door("web", request):
        entry = audit.record(action="resource.update", actor=developer, target=dev_web, changes={"replicas": 2})
    assert entry.via == "web"
    assert (entry.target_type, entry.target_id, entry.target_repr, entry.project.slug) == ("resource", str(dev_web.pk), "shop/dev/web", "shop")
    assert (entry.ip, entry.user_agent, entry.actor_label) == ("192.0.2.7", "curl/8", "developer")


def test_it_works_without_a_user_or_request(project):
    entry = audit.record(action="webhook.publish", target_type="artifact", target_id=7, target_repr="x", project=project, actor_label="registry")
    assert (entry.actor, entry.actor_label, entry.ip) == (None, "registry", None)


def test_it_redacts_secrets_wherever_they_are(project):
    entry = audit.record(action="x", project=project, changes={
        "config": {"database_url": "postgres://u:pw@h/d", "env": [{"name": "A", "value": "s", "secret": True}, {"name": "B", "value": "v"}]},
        "token": "t", "kubeconfig": "k", "registry_password": "p", "password": "pw", "name": "ok",
    })
    entry = AuditEntry.objects.get(pk=entry.pk)
    assert entry.changes == {
        "config": {"database_url": "***", "env": [{"name": "A", "value": "***", "secret": True}, {"name": "B", "value": "v"}]},
        "token": "***", "kubeconfig": "***", "registry_password": "***", "password": "***", "name": "ok",
    }


def test_a_bad_address_is_not_stored(project):
    request = RequestFactory().get("/", REMOTE_ADDR="not-an-ip")
    with doors.door("api", request):
        assert audit.record(action="x", project=project).ip is None


def test_an_attempt_writes_one_entry_inside_the_write(project, maintainer):
    with audit.attempt("x.update", actor=maintainer, target=project) as entry:
        entry.describe(before={"name": "a"}, after={"name": "b"})
        # A service called by this one adds no entry of its own.
        with audit.attempt("x.inner", actor=maintainer, target=project) as inner:
            inner.describe(after={"ignored": True})
    stored = AuditEntry.objects.get(action__startswith="x.")
    assert (stored.action, stored.outcome, stored.via) == ("x.update", "ok", "system")
    assert stored.changes == {"before": {"name": "a"}, "after": {"name": "b"}}


@pytest.mark.parametrize("error, message", [
    (PermissionDenied("You may not."), "You may not."),
    (ValidationError({"name": ["Too long."]}), "name: Too long."),
])
def test_a_refusal_rolls_the_write_back_and_is_recorded(project, maintainer, error, message):
    with pytest.raises(type(error)):
        with audit.attempt("project.update", actor=maintainer, target=project):
            project.name = "changed"
            project.save()
            raise error
    project.refresh_from_db()
    assert project.name != "changed"
    stored = AuditEntry.objects.get(action="project.update")
    assert (stored.outcome, stored.message) == ("refused", message)


def test_an_unexpected_error_is_recorded_as_failed(project):
    with pytest.raises(RuntimeError):
        with audit.attempt("project.update", target=project):
            raise RuntimeError("disk full")
    assert AuditEntry.objects.get(action="project.update").outcome == "failed"


def test_the_door_comes_from_the_url(rf):
    assert [doors.via_for_path(p) for p in ("/api/v1/x", "/admin/x", "/hooks/registry/", "/projects/")] == [
        "api", "admin", "webhook", "web"]
