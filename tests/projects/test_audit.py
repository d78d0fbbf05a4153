"""projects.audit.record: generic, and never stores a secret."""

from django.test import RequestFactory

from projects import audit
from projects.models import AuditEntry


def test_it_records_a_write_with_where_it_came_from(dev_web, developer):
    request = RequestFactory().post("/", REMOTE_ADDR="192.0.2.7", HTTP_USER_AGENT="curl/8")
    entry = audit.record(action="resource.update", actor=developer, target=dev_web, request=request, changes={"replicas": 2})
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
    assert audit.record(action="x", project=project, request=request).ip is None
