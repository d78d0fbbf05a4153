"""Credentials and secret values are encrypted in the database row."""

import io

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from environments import fields
from environments.models import Cluster, EnvVar, Resource


def raw(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_cluster_credentials_are_ciphertext_in_the_row(cluster_a):
    cluster_a.token = "eyJhbGciOi-super-secret-token"
    cluster_a.kubeconfig = "apiVersion: v1\nclusters: []\n"
    cluster_a.registry_password = "hunter2"
    cluster_a.save()
    for column, plain in [("token", "super-secret"), ("kubeconfig", "clusters"), ("registry_password", "hunter2")]:
        stored = raw("environments_cluster", column, cluster_a.pk)
        assert stored.startswith("fernet:")
        assert plain not in stored
    fresh = Cluster.objects.get(pk=cluster_a.pk)
    assert fresh.token == "eyJhbGciOi-super-secret-token"
    assert fresh.token_status == "set" and Cluster(token="").token_status == "not set"


def test_secret_env_and_database_url_are_ciphertext(dev, make_resource):
    resource = make_resource(dev, "api", database_url="postgres://app:pw@db/app", env=[{"name": "KEY", "value": "v4lue", "secret": True}])
    assert "pw@db" not in raw("environments_resource", "database_url", resource.pk)
    var = EnvVar.objects.get(resource=resource)
    assert "v4lue" not in raw("environments_envvar", "value", var.pk)
    assert Resource.objects.get(pk=resource.pk).database_url == "postgres://app:pw@db/app"


def test_empty_stays_empty_and_queryable(cluster_a):
    assert raw("environments_cluster", "token", cluster_a.pk) == ""
    assert Cluster.objects.filter(token="").exists()


def test_keys_rotate(cluster_a, settings):
    cluster_a.token = "tok"
    cluster_a.save()
    new_key = Fernet.generate_key().decode()
    settings.HOIST_CREDENTIALS_KEYS = [new_key, *settings.HOIST_CREDENTIALS_KEYS]
    assert Cluster.objects.get(pk=cluster_a.pk).token == "tok"  # old key still decrypts
    cluster_a.save()  # re-encrypts under the new first key
    settings.HOIST_CREDENTIALS_KEYS = [new_key]
    assert Cluster.objects.get(pk=cluster_a.pk).token == "tok"


def test_a_wrong_key_is_a_clear_configuration_error(cluster_a, settings):
    from django.core.exceptions import ImproperlyConfigured

    cluster_a.token = "tok"
    cluster_a.save()
    settings.HOIST_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted"):
        Cluster.objects.get(pk=cluster_a.pk)


def test_mask_says_only_set_or_not():
    assert fields.mask("x") == "set" and fields.mask("") == "not set"


def _under(column_table_pk, key: str) -> bool:
    """Whether the stored value decrypts with `key` alone."""
    table, column, pk = column_table_pk
    try:
        Fernet(key.encode()).decrypt(raw(table, column, pk)[len(fields.PREFIX):].encode())
        return True
    except Exception:
        return False


def test_rotate_credentials_re_encrypts_what_an_old_key_encrypted(cluster_a, dev, make_resource, settings):
    from django.core.management import call_command

    old = settings.HOIST_CREDENTIALS_KEYS[0]
    cluster_a.token = "tok"
    cluster_a.save()
    resource = make_resource(dev, "api", database_url="postgres://app:pw@db/app",
                             env=[{"name": "KEY", "value": "v4lue", "secret": True}])
    var = EnvVar.objects.get(resource=resource)
    updated_at = Resource.objects.get(pk=resource.pk).updated_at
    new = Fernet.generate_key().decode()
    settings.HOIST_CREDENTIALS_KEYS = [new, old]
    values = [("environments_cluster", "token", cluster_a.pk), ("environments_resource", "database_url", resource.pk),
              ("environments_envvar", "value", var.pk)]

    checked = fields.rotate(check=True)
    assert checked.rotated["environments.Cluster.token"] == 1 and checked.pending == 3
    assert all(_under(value, old) for value in values)  # a check changes nothing

    done = fields.rotate()
    assert done.pending == 3 and not done.unreadable
    assert all(_under(value, new) and not _under(value, old) for value in values)
    assert fields.rotate().pending == 0  # again: nothing left
    settings.HOIST_CREDENTIALS_KEYS = [new]  # the old key can go
    assert Cluster.objects.get(pk=cluster_a.pk).token == "tok"
    row = Resource.objects.get(pk=resource.pk)
    assert row.database_url == "postgres://app:pw@db/app" and row.updated_at == updated_at
    assert EnvVar.objects.get(pk=var.pk).value == "v4lue"
    call_command("rotate_credentials", "--check", stdout=io.StringIO())  # exits 0: nothing left


def test_rotate_credentials_check_fails_while_values_wait(cluster_a, settings):
    from django.core.management import CommandError, call_command

    cluster_a.token = "tok"
    cluster_a.save()
    settings.HOIST_CREDENTIALS_KEYS = [Fernet.generate_key().decode(), *settings.HOIST_CREDENTIALS_KEYS]
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 values are not under the first key"):
        call_command("rotate_credentials", "--check", stdout=out)
    assert "environments.Cluster.token: 0 under the first key, 1 to re-encrypt" in out.getvalue()
    call_command("rotate_credentials", stdout=out)
    assert "1 values re-encrypted" in out.getvalue()


def test_rotate_credentials_leaves_what_no_key_reads_and_says_where(cluster_a, settings):
    from django.core.management import CommandError, call_command

    cluster_a.token = "tok"
    cluster_a.save()
    stored = raw("environments_cluster", "token", cluster_a.pk)
    settings.HOIST_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]  # the old key was dropped too soon
    with pytest.raises(CommandError, match=rf"environments.Cluster.token ids {cluster_a.pk}\b.*Put the key"):
        call_command("rotate_credentials", stdout=io.StringIO())
    assert raw("environments_cluster", "token", cluster_a.pk) == stored  # untouched


