"""Settings come from the environment; production refuses development defaults."""

import json
import secrets
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = (
    "import json, django; from django.conf import settings; "
    "print(json.dumps({'debug': settings.DEBUG, 'engine': settings.DATABASES['default']['ENGINE'], "
    "'name': settings.DATABASES['default']['NAME'], 'hosts': settings.ALLOWED_HOSTS, "
    "'keys': len(settings.HOIST_CREDENTIALS_KEYS), 'q': sorted(settings.Q_CLUSTER), 'secret': settings.SECRET_KEY}))"
)


def load(env: dict) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG", "SECRET_KEY", "HOIST_CREDENTIALS_KEY", "ALLOWED_HOSTS", "REDIS_URL"}}
    base["DJANGO_SETTINGS_MODULE"] = "config.settings"
    return subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_development_defaults_to_sqlite():
    result = load({"DEBUG": "true"})
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["debug"] is True and values["keys"] == 1
    assert "orm" in values["q"]


def test_production_reads_everything_from_the_environment():
    result = load({
        "DEBUG": "false", "SECRET_KEY": "s" * 60, "HOIST_CREDENTIALS_KEY": "k" * 43 + "=,x" + "y" * 42 + "=",
        "DATABASE_URL": "postgres://hoist:pw@db.internal:5432/hoist", "ALLOWED_HOSTS": "hoist.example.com, admin.example.com",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    })
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.postgresql" and values["name"] == "hoist"
    assert values["hosts"] == ["hoist.example.com", "admin.example.com"]
    assert values["keys"] == 2 and values["secret"] == "s" * 60
    assert "redis" in values["q"] and "orm" not in values["q"]


def test_production_refuses_to_start_without_a_secret_key():
    result = load({"DEBUG": "false", "HOIST_CREDENTIALS_KEY": "k" * 43 + "="})
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_a_credentials_key():
    result = load({"DEBUG": "false", "SECRET_KEY": "s" * 60})
    assert result.returncode != 0 and "HOIST_CREDENTIALS_KEY must be set" in result.stderr


def test_a_malformed_boolean_is_an_error_not_a_guess():
    result = load({"DEBUG": "maybe"})
    assert result.returncode != 0 and "DEBUG must be a boolean" in result.stderr


def test_deploy_checks_pass_with_production_settings():
    from cryptography.fernet import Fernet

    # DJANGO_ALLOW_ASYNC_UNSAFE: the browser tests set it in this process while Chromium runs.
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    env = {**base, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50),
           "HOIST_CREDENTIALS_KEY": Fernet.generate_key().decode(), "ALLOWED_HOSTS": "hoist.example.com"}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


LOGIN_PROBE = (
    "import json, django; from django.conf import settings; "
    "print(json.dumps({'limit': settings.AXES_FAILURE_LIMIT, 'hours': settings.AXES_COOLOFF_TIME, "
    "'backend': settings.AUTHENTICATION_BACKENDS[0], 'last': settings.MIDDLEWARE[-1]}))"
)


def load_login(env: dict) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HOIST_LOGIN_")}
    base.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "true"})
    return subprocess.run([sys.executable, "-c", LOGIN_PROBE], env={**base, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_login_throttling_defaults_to_five_failures_and_fifteen_minutes():
    values = json.loads(load_login({}).stdout)
    assert values == {"limit": 5, "hours": 0.25, "backend": "axes.backends.AxesStandaloneBackend",
                      "last": "axes.middleware.AxesMiddleware"}


def test_login_throttling_reads_the_environment():
    values = json.loads(load_login({"HOIST_LOGIN_FAILURE_LIMIT": "10", "HOIST_LOGIN_COOLOFF_MINUTES": "90"}).stdout)
    assert (values["limit"], values["hours"]) == (10, 1.5)


@pytest.mark.parametrize("env", [
    {"HOIST_LOGIN_FAILURE_LIMIT": "0"}, {"HOIST_LOGIN_FAILURE_LIMIT": "five"}, {"HOIST_LOGIN_FAILURE_LIMIT": "2.5"},
    {"HOIST_LOGIN_COOLOFF_MINUTES": "0"}, {"HOIST_LOGIN_COOLOFF_MINUTES": "-5"}, {"HOIST_LOGIN_COOLOFF_MINUTES": "nan"},
    {"HOIST_LOGIN_COOLOFF_MINUTES": "inf"},
])
def test_a_bad_login_throttling_setting_refuses_to_start(env):
    result = load_login(env)
    assert result.returncode != 0 and "HOIST_LOGIN_FAILURE_LIMIT must be a whole number" in result.stderr


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "nan", "inf", "2.5"])
def test_a_bad_number_names_its_variable(monkeypatch, raw):
    from django.core.exceptions import ImproperlyConfigured

    from config.settings import env_number

    monkeypatch.setenv("HOIST_REGISTRY_CONCURRENCY", raw)
    with pytest.raises(ImproperlyConfigured, match="HOIST_REGISTRY_CONCURRENCY must be a whole number of at least 1"):
        env_number("HOIST_REGISTRY_CONCURRENCY", 2, integer=True, minimum=1)


def test_numbers_come_from_the_environment(monkeypatch):
    from config.settings import env_number

    monkeypatch.setenv("HOIST_REGISTRY_DEADLINE_S", "7.5")
    assert env_number("HOIST_REGISTRY_DEADLINE_S", 20, minimum=0.1) == 7.5
    monkeypatch.delenv("HOIST_REGISTRY_DEADLINE_S")
    assert env_number("HOIST_REGISTRY_DEADLINE_S", 20, minimum=0.1) == 20
