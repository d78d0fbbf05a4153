"""The apiserver itself: routing of Kubernetes paths and every verb, no HTTP.

`KubeApi.handle(Request)` returns a `Response` (JSON body) or a
`WatchResponse` (event generator). The HTTP layer in server.py only moves
bytes. Write pipeline, mirroring the real request flow:

    decode (apiVersion/kind/name/namespace checks, unknown fields, JSON types)
    -> subresource rules (main endpoint keeps status, /status keeps the rest)
    -> defaults -> validation (422) -> preconditions / existence
    -> managedFields -> generation -> no-op detection -> store -> controllers
"""
from __future__ import annotations

import base64
import json
import random
import re
import time
import uuid
from dataclasses import dataclass, field

import yaml

# A \uD800–\uDFFF escape (a UTF-16 surrogate) not itself escaped ("\\u…" is a literal backslash).
SURROGATE_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[dD][89a-fA-F][0-9a-fA-F]{2}")

from . import apply as ssa
from . import defaults
from . import errors as E
from . import patch as P
from . import schema, validation
from .controller import DeploymentController
from .kinds import Registry
from .selectors import parse_field_selector, parse_label_selector
from .store import Store
from .util import clone

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
DEFAULT_WATCH_TIMEOUT = 1800
# How often a watch that asked for them (allowWatchBookmarks) gets a BOOKMARK (a real apiserver: ~1 min).
BOOKMARK_INTERVAL = 5.0
PATCH_TYPES_BUILTIN = ["application/json-patch+json", "application/merge-patch+json",
                       "application/strategic-merge-patch+json", "application/apply-patch+yaml"]
PATCH_TYPES_CUSTOM = ["application/json-patch+json", "application/merge-patch+json",
                      "application/apply-patch+yaml"]
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GIT_VERSION = "v" + schema.KUBE_VERSION


def now_ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Request:
    method: str
    path: str
    query: dict = field(default_factory=dict)  # name -> last value
    headers: dict = field(default_factory=dict)  # lower-cased names
    body: bytes = b""

    def header(self, name, default=""):
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    code: int
    body: object
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class WatchResponse:
    events: object  # callable(is_closed) -> iterator of event dicts
    headers: dict = field(default_factory=dict)


@dataclass
class Ctx:
    """Per-request options that shape a write."""
    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Warn"
    force: bool = False
    user_agent: str = ""
    warnings: list = field(default_factory=list)

    @property
    def manager(self) -> str:
        # Real default: the User-Agent up to the first "/" ("OpenAPI-Generator").
        return self.field_manager or (self.user_agent.split("/", 1)[0] if self.user_agent else "unknown")


def _truthy(value) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def _json_body(req: Request):
    if not req.body:
        raise E.bad_request("the body of the request was empty")
    try:
        return json.loads(req.body)
    except ValueError as exc:
        raise E.bad_request(f"couldn't get version/kind; json parse error: {exc}")


def _json_document(body: bytes | None) -> dict | None:
    """An apply body that is a JSON object (what clients send: JSON is YAML), read as JSON,
    several times faster than the YAML decoder; as the API server reads it too (its YAML
    decoder takes JSON numbers such as 1e3 as numbers, where PyYAML's YAML 1.1 makes a
    string of them). None for anything else (YAML proper, a JSON that isn't an object,
    NaN and the like), which the YAML decoder reads."""
    if not body or body.lstrip()[:1] != b"{":
        return None
    try:
        document = json.loads(body, parse_constant=_not_json)
    except ValueError:  # e.g. YAML flow style that isn't JSON
        return None
    return document if isinstance(document, dict) else None


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")


