"""The statements every reconcile makes, hand-written once per process.

A fan-out of reconciles is CPU-bound, and on this path Django building a
query costs more than the database answering it (the resource with its
environment, cluster, project and upstream: about 2 ms to compile and to
build the objects, 0.3 ms to run; an INSERT through Model.save, 0.5 ms). So
the reads and writes each reconcile makes are written here from the models'
own metadata (every concrete column: a new field needs nothing here) and
behave as the ORM's: instances come from `Model.from_db` with each value
through the converters the ORM applies (the backend's and the field's:
decrypting, JSON, SQLite's dates), and values go in through each field's
`pre_save` and `get_db_prep_save`. Reads also answer, in the same statement,
the yes/no questions that would otherwise cost a query of their own.

Nothing is cached but the SQL text: every statement sees the rows as they are.
No model signals are sent for the rows written here (none are connected to
these models).
"""

from __future__ import annotations

import threading
from collections import namedtuple
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from environments.models import Artifact, Binding, Cluster, EnvVar, Environment, FreezeWindow, Resource
from projects.models import Project

from .models import ProjectWebhook, Promotion

STATUS_FIELDS = ("digest", "sequence", "published_at", "first_published_at", "healthy_at")
StatusRow = namedtuple("StatusRow", STATUS_FIELDS)


class _Columns:
    """One model's columns in a hand-written SELECT, and the instance made of them."""

    def __init__(self, model, alias: str):
        self.model, self.alias = model, alias
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self.converters: list | None = None

    def sql(self) -> str:
        quote = connection.ops.quote_name
        return ", ".join(f"{self.alias}.{quote(f.column)}" for f in self.fields)

    def prepare(self) -> None:
        """The converters the ORM's compiler would apply to each column (get_converters)."""
        self.converters = []
        for index, field in enumerate(self.fields):
            column = field.get_col(self.alias)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                self.converters.append((index, found, column))

    def convert(self, values: tuple | list) -> list:
        values = list(values)
        for index, converters, column in self.converters:
            value = values[index]
            for convert in converters:
                value = convert(value, column, connection)
            values[index] = value
        return values

    def build(self, values: tuple | list):
        return self.model.from_db(connection.alias, self.attnames, self.convert(values))


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _status(alias: str) -> str:
    """A promotion's status as an expression, not the column: so PostgreSQL finds a resource's
    few promotions by its resource index, not through the status index, whose entries for
    the open statuses are mostly dead rows (every promotion passes through them); that plan
    cost milliseconds per reconcile in the fan-out benchmark."""
    return f"({alias}.{connection.ops.quote_name(Promotion._meta.get_field('status').column)} || '')"


