"""Model fields that keep secrets encrypted at rest.

Values are encrypted with Fernet (AES-128-CBC + HMAC) under the keys in
settings.HOIST_CREDENTIALS_KEYS; the first key encrypts and every key
decrypts, so a key is rotated by prepending a new one, then re-encrypting what
the old ones encrypted (`manage.py rotate_credentials`, `rotate()` here). A
database dump alone never shows a token.
"""

from dataclasses import dataclass, field
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


@dataclass
class Rotation:
    """What rotate() found, by "app_label.Model.field": values already under the first key,
    values (re-)encrypted under it, and the primary keys of values no key decrypts."""

    current: dict[str, int] = field(default_factory=dict)
    rotated: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, list] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        """Values not under the first key yet (what a check counts, or a rotation just did)."""
        return sum(self.rotated.values())


def encrypted_fields() -> list[tuple[type[models.Model], "EncryptedTextField"]]:
    from django.apps import apps

    return [(model, f) for model in apps.get_models() for f in model._meta.concrete_fields
            if isinstance(f, EncryptedTextField)]


def rotate(*, check: bool = False, batch: int = 500) -> Rotation:
    """Re-encrypt under the first key of HOIST_CREDENTIALS_KEYS every stored value another key
    encrypted, so the old keys can be dropped. `check`: count them, change nothing.

    Each value is rewritten only if it is still the ciphertext read (a value saved meanwhile
    is already under the first key): running it while Hoist runs is safe, and running it again
    finds nothing to do. The rows are not saved through the model: no `updated_at` moves and
    no reconcile is queued, since no plain value changes. Called through
    services.credentials_rotate, which audits it.
    """
    from django.db.models import F, TextField, Value
    from django.db.models.functions import Cast

    keys = fernet()  # checks the keys: a malformed one is a configuration error, said once
    first = Fernet(settings.HOIST_CREDENTIALS_KEYS[0].encode())
    found = Rotation()
    for model, f in encrypted_fields():
        name = f"{model._meta.label}.{f.name}"
        current = rotated = 0
        unreadable: list = []
        # The stored text as it is (a cast, so the field's decryption does not run on it).
        stored = model._base_manager.annotate(stored=Cast(F(f.attname), output_field=TextField()))
        rows = stored.exclude(**{f.attname: ""}).exclude(**{f"{f.attname}__isnull": True}).order_by("pk")
        for pk, value in rows.values_list("pk", "stored").iterator(chunk_size=batch):
            token = value[len(PREFIX):].encode() if value.startswith(PREFIX) else None
            if token is None:
                unreadable.append(pk)
                continue
            try:
                first.decrypt(token)
                current += 1
                continue
            except InvalidToken:
                pass
            try:
                fresh = PREFIX + keys.rotate(token).decode()
            except InvalidToken:
                unreadable.append(pk)
                continue
            if check or stored.filter(pk=pk, stored=value).update(**{f.attname: Value(fresh, output_field=TextField())}):
                rotated += 1
            else:
                current += 1  # saved meanwhile, so under the first key
        found.current[name], found.rotated[name] = current, rotated
        if unreadable:
            found.unreadable[name] = unreadable
    return found
