"""The API tokens page looks like the others (page head, cards, a "list" table, the shared form
field) and behaves as before: create (the key shown once), refuse bad input in place, revoke.
The behaviour itself is tests/projects/test_tokens.py; this is the page."""

import re

from projects import services
from projects.models import ApiToken


def test_it_is_laid_out_like_the_other_pages(viewer_client, viewer):
    services.token_create(user=viewer, name="ci")
    body = viewer_client.get("/tokens/").content.decode()
    assert '<div class="page-head">' in body and "<h1>API tokens</h1>" in body
    assert body.count('class="card"') >= 2 and '<table class="list">' in body
    assert '<label for="id_name">Name</label>' in body and 'aria-describedby="name-errors name-help"' in body
    assert '<label for="id_expires_in_days">Expires</label>' in body
    assert re.search(r'<button class="btn small" type="submit" aria-label="Revoke ci">Revoke</button>', body)
    assert '<span class="status status-active">active</span>' in body
    assert 'href="/api/redoc/"' in body and 'href="/api/docs/"' in body


def test_a_new_key_is_shown_once_in_its_own_card(viewer_client):
    response = viewer_client.post("/tokens/", {"name": "laptop", "expires_in_days": "30"})
    body = response.content.decode()
    key = re.search(r'<code id="new-token">(hoist_[^<]+)</code>', body).group(1)
    assert 'class="card key-once module" role="status"' in body and "Token laptop created" in body
    assert 'data-copy="new-token" hidden' in body  # hoist.js shows Copy where the clipboard can be written
    assert response["Cache-Control"] == "no-store"
    assert key not in viewer_client.get("/tokens/").content.decode()


def test_bad_input_is_shown_at_its_field_and_in_the_summary_keeping_what_was_chosen(viewer_client):
    body = viewer_client.post("/tokens/", {"name": "", "expires_in_days": "5000"}).content.decode()
    assert 'class="error-summary"' in body and "Pick an expiry from the list." in body
    assert re.search(r'<select id="id_expires_in_days"[^>]*aria-invalid="true"', body)
    body = viewer_client.post("/tokens/", {"name": "", "expires_in_days": "30"}).content.decode()
    assert 'id="name-errors"><p>' in body and 'aria-invalid="true"' in body
    assert '<option value="30" selected>' in body
    assert not ApiToken.objects.exists()
