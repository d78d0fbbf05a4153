"""Login throttling (django-axes): after 5 failed sign-ins a (username, address) pair is locked out
for 15 minutes, at the login page and the admin's login alike; the right password doesn't help
until the cool-off ends or an operator unlocks it."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone

LOGIN, ADMIN_LOGIN = "/login/", "/admin/login/"


def sign_in(client, username, password, url=LOGIN, **extra):
    return client.post(url, {"username": username, "password": password}, **extra)


def fail(client, username, times, url=LOGIN, **extra):
    return [sign_in(client, username, f"wrong-{n}", url, **extra).status_code for n in range(times)]


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


def test_it_locks_a_user_out_after_five_failures_with_a_clear_page(client, members):
    assert fail(client, "developer", 4) == [200] * 4  # the form again, with its error
    response = sign_in(client, "developer", "wrong-5")
    assert response.status_code == 429
    assert "registration/locked_out.html" in [t.name for t in response.templates]
    assert "base.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert "Sign-in paused" in html and "Try again in 15 minutes" in html
    assert 895 <= int(response["Retry-After"]) <= 900


def test_the_right_password_does_not_sign_in_while_locked_out(client, members):
    fail(client, "developer", 5)
    response = sign_in(client, "developer", "pw-developer")
    assert response.status_code == 429
    assert not signed_in(client)


def test_the_lock_lifts_when_the_cool_off_ends(client, members):
    fail(client, "developer", 5)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=14))
    assert sign_in(client, "developer", "pw-developer").status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert sign_in(client, "developer", "pw-developer").status_code == 302
    assert signed_in(client)


def test_it_counts_failures_per_user_and_address(client, members):
    fail(client, "developer", 5)
    # The same user from another address, and another user from this one, sign in as usual.
    elsewhere = Client(REMOTE_ADDR="10.0.0.9")
    assert sign_in(elsewhere, "developer", "pw-developer").status_code == 302
    assert sign_in(Client(), "viewer", "pw-viewer").status_code == 302


def test_a_successful_sign_in_forgets_earlier_failures(client, members):
    fail(client, "developer", 4)
    assert sign_in(client, "developer", "pw-developer").status_code == 302
    client.post("/logout/")
    assert fail(client, "developer", 4) == [200] * 4


def test_an_unknown_user_is_throttled_too(client, db):
    assert fail(client, "nobody", 5)[-1] == 429


def test_the_admin_login_is_throttled_with_the_same_count(client, members, make_user):
    make_user("root", is_staff=True, is_superuser=True)
    assert fail(client, "root", 3, ADMIN_LOGIN) == [200] * 3
    assert fail(client, "root", 1) == [200]  # the site's login page counts towards the same lock
    response = sign_in(client, "root", "wrong", ADMIN_LOGIN)
    assert response.status_code == 429
    assert 'href="/admin/login/"' in response.content.decode()
    assert sign_in(client, "root", "pw-root", ADMIN_LOGIN).status_code == 429
    assert client.get("/admin/").status_code == 302  # still not signed in


def test_an_operator_unlocks_a_user_with_the_command(client, members):
    fail(client, "developer", 5)
    call_command("axes_reset_username", "developer")
    assert sign_in(client, "developer", "pw-developer").status_code == 302


@override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_behind_the_proxy_the_address_is_the_one_the_proxy_saw(client, members):
    # The client writes what it likes before the entry the proxy appends: that can't reset the count.
    statuses = [sign_in(client, "developer", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.7").status_code
                for n in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}
    forged = sign_in(client, "developer", "pw-developer", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7")
    assert forged.status_code == 429
    # Another client of the proxy is another address.
    assert sign_in(Client(), "developer", "pw-developer", HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 302


def test_without_the_proxy_setting_forwarded_headers_are_ignored(client, members):
    statuses = [sign_in(client, "developer", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code for n in range(5)]
    assert statuses[-1] == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}


@pytest.mark.parametrize("body", [{"username": "developer"}, {"password": "x"}, {}])
def test_incomplete_sign_ins_are_form_errors_not_failures(client, members, body):
    for _ in range(6):
        assert client.post(LOGIN, body).status_code == 200
    assert sign_in(client, "developer", "pw-developer").status_code == 302


def test_an_oversized_username_is_counted_not_a_server_error(client, members):
    # Longer than axes' column (255): on PostgreSQL that would fail the insert.
    assert fail(client, "d" * 300, 5) == [200, 200, 200, 200, 429]
    assert set(AccessAttempt.objects.values_list("username", flat=True)) == {"d" * 255}
    assert sign_in(client, "developer", "pw-developer").status_code == 302