def test_a_value_saved_during_rotation_is_not_overwritten(cluster_a, settings, monkeypatch):
    cluster_a.token = "tok"
    cluster_a.save()
    new = Fernet.generate_key().decode()
    settings.HOIST_CREDENTIALS_KEYS = [new, *settings.HOIST_CREDENTIALS_KEYS]
    real = fields.MultiFernet.rotate

    def saved_meanwhile(self, token):
        Cluster.objects.filter(pk=cluster_a.pk).update(token="changed")  # a person edits it now
        return real(self, token)

    monkeypatch.setattr(fields.MultiFernet, "rotate", saved_meanwhile)
    found = fields.rotate()
    assert found.pending == 0 and found.current["environments.Cluster.token"] == 1
    assert Cluster.objects.get(pk=cluster_a.pk).token == "changed"


def test_a_rotation_is_audited_with_counts_and_no_values(cluster_a, settings):
    from django.core.management import call_command

    from projects.models import AuditEntry

    cluster_a.token = "s3cret-value-xyz"
    cluster_a.save()
    settings.HOIST_CREDENTIALS_KEYS = [Fernet.generate_key().decode(), *settings.HOIST_CREDENTIALS_KEYS]
    before = AuditEntry.objects.filter(action="credentials.rotate").count()
    with pytest.raises(Exception):
        call_command("rotate_credentials", "--check", stdout=io.StringIO())
    assert AuditEntry.objects.filter(action="credentials.rotate").count() == before  # a check writes nothing
    call_command("rotate_credentials", stdout=io.StringIO())
    entry = AuditEntry.objects.filter(action="credentials.rotate").latest("id")
    assert (entry.via, entry.outcome, entry.target_repr) == ("command", "ok", "HOIST_CREDENTIALS_KEY")
    assert entry.changes["rotated"]["environments.Cluster.token"] == 1 and entry.changes["unreadable"] == {}
    assert "s3cret" not in str(entry.changes) and "fernet:" not in str(entry.changes)


def test_only_staff_may_rotate_credentials(cluster_a, settings, django_user_model):
    from django.core.exceptions import PermissionDenied

    from environments import services
    from projects.models import AuditEntry

    cluster_a.token = "tok"
    cluster_a.save()
    stored = raw("environments_cluster", "token", cluster_a.pk)
    settings.HOIST_CREDENTIALS_KEYS = [Fernet.generate_key().decode(), *settings.HOIST_CREDENTIALS_KEYS]
    user = django_user_model.objects.create_user("dev-person", password="x")
    with pytest.raises(PermissionDenied, match="Only staff operators may rotate credentials"):
        services.credentials_rotate(actor=user)
    assert raw("environments_cluster", "token", cluster_a.pk) == stored
    assert AuditEntry.objects.filter(action="credentials.rotate").latest("id").outcome == "refused"
