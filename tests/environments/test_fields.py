"""Credentials and secret values are encrypted in the database row."""

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
