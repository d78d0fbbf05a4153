"""Schema navigation shared by pruning, strategic merge and server-side apply.

Two sources of structure:
* built-in kinds: the OpenAPI definitions shipped with `kubernetes_validate`
  (the same files it validates against), which carry the
  `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
  `x-kubernetes-patch-merge-key` and `x-kubernetes-patch-strategy` markers the
  real apiserver uses for strategic merge and structured merge;
* custom resources: the CRD version's `openAPIV3Schema` (structural schema).

`Node` gives both one small interface: `kind` ("struct", "map", "list",
"scalar" or "any"), `child(name)`, `items()`, list semantics and flags.
"""
from __future__ import annotations

import functools
import json
import re
import threading

import kubernetes_validate
from kubernetes_validate import utils as kv_utils

from . import errors as E

KUBE_VERSION = kubernetes_validate.latest_version()  # e.g. "1.37.0"
SCHEMA_DIR = f"kubernetes-json-schema/v{KUBE_VERSION}-local-strict"

_defs_lock = threading.Lock()
_defs_doc: dict | None = None


def definitions_document() -> dict:
    """The whole `_definitions.json` (1.8 MB) loaded once per process."""
    global _defs_doc
    with _defs_lock:
        if _defs_doc is None:
            _defs_doc = kv_utils.schema_contents(f"{SCHEMA_DIR}/_definitions.json", KUBE_VERSION)
        return _defs_doc


def definitions() -> dict:
    """name -> schema for every built-in OpenAPI definition."""
    return definitions_document()["$defs"]


def _types(raw: dict) -> set:
    t = raw.get("type")
    if t is None:
        return set()
    return {t} if isinstance(t, str) else set(t)


class Node:
    """One position in a schema (built-in definition or CRD structural schema)."""

    __slots__ = ("raw", "flavor", "kind", "_children", "_items", "_value")

    def __init__(self, raw: dict, flavor: str):
        self.raw = raw
        self.flavor = flavor  # "builtin" | "crd"
        self._children: dict = {}
        self._items = None
        self._value = None
        self.kind = self._classify()

    def _classify(self) -> str:
        raw, types = self.raw, _types(self.raw)
        if self.flavor == "crd":
            if raw.get("x-kubernetes-int-or-string"):
                return "scalar"
            if "object" in types or (not types and ("properties" in raw or raw.get("x-kubernetes-embedded-resource"))):
                if "properties" in raw or raw.get("x-kubernetes-embedded-resource"):
                    return "struct"
                if isinstance(raw.get("additionalProperties"), dict):
                    return "map"
                return "any"
            if "array" in types:
                return "list"
            if not types:
                return "any"
            return "scalar"
        if "properties" in raw:
            return "struct"
        if "array" in types:
            return "list"
        if "object" in types:
            return "map" if isinstance(raw.get("additionalProperties"), dict) else "any"
        if not types and "oneOf" not in raw:
            return "any"  # e.g. apiextensions JSON: arbitrary value
        return "scalar"

    # -- navigation ---------------------------------------------------------
    def _wrap(self, raw):
        return _node(raw, self.flavor)

    def child(self, name: str):
        """Schema of field `name`, ANY for free-form values, or None if unknown."""
        if self.kind == "any":
            return ANY
        if self.kind == "map":
            if self._value is None:
                self._value = self._wrap(self.raw["additionalProperties"])
            return self._value
        if self.kind != "struct":
            return None
        if name in self._children:
            return self._children[name]
        props = self.raw.get("properties", {})
        if name in props:
            node = self._wrap(props[name])
        elif self.flavor == "crd" and self.raw.get("x-kubernetes-embedded-resource") and name in (
                "apiVersion", "kind", "metadata"):
            node = object_meta() if name == "metadata" else SCALAR
        elif self.flavor == "crd" and self.raw.get("x-kubernetes-preserve-unknown-fields"):
            node = ANY
        else:
            node = None
        self._children[name] = node
        return node

    def items(self):
        if self.kind == "any":
            return ANY
        if self._items is None:
            raw = self.raw.get("items")
            self._items = self._wrap(raw) if isinstance(raw, dict) else ANY
        return self._items

    # -- list / map semantics ----------------------------------------------
    @property
    def list_type(self) -> str:
        lt = self.raw.get("x-kubernetes-list-type")
        if lt:
            return lt
        # Older built-in lists only carry the strategic-merge markers.
        if self.flavor == "builtin" and self.raw.get("x-kubernetes-patch-merge-key"):
            return "map"
        return "atomic"

    @property
    def list_keys(self) -> list:
        keys = self.raw.get("x-kubernetes-list-map-keys")
        if keys:
            return list(keys)
        key = self.raw.get("x-kubernetes-patch-merge-key")
        return [key] if key else []

    @property
    def atomic(self) -> bool:
        """Replaced wholesale by apply (leaf for managedFields)."""
        if self.kind == "list":
            return self.list_type == "atomic"
        if self.kind in ("struct", "map"):
            return self.raw.get("x-kubernetes-map-type") == "atomic"
        return self.kind == "scalar"

    @property
    def patch_strategy(self) -> set:
        return set(filter(None, (self.raw.get("x-kubernetes-patch-strategy") or "").split(",")))

    @property
    def patch_merge_key(self):
        return self.raw.get("x-kubernetes-patch-merge-key")

    @property
    def preserve_unknown(self) -> bool:
        return bool(self.raw.get("x-kubernetes-preserve-unknown-fields"))