def _same_but_volatile(a: dict, b: dict) -> bool:
    """Whether two versions of an object are equal but for the resourceVersion and the
    managedFields timestamps (a write's no-op check), without copying either."""
    if a.keys() != b.keys() or any(a[k] != b[k] for k in a if k != "metadata"):
        return False
    ma, mb = a.get("metadata", {}), b.get("metadata", {})
    if not isinstance(ma, dict) or not isinstance(mb, dict):
        return ma == mb
    if {k for k in ma if k != "resourceVersion"} != {k for k in mb if k != "resourceVersion"}:
        return False
    if any(ma[k] != mb[k] for k in ma if k not in ("resourceVersion", "managedFields")):
        return False
    fa, fb = ma.get("managedFields"), mb.get("managedFields")
    if not isinstance(fa, list) or not isinstance(fb, list) or len(fa) != len(fb):
        return fa == fb
    for ea, eb in zip(fa, fb):
        if isinstance(ea, dict) and isinstance(eb, dict):
            if {k: v for k, v in ea.items() if k != "time"} != {k: v for k, v in eb.items() if k != "time"}:
                return False
        elif ea != eb:
            return False
    return True


class KubeApi:
    def __init__(self):
        self.store = Store()
        self.registry = Registry()
        self.controller = DeploymentController(self)
        self.warnings: list = []  # every Warning header sent (tests can assert none)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self):
        with self.store.lock:
            self.store.reset()
            self.registry.reset()
            self.controller.reset()
            self.warnings = []
            self._next_ip = 10
            self._next_node_port = 30000
            for ns in SYSTEM_NAMESPACES:
                self.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                                   manager="kube-apiserver")

    def _allocate_ip(self) -> str:
        self._next_ip += 1
        n = self._next_ip
        return f"10.96.{(n >> 8) & 255}.{n & 255}"

    def _allocate_node_port(self) -> int:
        self._next_node_port += 1
        return self._next_node_port

    def hold_rollouts(self, hold: bool):
        self.configure_rollouts(hold=hold)

    def configure_rollouts(self, hold=None, rollout_seconds=None, fail_images=None):
        """Change the deployment controller's switches (None = unchanged) and resync every deployment."""
        with self.store.lock:
            if not self.controller.configure(hold, rollout_seconds, fail_images):
                return
            rt = self.registry.lookup("apps", "v1", "deployments")
            deployments = self.store.list(rt.store_key)
            self.controller.forget_missing({d["metadata"]["uid"] for d in deployments})
            for dep in deployments:
                self.controller.sync(self, rt, dep, now_ts())

    # -------------------------------------------------------- python helpers
    def create_object(self, obj: dict, manager="sandbox"):
        """Create through the normal pipeline (validation included)."""
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        group, _, version = api_version.rpartition("/")
        rt = next((t for t in self.registry.all_types()
                   if t.group == group and t.version == version and t.kind == kind), None)
        if rt is None:
            raise E.path_not_found()
        ns = (obj.get("metadata") or {}).get("namespace") or ("default" if rt.namespaced else None)
        with self.store.lock:
            return self._create(rt, ns, obj, Ctx(field_manager=manager)).body

    def get_object(self, api_version, plural, namespace, name):
        group, _, version = api_version.rpartition("/")
        with self.store.lock:
            rt = self.registry.lookup(group, version, plural)
            if rt is None:
                return None
            obj = self.store.get(rt.store_key, namespace if rt.namespaced else None, name)
            return self._out(rt, obj) if obj else None

    def list_objects(self, api_version, plural, namespace=None) -> list:
        group, _, version = api_version.rpartition("/")
        with self.store.lock:
            rt = self.registry.lookup(group, version, plural)
            if rt is None:
                return []
            return [self._out(rt, o) for o in self.store.list(rt.store_key, namespace)]

    # --------------------------------------------------------------- routing
    def handle(self, req: Request):
        path = req.path.rstrip("/") or "/"
        if path == "/version":
            return Response(200, {"major": "1", "minor": GIT_VERSION.split(".")[1], "emulationMajor": "1",
                                  "emulationMinor": GIT_VERSION.split(".")[1], "gitVersion": GIT_VERSION,
                                  "gitCommit": "sandbox", "gitTreeState": "clean",
                                  "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.0",
                                  "compiler": "gc", "platform": "linux/amd64"})
        if path in ("/healthz", "/readyz", "/livez"):
            return Response(200, "ok", content_type="text/plain; charset=utf-8")
        if path == "/api":
            return Response(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": req.header("host", "127.0.0.1")}]})
        with self.store.lock:
            if path == "/apis":
                return Response(200, self.registry.api_group_list())
            parts = path.strip("/").split("/")
            if parts[0] == "api" and len(parts) >= 2 and parts[1] == "v1":
                group, version, rest = "", "v1", parts[2:]
            elif parts[0] == "apis" and len(parts) == 2:
                doc = self.registry.api_group(parts[1])
                if doc is None:
                    raise E.path_not_found()
                return Response(200, dict(kind="APIGroup", apiVersion="v1", **doc))
            elif parts[0] == "apis" and len(parts) >= 3:
                group, version, rest = parts[1], parts[2], parts[3:]
            else:
                raise E.path_not_found()
            if not rest:
                doc = self.registry.resource_list(group, version)
                if doc is None:
                    raise E.path_not_found()
                if req.method != "GET":
                    raise E.method_not_allowed()
                return Response(200, doc)
            return self._resource(req, group, version, rest)

    def _resource(self, req, group, version, rest):
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise E.path_not_found()
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        rt = self.registry.lookup(group, version, plural)
        if rt is None or (namespace is not None and not rt.namespaced):
            raise E.path_not_found()
        if rt.namespaced and namespace is None and name is not None:
            raise E.path_not_found()
        if sub and (sub != "status" or not rt.status_subresource):
            raise E.path_not_found()
        q = req.query
        dry = q.get("dryRun")
        if dry not in (None, "", "All"):
            raise E.bad_request(f'dryRun: Unsupported value: "{dry}": supported values: "All"')
        validation_mode = q.get("fieldValidation") or "Warn"
        if validation_mode not in ("Ignore", "Warn", "Strict"):
            raise E.bad_request(f'fieldValidation: Unsupported value: "{validation_mode}": supported values: '
                                f'"Ignore", "Strict", "Warn"')
        ctx = Ctx(dry_run=dry == "All", field_manager=q.get("fieldManager") or "",
                  field_validation=validation_mode, force=_truthy(q.get("force", "")),
                  user_agent=req.header("user-agent"))
        m = req.method
        if name is None:
            if m == "GET":
                if _truthy(q.get("watch", "")):
                    return self._watch(rt, namespace, q)
                return self._list(rt, namespace, q)
            if m == "POST":
                if rt.namespaced and namespace is None:
                    raise E.method_not_allowed()
                return self._with_warnings(self._create(rt, namespace, _json_body(req), ctx), ctx)
            if m == "DELETE":
                return self._delete_collection(rt, namespace, q, ctx)
            raise E.method_not_allowed()
        if m == "GET":
            return Response(200, self._out(rt, self._get_or_404(rt, namespace, name)))
        if m == "PUT":
            return self._with_warnings(self._update(rt, namespace, name, _json_body(req), ctx, sub), ctx)
        if m == "PATCH":
            return self._with_warnings(self._patch(rt, namespace, name, req, ctx, sub), ctx)
        if m == "DELETE" and not sub:
            return self._delete(rt, namespace, name, req, ctx)
        raise E.method_not_allowed()

    def _with_warnings(self, resp, ctx):
        if ctx.warnings:
            resp.headers["Warning"] = [f'299 - {json.dumps(w)}' for w in ctx.warnings]
            self.warnings.extend(ctx.warnings)
        return resp

    # ------------------------------------------------------------- reads
    def _get_or_404(self, rt, namespace, name):
        obj = self.store.get(rt.store_key, namespace if rt.namespaced else None, name)
        if obj is None:
            raise E.not_found(rt, name)
        return obj

    def _out(self, rt, obj):
        # A new top level only: what it shares is either a copy already (reads) or a stored
        # object, which nothing changes in place (writes store new objects), and answers are
        # only serialized.
        return {**obj, "apiVersion": rt.api_version, "kind": rt.kind}

    def _matching(self, rt, namespace, q) -> list:
        label = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), rt.store_key)
        return [o for o in self.store.list(rt.store_key, namespace)
                if label(o["metadata"].get("labels")) and fields(o)]

    def _list(self, rt, namespace, q):
        items = self._matching(rt, namespace, q)
        meta = {"resourceVersion": self.store.current_rv}
        start = 0
        if q.get("continue"):
            try:
                start = json.loads(base64.urlsafe_b64decode(q["continue"].encode()))["start"]
            except (ValueError, KeyError, TypeError):
                raise E.ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                                                 "consistent list result. You can start a new list without the "
                                                 "continue parameter.")
        limit = int(q.get("limit") or 0)
        page = items[start:start + limit] if limit > 0 else items[start:]
        if limit > 0 and start + limit < len(items):
            token = json.dumps({"start": start + limit, "rv": self.store.current_rv}).encode()
            meta["continue"] = base64.urlsafe_b64encode(token).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        out_items = []
        for obj in page:
            if rt.builtin:  # typed lists omit the per-item TypeMeta, like the real server
                obj.pop("apiVersion", None)
                obj.pop("kind", None)
            else:
                obj = self._out(rt, obj)
            out_items.append(obj)
        return Response(200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta,
                              "items": out_items})

    def _watch(self, rt, namespace, q):
        label = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), rt.store_key)
        try:
            timeout = float(q.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            raise E.bad_request(f'invalid timeoutSeconds: {q.get("timeoutSeconds")}')
        rv = q.get("resourceVersion") or ""
        if rv and rv != "0" and not rv.isdigit():
            raise E.bad_request(f'resourceVersion: Invalid value: "{rv}": must be a valid resource version')
        store = self.store

        def matches(obj):
            if obj is None:
                return False
            if namespace is not None and obj["metadata"].get("namespace") != namespace:
                return False
            return label(obj["metadata"].get("labels")) and fields(obj)

        bookmarks = _truthy(q.get("allowWatchBookmarks", ""))

        def bookmark(rv_now):
            # Only the resourceVersion is meaningful in a BOOKMARK (the object is otherwise empty).
            return {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version,
                                                   "metadata": {"resourceVersion": str(rv_now)}}}

        changed = store.watching(rt.store_key, namespace)  # woken by writes of what it watches only

        def events(is_closed):
            deadline = time.monotonic() + timeout
            with store.lock:
                epoch = store.epoch
                if rv in ("", "0"):
                    last = store.rv
                    initial = [{"type": "ADDED", "object": self._out(rt, o)}
                               for o in store.list(rt.store_key, namespace) if matches(o)]
                elif int(rv) < store.oldest_rv:
                    status = E.gone(f"too old resource version: {rv} ({store.oldest_rv})").status()
                    initial, last = [{"type": "ERROR", "object": status}], None
                else:
                    last, initial = int(rv), []
            yield from initial
            if last is None:
                return
            next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
            while not is_closed():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if bookmarks:
                        yield bookmark(last)  # where to resume, as the apiserver sends before closing
                    return
                if bookmarks and time.monotonic() >= next_bookmark:
                    next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
                    yield bookmark(last)
                with changed:
                    if store.epoch != epoch:
                        return  # reset(): end the stream like a restarted apiserver would
                    evs = store.events_after(last)
                    if not evs:
                        changed.wait(min(remaining, 0.2))
                        if store.epoch != epoch:
                            return
                        evs = store.events_after(last)
                    batch = []
                    for ev in evs:
                        last = ev.rv
                        if ev.key != rt.store_key:
                            continue
                        new_ok = matches(ev.obj) and ev.type != "DELETED"
                        old_ok = matches(ev.prev) if ev.type != "ADDED" else False
                        if ev.type == "DELETED":
                            etype = "DELETED" if matches(ev.obj) else None
                        elif new_ok and old_ok:
                            etype = "MODIFIED"
                        elif new_ok:
                            etype = "ADDED"
                        elif old_ok:
                            etype = "DELETED"
                        else:
                            etype = None
                        if etype:
                            batch.append({"type": etype, "object": self._out(rt, ev.obj)})
                yield from batch

        return WatchResponse(events)

    # ------------------------------------------------------------- writes
    def _decode(self, rt, body, namespace, name=None) -> dict:
        """Type-level checks of a client-sent object; returns a normalized copy."""
        if not isinstance(body, dict):
            raise E.bad_request(f"Object 'Kind' is missing in '{json.dumps(body)[:200]}'")
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if api_version and api_version != rt.api_version and not (
                not rt.builtin and api_version.rpartition("/")[0] == rt.group):
            raise E.bad_request(f"the API version in the data ({api_version}) does not match the expected API "
                                f"version ({rt.api_version})")
        if kind and kind != rt.kind:
            raise E.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        obj = clone(body)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise E.bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: '
                                f'cannot unmarshal {type(meta).__name__} into Go struct field '
                                f'{rt.kind}.metadata of type v1.ObjectMeta')
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise E.bad_request("the namespace of the provided object does not match the namespace sent "
                                    "on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if name is not None:
            if meta.get("name") and meta["name"] != name:
                raise E.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                    f"({name})")
            meta["name"] = name
        return obj

    def _prune(self, rt, obj, ctx):
        unknown = schema.prune_unknown(obj, rt.root_node())
        if not unknown:
            return
        messages = [f'unknown field "{schema.fmt_path(p)}"' for p in unknown]
        if ctx.field_validation == "Strict":
            raise E.bad_request("strict decoding error: " + ", ".join(messages))
        if ctx.field_validation == "Warn":
            ctx.warnings.extend(messages)

    def _apply_defaults(self, rt, obj):
        kind = rt.kind if rt.builtin else None
        if kind == "Deployment":
            defaults.deployment(obj)
        elif kind == "Service":
            defaults.service(obj, self._allocate_ip, self._allocate_node_port)
        elif kind == "Secret":
            defaults.secret(obj)
        elif kind == "Namespace":
            defaults.namespace(obj)
        elif kind == "Ingress":
            defaults.ingress(obj)
        elif kind == "CustomResourceDefinition":
            defaults.crd(obj)
        elif not rt.builtin and rt.crd_schema:
            schema.apply_crd_defaults(obj, rt.crd_schema)

    def _validate(self, rt, obj, old, pre_errors):
        if rt.builtin:
            errs = pre_errors + validation.SEMANTIC[rt.kind](obj, old)
        else:
            errs = validation.validate_custom(rt, obj)
        # Schema `required` and a semantic check may both report the same
        # missing field: keep one, preferring the one with a detail.
        by_key: dict = {}
        for e in errs:
            key = (e.field, e.type) if e.type == "Required" else (e.field, e.type, repr(e.value), e.detail)
            if key not in by_key or (e.detail and not by_key[key].detail):
                by_key[key] = e
        unique = list(by_key.values())
        if unique:
            raise E.invalid_object(rt, obj["metadata"].get("name", ""), unique)

    def _pre_validate(self, rt, obj) -> list:
        """Decode-stage checks: 400 for types/base64; returns schema `required` errors."""
        if rt.kind == "Secret" and rt.builtin:
            string_data = obj.pop("stringData", None) or {}
            if string_data:
                data = obj.setdefault("data", {}) or {}
                for key, value in string_data.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
                obj["data"] = data
        if not rt.builtin:
            return []
        errs = validation.schema_check(rt, obj)
        validation.decode_check(rt, obj)
        return errs

    def _which(self, rt, sub) -> str:
        if sub == "status":
            return "status"
        return "main" if rt.status_subresource else "all"

    def _namespace_must_exist(self, rt, namespace):
        if rt.namespaced and self.store.get(("", "namespaces"), None, namespace) is None:
            raise E.namespace_not_found(namespace)

    def _create(self, rt, namespace, body, ctx, applied_managed=False):
        obj = self._decode(rt, body, namespace)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choice(_NAME_ALPHABET) for _ in range(5))
            meta["name"] = meta["generateName"] + suffix
        if meta.get("resourceVersion") and not applied_managed:
            raise E.bad_request("resourceVersion should not be set on objects to be created")
        if not applied_managed:
            self._prune(rt, obj, ctx)
        self._namespace_must_exist(rt, namespace)
        if rt.status_subresource:
            obj.pop("status", None)  # PrepareForCreate: status is not settable on create
        for key in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(key, None)
        if not applied_managed:
            meta.pop("managedFields", None)
        meta["creationTimestamp"] = now_ts()
        if rt.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        pre = self._pre_validate(rt, obj)
        self._apply_defaults(rt, obj)
        self._validate(rt, obj, None, pre)
        if self.store.get(rt.store_key, namespace if rt.namespaced else None, meta["name"]) is not None:
            raise E.already_exists(rt, meta["name"])
        meta["uid"] = str(uuid.uuid4())
        if not applied_managed:
            ssa.track_update(None, obj, ctx.manager, rt.root_node(), self._which(rt, ""), "", rt.api_version,
                             now_ts())
        self._before_store(rt, obj, None)
        if ctx.dry_run:
            return Response(201, self._out(rt, obj))
        # `obj` is this request's own; the stored object is only read from here on (a CRD's
        # parts are kept by the registry: a copy of its own).
        stored = self.store.put(rt.store_key, obj, owned=True, copy=rt.kind == "CustomResourceDefinition")
        self._after_store(rt, stored, None, "")
        return Response(201, self._out(rt, stored))

    def _update(self, rt, namespace, name, body, ctx, sub):
        obj = self._decode(rt, body, namespace, name)
        old = self._get_or_404(rt, namespace, name)
        rv = obj["metadata"].get("resourceVersion")
        if rv:
            if rv != old["metadata"]["resourceVersion"]:
                raise E.conflict(rt, name)
        elif not rt.allow_unconditional_update:
            raise E.invalid_object(rt, name, [E.invalid("metadata.resourceVersion", 0,
                                                        "must be specified for an update")])
        self._prune(rt, obj, ctx)
        return self._store_update(rt, obj, old, ctx, sub, apply_mode=False)

    def _store_update(self, rt, new, old, ctx, sub, apply_mode):
        meta, old_meta = new["metadata"], old["metadata"]
        for key in ("uid", "creationTimestamp", "generation", "namespace", "name", "deletionTimestamp"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if rt.status_subresource:
            if sub == "status":
                # Status writes change only status (and bookkeeping metadata).
                status = new.get("status")
                managed = meta.get("managedFields")
                new = clone(old)
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
                if managed is not None:
                    new["metadata"]["managedFields"] = managed
                meta = new["metadata"]
            elif "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        self._keep_allocations(rt, new, old)
        pre = self._pre_validate(rt, new)
        self._apply_defaults(rt, new)
        self._validate(rt, new, old, pre)
        if rt.has_generation and self._spec_of(rt, new) != self._spec_of(rt, old):
            meta["generation"] = old_meta.get("generation", 1) + 1
        if not apply_mode:
            ssa.track_update(old, new, ctx.manager, rt.root_node(), self._which(rt, sub), sub, rt.api_version,
                             now_ts())
        if _same_but_volatile(new, old):
            return Response(200, self._out(rt, old))  # no-op: no write, no new resourceVersion
        self._before_store(rt, new, old)
        if ctx.dry_run:
            return Response(200, self._out(rt, new))
        stored = self.store.put(rt.store_key, new, owned=True, copy=rt.kind == "CustomResourceDefinition")
        self._after_store(rt, stored, old, sub)
        return Response(200, self._out(rt, stored))

    @staticmethod
    def _keep_allocations(rt, new, old):
        """Like PrepareForUpdate: an update omitting allocated values keeps them."""
        if not (rt.builtin and rt.kind == "Service"):
            return
        nspec, ospec = new.get("spec"), old.get("spec") or {}
        if not isinstance(nspec, dict) or nspec.get("type", "ClusterIP") == "ExternalName":
            return
        for key in ("clusterIP", "clusterIPs"):
            if not nspec.get(key) and ospec.get(key):
                nspec[key] = clone(ospec[key])
        old_node_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                          for p in ospec.get("ports") or [] if p.get("nodePort")}
        for port in nspec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                allocated = old_node_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if allocated and nspec.get("type") in ("NodePort", "LoadBalancer"):
                    port["nodePort"] = allocated

    @staticmethod
    def _spec_of(rt, obj):
        skip = {"metadata", "apiVersion", "kind"} | ({"status"} if rt.status_subresource else set())
        return {k: v for k, v in obj.items() if k not in skip}

    def _patch(self, rt, namespace, name, req, ctx, sub):
        content_type = req.header("content-type").split(";")[0].strip().lower()
        accepted = PATCH_TYPES_BUILTIN if rt.builtin else PATCH_TYPES_CUSTOM
        if content_type not in accepted:
            raise E.unsupported_media_type(content_type, accepted)
        if content_type == "application/apply-patch+yaml":
            return self._apply(rt, namespace, name, req, ctx, sub)
        old = self._get_or_404(rt, namespace, name)
        patch_body = _json_body(req)
        try:
            if content_type == "application/json-patch+json":
                doc = P.json_patch(old, patch_body)
            elif content_type == "application/merge-patch+json":
                if not isinstance(patch_body, dict):
                    raise E.bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
                doc = P.merge_patch(old, patch_body)
            else:
                if not isinstance(patch_body, dict):
                    raise E.bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
                doc = P.strategic_merge(old, patch_body, rt.root_node())
        except P.PatchFailed as exc:
            raise E.ApiError(422, "Invalid", str(exc))
        if not isinstance(doc, dict):
            raise E.bad_request("the patched object is not a JSON object")
        doc_meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        if doc_meta.get("name") not in (None, name):
            raise E.invalid_object(rt, name, [E.invalid("metadata.name", doc_meta.get("name"),
                                                        "field is immutable")])
        rv = doc_meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise E.conflict(rt, name)
        obj = self._decode(rt, doc, namespace, name)
        self._prune(rt, obj, ctx)
        return self._store_update(rt, obj, old, ctx, sub, apply_mode=False)

    def _apply(self, rt, namespace, name, req, ctx, sub):
        if not ctx.field_manager:
            raise E.ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required '
                                             'value: is required for apply patch',
                             {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
                                 {"reason": "FieldValueRequired", "message": "Required value: is required for "
                                                                             "apply patch",
                                  "field": "fieldManager"}]})
        if SURROGATE_ESCAPE.search(req.body or b""):
            # go-yaml (the apiserver's decoder) refuses "\ud83d"-style escapes: text outside
            # the BMP must arrive as UTF-8. PyYAML would take them, so check first.
            raise E.bad_request("error decoding YAML: yaml: line 1: found invalid Unicode character escape code")
        applied = _json_document(req.body)
        if applied is None:
            try:
                applied = yaml.load(req.body or b"", Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            except yaml.YAMLError as exc:
                raise E.bad_request(f"error decoding YAML: {exc}")
        if not isinstance(applied, dict):
            raise E.bad_request("error decoding YAML: object expected")
        if not applied.get("apiVersion") or not applied.get("kind"):
            raise E.bad_request("invalid object type: apiVersion and kind must be set")
        obj = self._decode(rt, applied, namespace, name)
        meta = obj["metadata"]
        meta.pop("managedFields", None)
        meta.pop("creationTimestamp", None)
        node = rt.root_node()
        unknown = schema.find_unknown(obj, node)
        if unknown:
            where = f"{namespace}/{name}" if namespace else name
            problems = [f".{schema.fmt_path(p)}: field not declared in schema" for p in unknown]
            detail = problems[0] if len(problems) == 1 else "errors:\n  " + "\n  ".join(problems)
            raise E.bad_request(f"failed to create typed patch object ({where}; {rt.api_version}, "
                                f"Kind={rt.kind}): {detail}")
        schema.prune_unknown(obj, node)  # drops explicit nulls
        # Secret stringData is merged as applied and folded into data afterwards, so
        # (as on a real cluster) dropping a stringData key later does not remove data.
        old = self.store.get(rt.store_key, namespace if rt.namespaced else None, name)
        rv = meta.pop("resourceVersion", None)
        if rv and (old is None or rv != old["metadata"]["resourceVersion"]):
            raise E.conflict(rt, name)
        which = self._which(rt, sub)
        if which == "main":
            obj.pop("status", None)
        now = now_ts()
        if old is None:
            if sub:
                raise E.not_found(rt, name)
            self._namespace_must_exist(rt, namespace)
            merged = ssa.server_side_apply(None, obj, ctx.field_manager, ctx.force, node, which, sub,
                                           rt.api_version, now)
            return self._create(rt, namespace, merged, ctx, applied_managed=True)
        merged = ssa.server_side_apply(old, obj, ctx.field_manager, ctx.force, node, which, sub,
                                       rt.api_version, now)
        return self._store_update(rt, merged, old, ctx, sub, apply_mode=True)

    def _delete(self, rt, namespace, name, req, ctx):
        obj = self._get_or_404(rt, namespace, name)
        options = {}
        if req.body:
            try:
                options = json.loads(req.body) or {}
            except ValueError as exc:
                raise E.bad_request(f"couldn't decode DeleteOptions: {exc}")
        pre = options.get("preconditions") or {}
        meta = obj["metadata"]
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise E.conflict(rt, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in object "
                                       f"meta: {meta['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise E.conflict(rt, name, f"Precondition failed: ResourceVersion in precondition: "
                                       f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                       f"{meta['resourceVersion']}")
        if rt.kind == "Namespace" and name in PROTECTED_NAMESPACES:
            raise E.forbidden_error(rt, name, "this namespace may not be deleted")
        if ctx.dry_run:
            return Response(200, self._out(rt, obj))
        if rt.builtin and rt.kind == "Namespace":
            self.store.delete_where(lambda key, o: o["metadata"].get("namespace") == name)
            gone = self.store.delete(rt.store_key, None, name)
            gone["metadata"]["deletionTimestamp"] = now_ts()
            gone.setdefault("status", {})["phase"] = "Terminating"
            return Response(200, self._out(rt, gone))
        if rt.builtin and rt.kind == "CustomResourceDefinition":
            key = (obj["spec"]["group"], obj["spec"]["names"]["plural"])
            self.store.delete_where(lambda k, o: k == key)
            self.registry.unregister_crd(name)
            gone = self.store.delete(rt.store_key, None, name)
            gone["metadata"]["deletionTimestamp"] = now_ts()
            return Response(200, self._out(rt, gone))
        gone = self.store.delete(rt.store_key, namespace if rt.namespaced else None, name)
        if rt.return_deleted_object:
            return Response(200, self._out(rt, gone))
        details = {"name": name}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        details["uid"] = gone["metadata"]["uid"]
        return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "details": details})

    def _delete_collection(self, rt, namespace, q, ctx):
        items = self._matching(rt, namespace, q)
        deleted = []
        for obj in items:
            meta = obj["metadata"]
            if rt.kind == "Namespace" and meta["name"] in PROTECTED_NAMESPACES:
                continue
            if not ctx.dry_run:
                fake = Request("DELETE", "", {}, {}, b"")
                self._delete(rt, meta.get("namespace"), meta["name"], fake, ctx)
            deleted.append(self._out(rt, obj))
        return Response(200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                              "metadata": {"resourceVersion": self.store.current_rv}, "items": deleted})

    # ----------------------------------------------------------- kind hooks
    def _before_store(self, rt, obj, old):
        if rt.builtin and rt.kind == "CustomResourceDefinition":
            spec = obj["spec"]
            names = clone(spec["names"])
            stored_versions = list((old or {}).get("status", {}).get("storedVersions") or [])
            storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
            if storage not in stored_versions:
                stored_versions.append(storage)
            now = now_ts()
            obj["status"] = {
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
                "acceptedNames": names, "storedVersions": stored_versions,
            }
            if old is not None and (old.get("status") or {}).get("conditions"):
                obj["status"]["conditions"] = old["status"]["conditions"]

    def _after_store(self, rt, stored, old, sub):
        if not rt.builtin:
            return
        if rt.kind == "CustomResourceDefinition":
            self.registry.register_crd(stored)
        elif rt.kind == "Deployment" and sub != "status":
            self.controller.sync(self, rt, stored, now_ts())