class _Statements:
    """The SQL of both reads and the column sets they return, made once per database vendor."""

    def __init__(self):
        self.resource, self.environment = _Columns(Resource, "r"), _Columns(Environment, "e")
        self.cluster, self.project = _Columns(Cluster, "c"), _Columns(Project, "p")
        self.upstream, self.upstream_environment = _Columns(Resource, "u"), _Columns(Environment, "ue")
        self.load_columns = (self.resource, self.environment, self.cluster, self.project, self.upstream,
                             self.upstream_environment)
        for columns in self.load_columns:
            columns.prepare()
        latest = f"FROM {_table(Artifact)} a WHERE a.resource_id = r.id ORDER BY a.sequence DESC"
        self.load = (
            f"SELECT {', '.join(c.sql() for c in self.load_columns)}, "
            f"(SELECT a.id {latest} LIMIT 1), (SELECT a.digest {latest} LIMIT 1), "
            f"EXISTS(SELECT 1 FROM {_table(EnvVar)} v WHERE v.resource_id = r.id), "
            f"EXISTS(SELECT 1 FROM {_table(FreezeWindow)} w WHERE w.environment_id = e.id), "
            f"EXISTS(SELECT 1 FROM {_table(Promotion)} q WHERE q.resource_id = r.id AND {_status('q')} = %s) "
            f"FROM {_table(Resource)} r {{claimed}}"
            f"JOIN {_table(Environment)} e ON e.id = r.environment_id "
            f"JOIN {_table(Cluster)} c ON c.id = e.cluster_id "
            f"JOIN {_table(Project)} p ON p.id = e.project_id "
            f"LEFT JOIN {_table(Resource)} u ON u.id = r.promote_from_id "
            f"LEFT JOIN {_table(Environment)} ue ON ue.id = u.environment_id "
            f"WHERE r.id = %s"
        )
        open_ = ", ".join(["%s"] * len(Promotion.OPEN))
        meta, quote = Resource._meta, connection.ops.quote_name
        until, token = (quote(meta.get_field(name).column) for name in ("claimed_until", "claim_token"))
        self.claim = (f"UPDATE {_table(Resource)} SET {until} = %s, {token} = %s "
                      f"WHERE {quote(meta.pk.column)} = %s AND ({until} IS NULL OR {until} < %s)")
        # Claim and load in one statement where an UPDATE may sit in a WITH (PostgreSQL): the
        # SELECT sees the row as it was before the claim, which changed only the claim's columns.
        self.claim_and_load = None
        if connection.vendor == "postgresql":
            self.claim_and_load = (f"WITH claimed AS ({self.claim} RETURNING {quote(meta.pk.column)}) "
                                   + self.load.replace("{claimed}", "JOIN claimed ON claimed.id = r.id "))
        self.load = self.load.replace("{claimed}", "")
        self.lock = (
            f"SELECT {self.resource.sql()}, "
            f"EXISTS(SELECT 1 FROM {_table(Resource)} d WHERE d.promote_from_id = r.id AND d.binding = %s), "
            f"EXISTS(SELECT 1 FROM {_table(Promotion)} q WHERE q.resource_id = r.id AND {_status('q')} IN ({open_})), "
            f"EXISTS(SELECT 1 FROM {_table(ProjectWebhook)} h JOIN {_table(Environment)} he ON he.project_id = h.project_id "
            f"WHERE he.id = r.environment_id AND h.active = %s) "
            f"FROM {_table(Resource)} r WHERE r.id = %s"
        )
        if connection.features.has_select_for_update:
            # As select_for_update(no_key=True): see reconcile.record for why not FOR UPDATE.
            self.lock += " " + connection.ops.for_update_sql(no_key=connection.features.has_select_for_no_key_update)


        # The ImageSource status's artifacts (rollout.image_source_status): a resource's newest
        # healthy ones and those of one digest, newest first.
        self.status = _Columns(Artifact, "a")
        self.status.fields = [Artifact._meta.get_field(name) for name in STATUS_FIELDS]
        self.status.prepare()
        columns = ", ".join(f"a.{connection.ops.quote_name(f.column)}" for f in self.status.fields)
        self.status_sql = (f"SELECT {columns} FROM {_table(Artifact)} a WHERE a.resource_id = %s AND "
                           f"(a.digest = %s OR a.healthy_at IS NOT NULL) ORDER BY a.sequence DESC LIMIT %s")
        self.status_digest_sql = (f"SELECT {columns} FROM {_table(Artifact)} a WHERE a.resource_id = %s AND "
                                  f"a.digest = %s ORDER BY a.sequence DESC LIMIT 1")


_statements: dict[str, _Statements] = {}
_statements_lock = threading.Lock()


def _sql() -> _Statements:
    with _statements_lock:
        made = _statements.get(connection.vendor)
        if made is None:
            made = _statements[connection.vendor] = _Statements()
        return made


@dataclass(frozen=True)
class Loaded:
    resource: Resource  # with environment (its cluster and project) and upstream (its environment)
    latest_artifact: tuple[int, str] | None  # the resource's own newest artifact: (id, digest)
    has_env_vars: bool
    has_freeze_windows: bool  # its environment has freeze windows
    has_queued: bool  # it has a promotion queued


def load(resource_id: int) -> Loaded | None:
    """The resource as a reconcile reads it right after claiming it (None if it is gone).

    Instead of the upstream's cluster, the upstream's environment gets the resource's own
    cluster object when it is the same cluster (a cross-cluster upstream's is read when used).
    """
    statements = _sql()
    with connection.cursor() as cursor:
        cursor.execute(statements.load, [Promotion.Status.QUEUED, resource_id])
        row = cursor.fetchone()
    return _loaded(statements, row) if row is not None else None