class _Any(Node):
    """Free-form value: maps are granular, lists atomic (like SMD's deduced type)."""

    def __init__(self, kind):
        self.raw, self.flavor, self.kind = {}, "any", kind
        self._children, self._items, self._value = {}, None, None


ANY = _Any("any")
SCALAR = _Any("scalar")

_node_cache: dict = {}
_node_lock = threading.Lock()


def _node(raw: dict, flavor: str) -> Node:
    if flavor == "builtin":
        while "$ref" in raw:
            raw = definitions()[raw["$ref"].rsplit("/", 1)[-1]]
    key = (id(raw), flavor)
    node = _node_cache.get(key)
    if node is None or node.raw is not raw:
        node = Node(raw, flavor)
        with _node_lock:
            if len(_node_cache) > 20000:
                _node_cache.clear()
            _node_cache[key] = node
    return node


def builtin(definition: str) -> Node:
    """Root node for a built-in kind, e.g. 'io.k8s.api.apps.v1.Deployment'."""
    return _node(definitions()[definition], "builtin")


def object_meta() -> Node:
    return builtin("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")


class CrdRoot(Node):
    """Root of a custom resource: CRD schema plus the implicit apiVersion/kind/metadata."""

    def __init__(self, raw: dict):
        super().__init__(raw, "crd")
        self.kind = "struct"

    def child(self, name):
        if name == "metadata":
            return object_meta()
        if name in ("apiVersion", "kind"):
            return SCALAR
        return super().child(name)


