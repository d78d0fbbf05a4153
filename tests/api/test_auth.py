"""Token lifecycle through the API: Bearer/Token schemes, wrong, expired, revoked; created with a password only."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from projects import services
from projects.models import ApiToken
from tests.fixtures.api import assert_error, url


@pytest.fixture
def client_with(viewer):
    def make(key, scheme="Bearer"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"{scheme} {key}")
        return client

    return make


def test_it_accepts_bearer_and_token_schemes(viewer, project, client_with):
    _, key = services.token_create(user=viewer, name="ci")
    for scheme in ("Bearer", "Token", "bearer"):
        response = client_with(key, scheme).get(url("projects"))
        assert response.status_code == 200
        assert [p["slug"] for p in response.json()["results"]] == ["shop"]


def test_it_records_last_use(viewer, project, client_with):
    token, key = services.token_create(user=viewer, name="ci")
    assert token.last_used_at is None
    client_with(key).get(url("projects"))
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer a b", "Basic Zm9vOmJhcg==", "Bearer hoist_wrong"])
def test_missing_or_wrong_credentials_are_401(project, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(url("projects"))
    body = assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert body["code"] in {"not_authenticated", "authentication_failed"}


def test_an_expired_token_is_refused(viewer, project, client_with):
    token, key = services.token_create(user=viewer, name="ci", expires_at=timezone.now() + timedelta(hours=1))
    assert client_with(key).get(url("projects")).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    body = assert_error(client_with(key).get(url("projects")), 401)
    assert "expired" in body["detail"]


def test_a_revoked_token_is_refused(viewer, project, client_with):
    token, key = services.token_create(user=viewer, name="ci")
    client = client_with(key)
    assert client.delete(url("tokens", token.pk)).status_code == 204
    body = assert_error(client.get(url("projects")), 401)
    assert "revoked" in body["detail"]
    assert ApiToken.objects.get(pk=token.pk).state() == "revoked"


def test_an_inactive_users_token_is_refused(viewer, project, client_with):
    _, key = services.token_create(user=viewer, name="ci")
    viewer.is_active = False
    viewer.save()
    assert_error(client_with(key).get(url("projects")), 401)


def test_tokens_are_stored_hashed_and_shown_once(viewer):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic dmlld2VyOnB3LXZpZXdlcg==")  # viewer:pw-viewer
    response = client.post(url("tokens"), {"name": "deploys", "expires_at": None}, format="json")
    assert response.status_code == 201, response.json()
    key = response.json()["key"]
    assert key.startswith("hoist_") and len(key) > 40
    token = ApiToken.objects.get()
    assert token.key_hash != key and key not in str(token.__dict__)
    assert token.prefix == key[:12] == response.json()["prefix"]
    listed = client.get(url("tokens")).json()["results"]
    assert "key" not in listed[0] and listed[0]["state"] == "active"
    assert "key" not in client.get(url("tokens", token.pk)).json()


def test_a_token_cannot_create_tokens(viewer, client_with):
    _, key = services.token_create(user=viewer, name="ci")
    body = assert_error(client_with(key).post(url("tokens"), {"name": "more"}, format="json"), 403)
    assert "password" in body["detail"]


def test_a_wrong_password_is_401(viewer):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic dmlld2VyOm5vcGU=")  # viewer:nope
    assert_error(client.post(url("tokens"), {"name": "x"}, format="json"), 401)


def test_password_auth_is_only_for_tokens(viewer, project):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic dmlld2VyOnB3LXZpZXdlcg==")
    assert_error(client.get(url("projects")), 401)


@pytest.mark.parametrize("body, field", [
    ({}, "name"), ({"name": ""}, "name"), ({"name": 5}, "name"), ({"name": "x", "expires_at": "tomorrow"}, "expires_at"),
    ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"), ({"name": "x", "scope": "all"}, "scope"),
])
def test_token_creation_names_the_bad_field(viewer, body, field):
    client = APIClient()
    client.force_authenticate(viewer)  # a session, as the browser would have
    assert_error(client.post(url("tokens"), body, format="json"), 400, field)


def test_other_users_tokens_are_404(viewer, developer, client_with):
    theirs, _ = services.token_create(user=developer, name="theirs")
    _, key = services.token_create(user=viewer, name="mine")
    client = client_with(key)
    assert_error(client.get(url("tokens", theirs.pk)), 404)
    assert_error(client.delete(url("tokens", theirs.pk)), 404)
    assert_error(client.get(url("tokens", "not-a-number")), 404)
    assert ApiToken.objects.get(pk=theirs.pk).state() == "active"


def test_session_auth_needs_csrf(viewer, project):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(viewer)
    assert client.get(url("projects")).status_code == 200
    assert_error(client.post(url("tokens"), {"name": "x"}, format="json"), 403)


# --- login throttling (django-axes): HTTP Basic counts like the login page ---------------------


def basic(username: str, password: str, **extra) -> APIClient:
    import base64

    client = APIClient(**extra)
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{username}:{password}".encode()).decode())
    return client


def test_password_guesses_at_the_token_endpoint_lock_the_user_out(viewer):
    statuses = [basic("viewer", f"nope-{n}").post(url("tokens"), {"name": "x"}, format="json").status_code for n in range(4)]
    assert statuses == [401] * 4
    response = basic("viewer", "nope-5").post(url("tokens"), {"name": "x"}, format="json")
    body = assert_error(response, 429)
    assert body["code"] == "throttled" and "try again in 15 minutes" in body["detail"]
    assert 895 <= int(response["Retry-After"]) <= 900
    # The right password makes no token until the cool-off ends.
    assert_error(basic("viewer", "pw-viewer").post(url("tokens"), {"name": "x"}, format="json"), 429)
    assert not ApiToken.objects.exists()


def test_the_lockout_is_shared_with_the_login_page(viewer, client):
    for n in range(4):
        client.post("/login/", {"username": "viewer", "password": f"nope-{n}"})
    assert_error(basic("viewer", "nope").post(url("tokens"), {"name": "x"}, format="json"), 429)
    assert client.post("/login/", {"username": "viewer", "password": "pw-viewer"}).status_code == 429


def test_another_address_still_creates_tokens(viewer):
    for n in range(5):
        basic("viewer", f"nope-{n}").post(url("tokens"), {"name": "x"}, format="json")
    response = basic("viewer", "pw-viewer", REMOTE_ADDR="10.1.2.3").post(url("tokens"), {"name": "x"}, format="json")
    assert response.status_code == 201


@pytest.mark.parametrize("username", ["v" * 300, "viewer\u00e9", ""])
def test_odd_usernames_are_401_or_throttled_never_a_500(viewer, username):
    statuses = {basic(username, "nope").post(url("tokens"), {"name": "x"}, format="json").status_code for _ in range(6)}
    assert statuses <= {401, 429}
