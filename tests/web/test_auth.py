"""Signing in and out; every page needs a signed-in user."""

import pytest


def test_it_shows_the_login_form_with_labels(client, db):
    response = client.get("/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<label for="id_username">' in html and '<label for="id_password">' in html


def test_it_signs_in_and_lands_on_the_project_list(client, members, project):
    response = client.post("/login/", {"username": "developer", "password": "pw-developer"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert "Shop" in client.get("/").content.decode()


def test_it_refuses_a_wrong_password_with_an_error(client, members):
    response = client.post("/login/", {"username": "developer", "password": "nope"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()


@pytest.mark.parametrize("url", ["/", "/projects/shop/", "/projects/shop/envs/dev/", "/projects/shop/promotions/"])
def test_pages_send_anonymous_users_to_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_it_signs_out_by_post(developer_client):
    response = developer_client.post("/logout/")
    assert response.status_code == 302
    assert developer_client.get("/").status_code == 302
