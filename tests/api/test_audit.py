"""Every API write leaves an audit entry: who, with which token, what, when, from where; never a secret."""

from projects.models import ApiToken, AuditEntry
from tests.fixtures.api import resource_url


def test_an_api_write_is_audited_with_who_what_and_where(api, dev, developer):
    response = api["developer"].post(
        resource_url(dev), {"name": "api", "source": {"type": "image", "image": "a.example.com/b:1"},
                            "config": {"database_url": "postgres://u:TOPSECRET@h/d", "env": [{"name": "K", "value": "TOPSECRET", "secret": True}, {"name": "M", "value": "plain"}]}},
        format="json", HTTP_USER_AGENT="deploy-bot/1.0", REMOTE_ADDR="10.1.2.3",
    )
    assert response.status_code == 201
    entry = AuditEntry.objects.get(via="api")
    assert (entry.action, entry.actor, entry.project.slug, entry.target_type, entry.target_repr) == (
        "resource.create", developer, "shop", "resource", "shop/dev/api")
    assert entry.token == ApiToken.objects.get(user=developer)
    assert (entry.ip, entry.user_agent, entry.via) == ("10.1.2.3", "deploy-bot/1.0", "api")
    assert entry.created_at is not None
    assert "TOPSECRET" not in str(entry.changes)
    assert entry.outcome == "ok" and entry.changes["after"]["env"][1] == {"name": "M", "value": "plain", "secret": False}


def test_reads_are_not_audited_and_refusals_are(api, dev, dev_web):
    api["viewer"].get(resource_url(dev))
    assert not AuditEntry.objects.filter(via="api").exists()
    response = api["viewer"].post(resource_url(dev), {"name": "x"}, format="json")
    assert response.status_code == 403
    entry = AuditEntry.objects.get(via="api")
    assert (entry.action, entry.outcome, entry.message) == ("resource.create", "refused", response.json()["detail"])
    # A body of the wrong shape never reaches the service: a 400, not a write attempt.
    api["developer"].post(resource_url(dev), {"name": "x"}, format="json")
    assert AuditEntry.objects.filter(via="api").count() == 1