def claim_and_load(resource_id: int, token: str, now: datetime, until: datetime) -> tuple[bool, Loaded | None]:
    """claim(), then load() if it was taken: (taken, loaded). One statement on PostgreSQL."""
    statements = _sql()
    if statements.claim_and_load is None:
        if not claim(resource_id, token, now, until):
            return False, None
        return True, load(resource_id)
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(statements.claim_and_load,
                       [adapt(until), token, resource_id, adapt(now), Promotion.Status.QUEUED, resource_id])
        row = cursor.fetchone()
    if row is None:
        return False, None
    loaded = _loaded(statements, row)
    loaded.resource.claimed_until, loaded.resource.claim_token = until, token  # as the row holds them now
    return True, loaded


def _loaded(statements: "_Statements", row) -> Loaded:
    parts, start = [], 0
    for columns in statements.load_columns:
        parts.append(row[start:start + len(columns.fields)])
        start += len(columns.fields)
    resource = statements.resource.build(parts[0])
    environment = statements.environment.build(parts[1])
    environment.cluster = statements.cluster.build(parts[2])
    environment.project = statements.project.build(parts[3])
    resource.environment = environment
    if parts[4][0] is not None:  # the upstream's id: LEFT JOINs give NULLs without one
        upstream = statements.upstream.build(parts[4])
        upstream.environment = statements.upstream_environment.build(parts[5])
        if upstream.environment.cluster_id == environment.cluster_id:
            upstream.environment.cluster = environment.cluster
        resource.promote_from = upstream
    latest_id, latest_digest, env_vars, windows, queued = row[start:]
    return Loaded(resource, (latest_id, latest_digest) if latest_id is not None else None,
                  bool(env_vars), bool(windows), bool(queued))


@dataclass(frozen=True)
class Locked:
    resource: Resource  # the row, locked until the transaction ends
    followed: bool  # some resource tracks its latest
    has_open: bool  # it has promotions queued, applying or rolling out
    hooked: bool  # its project has an active webhook


def lock(resource_id: int) -> Locked | None:
    """The resource row locked for this transaction (FOR NO KEY UPDATE), with what the
    statement also saw; None if it is gone."""
    statements = _sql()
    with connection.cursor() as cursor:
        cursor.execute(statements.lock, [Binding.TRACK_LATEST, *Promotion.OPEN, True, resource_id])
        row = cursor.fetchone()
    if row is None:
        return None
    return Locked(statements.resource.build(row[:-3]), *(bool(flag) for flag in row[-3:]))


def known_empty(instance, related_name: str) -> None:
    """Mark a reverse relation of `instance` read and empty, as a prefetch of it would: code that
    asks for `instance.<related_name>.all()` gets [] without a query."""
    rel = getattr(type(instance), related_name).rel
    cache_name = rel.cache_name if hasattr(rel, "cache_name") else rel.get_cache_name()
    empty = rel.related_model.objects.none()
    empty._result_cache, empty._prefetch_done = [], True
    if not hasattr(instance, "_prefetched_objects_cache"):
        instance._prefetched_objects_cache = {}
    instance._prefetched_objects_cache[cache_name] = empty


def status_artifacts(resource_id: int, digest: str, limit: int) -> list[StatusRow]:
    """The resource's newest artifacts that are healthy or carry `digest`, newest first."""
    statements = _sql()
    with connection.cursor() as cursor:
        cursor.execute(statements.status_sql, [resource_id, digest, limit])
        return [StatusRow(*statements.status.convert(row)) for row in cursor.fetchall()]


def newest_artifact(resource_id: int, digest: str) -> StatusRow | None:
    """The resource's newest artifact of `digest`."""
    statements = _sql()
    with connection.cursor() as cursor:
        cursor.execute(statements.status_digest_sql, [resource_id, digest])
        row = cursor.fetchone()
    return StatusRow(*statements.status.convert(row)) if row is not None else None