# ---------------------------------------------------------------------------
# Unknown-field pruning (what the real decoder drops, or rejects when strict)
# ---------------------------------------------------------------------------
def fmt_path(path) -> str:
    """('spec', 'containers', 0, 'image') -> 'spec.containers[0].image'."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def prune_unknown(obj, node: Node, path=(), drop_nulls=True) -> list:
    """Remove fields the schema does not declare, in place. Returns their paths.

    Also drops `null` values, which Go decoding (built-ins) and CRD
    structural pruning (non-nullable fields) both treat as "unset".
    """
    unknown = []
    if node is None or node.kind in ("any", "scalar"):
        return unknown
    if isinstance(obj, dict) and node.kind in ("struct", "map"):
        for key in list(obj):
            value = obj[key]
            child = node.child(key)
            if child is None:
                unknown.append(path + (key,))
                del obj[key]
                continue
            if value is None and drop_nulls and not child.raw.get("nullable"):
                del obj[key]
                continue
            unknown.extend(prune_unknown(value, child, path + (key,), drop_nulls))
    elif isinstance(obj, list) and node.kind == "list":
        items = node.items()
        for i, value in enumerate(obj):
            unknown.extend(prune_unknown(value, items, path + (i,), drop_nulls))
    return unknown


def find_unknown(obj, node: Node, path=()) -> list:
    """Like prune_unknown but without modifying anything (used for apply)."""
    unknown = []
    if node is None or node.kind in ("any", "scalar"):
        return unknown
    if isinstance(obj, dict) and node.kind in ("struct", "map"):
        for key, value in obj.items():
            child = node.child(key)
            if child is None:
                unknown.append(path + (key,))
            else:
                unknown.extend(find_unknown(value, child, path + (key,)))
    elif isinstance(obj, list) and node.kind == "list":
        items = node.items()
        for i, value in enumerate(obj):
            unknown.extend(find_unknown(value, items, path + (i,)))
    return unknown


# ---------------------------------------------------------------------------
# CRD structural-schema validation and defaulting
# ---------------------------------------------------------------------------
_JSON_TYPE = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}


def _json_type(value) -> str:
    if value is None:
        return "null"
    return _JSON_TYPE.get(type(value), "object")


def _type_ok(value, expected: str) -> bool:
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or (
            isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    return True


def apply_crd_defaults(obj, raw: dict):
    """Structural defaulting: fill `default` of missing properties, recursively."""
    if isinstance(obj, dict):
        props = raw.get("properties") or {}
        for name, sub in props.items():
            if name not in obj and "default" in sub:
                obj[name] = json.loads(json.dumps(sub["default"]))
            if name in obj:
                apply_crd_defaults(obj[name], sub)
        addl = raw.get("additionalProperties")
        if isinstance(addl, dict):
            for name in obj:
                if name not in props:
                    apply_crd_defaults(obj[name], addl)
    elif isinstance(obj, list) and isinstance(raw.get("items"), dict):
        for item in obj:
            apply_crd_defaults(item, raw["items"])


@functools.lru_cache(maxsize=256)
def _regex(pattern: str):
    return re.compile(pattern)


def validate_crd_value(value, raw: dict, path: tuple) -> list:
    """Validate against a structural schema the way apiextensions does.

    Covers type, nullable, enum, pattern, min/max(+exclusive), lengths, item
    counts, required, properties/additionalProperties/items recursion,
    list-type set/map uniqueness and allOf/anyOf/oneOf/not. Not covered: CEL
    `x-kubernetes-validations` and `format`.
    """
    errs: list = []
    field = fmt_path(path)
    if value is None:
        if raw.get("nullable"):
            return errs
    types = _types(raw)
    if raw.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            errs.append(E.invalid(field, _json_type(value),
                                  f"{field} in body must be of type integer,string: {json.dumps(_json_type(value))}"))
            return errs
    elif types:
        expected = next(iter(types))
        if not _type_ok(value, expected):
            actual = _json_type(value)
            errs.append(E.invalid(field, actual, f"{field} in body must be of type {expected}: {json.dumps(actual)}"))
            return errs

    if "enum" in raw and value not in raw["enum"]:
        errs.append(E.not_supported(field, value, raw["enum"]))
    if isinstance(value, str):
        if "pattern" in raw and not _regex(raw["pattern"]).search(value):
            errs.append(E.invalid(field, value, f"{field} in body should match '{raw['pattern']}'"))
        if "maxLength" in raw and len(value) > raw["maxLength"]:
            errs.append(E.FieldError("TooLong", field, value,
                                     f"may not be more than {raw['maxLength']} bytes"))
        if "minLength" in raw and len(value) < raw["minLength"]:
            errs.append(E.invalid(field, value, f"{field} in body should be at least {raw['minLength']} chars long"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in raw:
            if raw.get("exclusiveMinimum") and value <= raw["minimum"]:
                errs.append(E.invalid(field, value, f"{field} in body should be greater than {raw['minimum']}"))
            elif value < raw["minimum"]:
                errs.append(E.invalid(field, value,
                                      f"{field} in body should be greater than or equal to {raw['minimum']}"))
        if "maximum" in raw:
            if raw.get("exclusiveMaximum") and value >= raw["maximum"]:
                errs.append(E.invalid(field, value, f"{field} in body should be less than {raw['maximum']}"))
            elif value > raw["maximum"]:
                errs.append(E.invalid(field, value,
                                      f"{field} in body should be less than or equal to {raw['maximum']}"))
        if "multipleOf" in raw and raw["multipleOf"] and value % raw["multipleOf"]:
            errs.append(E.invalid(field, value, f"{field} in body should be a multiple of {raw['multipleOf']}"))
    if isinstance(value, list):
        if "minItems" in raw and len(value) < raw["minItems"]:
            errs.append(E.invalid(field, len(value), f"{field} in body should have at least {raw['minItems']} items"))
        if "maxItems" in raw and len(value) > raw["maxItems"]:
            errs.append(E.FieldError("TooMany", field, len(value), f"must have at most {raw['maxItems']} items"))
        list_type = raw.get("x-kubernetes-list-type")
        if list_type in ("set", "map"):
            keys = raw.get("x-kubernetes-list-map-keys") or []
            seen = []
            for i, item in enumerate(value):
                ident = item if list_type == "set" else (
                    {k: item.get(k) for k in keys} if isinstance(item, dict) else item)
                if ident in seen:
                    errs.append(E.duplicate(fmt_path(path + (i,)), ident))
                seen.append(ident)
        if isinstance(raw.get("items"), dict):
            for i, item in enumerate(value):
                errs.extend(validate_crd_value(item, raw["items"], path + (i,)))
    if isinstance(value, dict):
        for name in raw.get("required") or []:
            if name not in value:
                errs.append(E.required(fmt_path(path + (name,))))
        if "minProperties" in raw and len(value) < raw["minProperties"]:
            errs.append(E.invalid(field, len(value),
                                  f"{field} in body should have at least {raw['minProperties']} properties"))
        if "maxProperties" in raw and len(value) > raw["maxProperties"]:
            errs.append(E.FieldError("TooMany", field, len(value),
                                     f"must have at most {raw['maxProperties']} items"))
        props = raw.get("properties") or {}
        addl = raw.get("additionalProperties")
        for name, item in value.items():
            if name in props:
                errs.extend(validate_crd_value(item, props[name], path + (name,)))
            elif isinstance(addl, dict):
                errs.extend(validate_crd_value(item, addl, path + (name,)))
    for sub in raw.get("allOf") or []:
        errs.extend(validate_crd_value(value, sub, path))
    if raw.get("anyOf") and all(validate_crd_value(value, sub, path) for sub in raw["anyOf"]):
        errs.append(E.invalid(field, value, "must validate at least one schema (anyOf)"))
    if raw.get("oneOf"):
        passing = sum(1 for sub in raw["oneOf"] if not validate_crd_value(value, sub, path))
        if passing != 1:
            errs.append(E.invalid(field, value, "must validate one and only one schema (oneOf)"))
    if isinstance(raw.get("not"), dict) and not validate_crd_value(value, raw["not"], path):
        errs.append(E.invalid(field, value, "must not validate the schema (not)"))
    return errs


def structural_errors(raw, path: str) -> list:
    """The subset of 'structural schema' rules that catches common mistakes."""
    errs = []
    if not isinstance(raw, dict):
        return [E.invalid(path, raw, "must be an object")]
    has_type = bool(raw.get("type"))
    special = raw.get("x-kubernetes-int-or-string") or raw.get("x-kubernetes-preserve-unknown-fields")
    if not has_type and not special:
        errs.append(E.required(f"{path}.type", "must not be empty for specified object fields"))
    if "additionalProperties" in raw and "properties" in raw and raw["additionalProperties"] not in (False, None):
        errs.append(E.forbidden(f"{path}.additionalProperties",
                                "additionalProperties and properties are mutual exclusive"))
    for name, sub in (raw.get("properties") or {}).items():
        errs.extend(structural_errors(sub, f"{path}.properties[{name}]"))
    if isinstance(raw.get("items"), dict):
        errs.extend(structural_errors(raw["items"], f"{path}.items"))
    if isinstance(raw.get("additionalProperties"), dict):
        errs.extend(structural_errors(raw["additionalProperties"], f"{path}.additionalProperties"))
    if _types(raw) == {"array"} and "items" not in raw:
        errs.append(E.required(f"{path}.items", "must be specified"))
    return errs
