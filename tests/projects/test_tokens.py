"""API tokens: the service, the page (created and revoked, shown once) and the admin."""

import re
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from projects import services
from projects.models import ApiToken, AuditEntry


def test_the_service_keeps_only_a_hash(viewer):
    token, key = services.token_create(user=viewer, name="ci")
    assert key.startswith("hoist_") and token.prefix == key[:12]
    assert services.token_for_key(key) == token
    assert services.token_for_key(key + "x") is None
    assert key not in {token.key_hash, token.prefix}


def test_the_service_refuses_bad_tokens(viewer, developer):
    with pytest.raises(ValidationError) as excinfo:
        services.token_create(user=viewer, name="", expires_at=timezone.now() - timedelta(days=1))
    assert {"name", "expires_at"} <= set(excinfo.value.message_dict)
    with pytest.raises(PermissionDenied):
        services.token_create(user=viewer, name="x", actor=developer)
    token, _ = services.token_create(user=viewer, name="x")
    with pytest.raises(PermissionDenied):
        services.token_revoke(token=token, actor=developer)


def test_states(viewer):
    token, _ = services.token_create(user=viewer, name="x", expires_at=timezone.now() + timedelta(days=1))
    assert token.state() == "active"
    assert token.state(now=timezone.now() + timedelta(days=2)) == "expired"
    services.token_revoke(token=token, actor=viewer)
    assert token.state() == "revoked"


def test_the_page_creates_shows_once_and_revokes(client, viewer):
    client.force_login(viewer)
    assert client.get("/tokens/").status_code == 200
    response = client.post("/tokens/", {"name": "laptop", "expires_in_days": "30"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    key = re.search(r'id="new-token">(hoist_[^<]+)<', response.content.decode()).group(1)
    token = ApiToken.objects.get(user=viewer)
    assert services.token_for_key(key) == token
    assert (token.expires_at - timezone.now()).days in (29, 30)
    assert key not in client.get("/tokens/").content.decode()  # shown once
    assert token.prefix in client.get("/tokens/").content.decode()
    response = client.post(f"/tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.state() == "revoked"
    assert list(AuditEntry.objects.values_list("action", "via").order_by("id")) == [("token.create", "web"), ("token.revoke", "web")]


def test_the_page_refuses_bad_input_and_others_tokens(client, viewer, developer):
    client.force_login(viewer)
    response = client.post("/tokens/", {"name": "", "expires_in_days": "5000"})
    assert response.status_code == 200 and not ApiToken.objects.exists()
    theirs, _ = services.token_create(user=developer, name="theirs")
    assert client.post(f"/tokens/{theirs.pk}/revoke/").status_code == 404
    assert client.get(f"/tokens/{theirs.pk}/revoke/").status_code in (404, 405)


def test_the_page_needs_a_login(client, db):
    assert client.get("/tokens/").status_code == 302


def test_the_admin_creates_shows_once_and_revokes(client, make_user, viewer):
    admin = make_user("boss", is_staff=True, is_superuser=True)
    client.force_login(admin)
    response = client.post("/admin/projects/apitoken/add/", {"user": viewer.pk, "name": "from admin", "expires_at_0": "", "expires_at_1": ""})
    assert response.status_code == 200, response.content[:500]
    key = re.search(r'id="new-token">(hoist_[^<]+)<', response.content.decode()).group(1)
    token = services.token_for_key(key)
    assert token.user == viewer and token.name == "from admin"
    assert client.get(f"/admin/projects/apitoken/{token.pk}/change/").status_code == 200
    assert key not in client.get("/admin/projects/apitoken/").content.decode()
    response = client.post("/admin/projects/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.state() == "revoked"
    assert AuditEntry.objects.filter(action="token.revoke", via="admin").exists()
    assert client.get("/admin/projects/auditentry/").status_code == 200
    entry = AuditEntry.objects.first()
    assert client.get(f"/admin/projects/auditentry/{entry.pk}/change/").status_code == 200