def _insert_parts(instance) -> tuple[list, list, list]:
    """The columns and values `instance.save(force_insert=True)` would write, and what it reads back."""
    meta = type(instance)._meta
    pk_set = instance._is_pk_set(meta)
    fields = [f for f in meta.local_concrete_fields if not f.generated and (pk_set or f is not meta.auto_field)]
    values = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    return fields, values, meta.db_returning_fields


def _inserted(instance, returning: list, row) -> None:
    meta = type(instance)._meta
    for field, value in zip(returning, row):
        for convert in field.get_db_converters(connection):
            value = convert(value, field.get_col(meta.db_table), connection)
        setattr(instance, field.attname, value)
    instance._state.adding, instance._state.db = False, connection.alias


def insert(instance) -> None:
    """INSERT a new model instance, as `instance.save(force_insert=True)` does (auto_now_add and
    the other `pre_save` values included); its primary key is set from the database."""
    model, meta = type(instance), type(instance)._meta
    if not connection.features.can_return_columns_from_insert or meta.parents:
        instance.save(force_insert=True)
        return
    fields, values, returning = _insert_parts(instance)
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {_table(model)} ({', '.join(quote(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {', '.join(quote(f.column) for f in returning)}")
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        _inserted(instance, returning, cursor.fetchone())


def publish(artifact: Artifact, token: str | None) -> bool:
    """Take the next sequence of the artifact's resource (only while `token` holds its claim,
    when given) and insert the artifact with it; False, writing nothing, when the claim is no
    longer that holder's. One statement on PostgreSQL (an UPDATE inside the INSERT's WITH),
    two elsewhere (UPDATE … RETURNING, then the INSERT: a gap in the sequence if the second
    failed, which nothing minds: order is all a sequence promises)."""
    meta, quote = Resource._meta, connection.ops.quote_name
    seq_column = quote(meta.get_field("artifact_seq").column)
    take = f"UPDATE {_table(Resource)} SET {seq_column} = {seq_column} + 1 WHERE {quote(meta.pk.column)} = %s"
    params: list = [artifact.resource_id]
    if token is not None:
        take += f" AND {quote(meta.get_field('claim_token').column)} = %s"
        params.append(token)
    take += f" RETURNING {seq_column}"
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(take, params)
            row = cursor.fetchone()
        if row is None:
            return False
        artifact.sequence = row[0]
        insert(artifact)
        return True
    artifact.sequence = 0  # replaced by the one taken, in the statement
    fields, values, returning = _insert_parts(artifact)
    columns = [quote(f.column) for f in fields]
    selected = ["s.seq" if f.attname == "sequence" else "%s" for f in fields]
    values = [v for f, v in zip(fields, values) if f.attname != "sequence"]
    sql = (f"WITH s (seq) AS ({take}) INSERT INTO {_table(Artifact)} ({', '.join(columns)}) "
           f"SELECT {', '.join(selected)} FROM s RETURNING {', '.join(quote(f.column) for f in returning)}, "
           f"{quote(Artifact._meta.get_field('sequence').column)}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *values])
        row = cursor.fetchone()
    if row is None:
        return False
    _inserted(artifact, returning, row[:-1])
    artifact.sequence = row[-1]
    return True


def update(model, pk, changes: dict) -> int:
    """`model.objects.filter(pk=pk).update(**changes)` for plain values (no expressions);
    returns the number of rows changed."""
    meta = model._meta
    fields = [meta.get_field(name) for name in changes]
    if any(hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save") for value in changes.values()) \
            or any(hasattr(field, "get_placeholder") for field in fields):
        return model.objects.filter(pk=pk).update(**changes)
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    values = [field.get_db_prep_save(value, connection) for field, value in zip(fields, changes.values())]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_table(model)} SET {assignments} WHERE {quote(meta.pk.column)} = %s",
                       [*values, meta.pk.get_db_prep_value(pk, connection)])
        return cursor.rowcount


def claim(resource_id: int, token: str, now: datetime, until: datetime) -> bool:
    """Take the resource's lease unless another holder's is still running (see reconcile.claim)."""
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(_sql().claim, [adapt(until), token, resource_id, adapt(now)])
        return cursor.rowcount == 1
