"""Settings for the test suite: the real settings module, with development
defaults filled in where the environment leaves them out (DATABASE_URL is
still honoured, so CI runs the suite on PostgreSQL)."""

import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "hoist-test-secret-key-not-for-production-0123456789abcdef")

from .settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user fixtures
Q_CLUSTER = {**Q_CLUSTER, "sync": False}  # noqa: F405
