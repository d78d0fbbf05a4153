"""Benchmarks behind `make bench`. `python -m bench` runs them all."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _postgres_url() -> str | None:
    """A fresh `hoist_bench` database on the local PostgreSQL, or None if there is none.

    When DATABASE_URL names a PostgreSQL database, `<that name>_bench` instead: two
    benchmark runs side by side then don't drop each other's database.
    """
    try:
        import psycopg
    except ImportError:
        return None
    base = os.environ.get("HOIST_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
    name = "hoist_bench"
    current = os.environ.get("DATABASE_URL", "")
    if current.startswith(("postgres://", "postgresql://")) and current.rpartition("/")[2].isidentifier():
        name = current.rpartition("/")[2] + "_bench"
    try:
        with psycopg.connect(base + "/postgres", autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error:
        return None
    return f"{base}/{name}"


def setup_django() -> str:
    """Configure Django on a fresh, migrated database; returns its URL.

    PostgreSQL when it runs here (several worker processes write at once, as
    in production), else a SQLite file. HOIST_BENCH_DATABASE_URL overrides.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DEBUG", "true")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    url = os.environ.get("HOIST_BENCH_DATABASE_URL") or _postgres_url()
    if not url:
        path = ROOT / "var" / "bench.sqlite3"
        path.parent.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    # The drift sweep would add load the figures should not include.
    from django_q.models import Schedule

    Schedule.objects.filter(name="hoist-drift-sweep").delete()
    return url


def hoist_env(**extra: str) -> dict:
    """The environment of a Hoist process a benchmark starts (workers, the observer): as
    production runs it, with DEBUG off (DEBUG wraps every cursor to keep a copy of each query:
    CPU a deployment doesn't spend), with this process's keys, and the loopback registries the
    benchmarks use allowed. HOIST_BENCH_WORKER_DEBUG=true keeps DEBUG on. Call after
    setup_django()."""
    env = {**os.environ, **extra}
    if os.environ.get("HOIST_BENCH_WORKER_DEBUG", "").lower() not in ("1", "true", "on", "yes"):
        from django.conf import settings

        env.update(DEBUG="false", SECRET_KEY=settings.SECRET_KEY, HOIST_CREDENTIALS_KEY=",".join(settings.HOIST_CREDENTIALS_KEYS),
                   HOIST_ALLOW_PRIVATE_REGISTRIES="true", ALLOWED_HOSTS="127.0.0.1,localhost")
    return env
