"""Model fields that keep secrets encrypted at rest.

Values are encrypted with Fernet (AES-128-CBC + HMAC) under the keys in
settings.HOIST_CREDENTIALS_KEYS; the first key encrypts and every key
decrypts, so a key can be rotated by prepending a new one and re-saving rows
(`manage.py rotate_credentials`). A database dump alone never shows a token.
"""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "HOIST_CREDENTIALS_KEY must hold url-safe base64 Fernet keys (32 bytes each)"
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.HOIST_CREDENTIALS_KEYS))


def encrypt(value: str) -> str:
    return PREFIX + fernet().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise ValueError("value is not encrypted")
    try:
        return fernet().decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "An encrypted value cannot be decrypted with HOIST_CREDENTIALS_KEY; was the key changed without rotation?"
        ) from exc


def mask(value: str) -> str:
    """What a page or an API may show of a secret: whether it is set, nothing more."""
    return "set" if value else "not set"


class EncryptedTextField(models.TextField):
    """A TextField stored as Fernet ciphertext; Python code sees plain text.

    Empty strings are stored empty so "not set" stays queryable without
    decrypting. Lookups other than exact-empty are meaningless on ciphertext.
    """

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
