"""Server-side apply and `metadata.managedFields` bookkeeping.

A simplified structured-merge-diff:
* A field set is a set of paths; path elements use the fieldsV1 spelling
  (`f:name`, `k:{"name":"web"}`, `v:"value"`, `.` for "this list item"), so
  converting to and from `managedFields[].fieldsV1` is trivial.
* Lists follow the schema's `x-kubernetes-list-type` (map lists keyed by
  `x-kubernetes-list-map-keys`, sets, otherwise atomic); maps are granular
  unless `x-kubernetes-map-type: atomic` (e.g. a LabelSelector).
* Apply: conflicts are fields in the applied config owned by another
  manager (Apply or Update) whose live value differs; `force` takes them.
  Fields the manager applied before and now omits are removed when nobody
  else owns them (list items once no other manager owns anything inside).
* Update (create/PUT/non-apply PATCH): the writer takes the fields it
  changed; removed fields are dropped from every manager.
Simplifications: Update entries are not split per apiVersion, there is no
version conversion, and defaulted list-map keys only know `protocol: TCP`.
"""
from __future__ import annotations

import json

from . import errors as E
from .schema import ANY, Node
from .util import clone

MISSING = object()
# metadata fields the apiserver never tracks in managedFields
IGNORED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "selfLink",
                "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds"}
# apiserver-defaulted list-map keys (SMD applies schema defaults to keys)
KEY_DEFAULTS = {"protocol": "TCP"}


def _dump(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _key_dict(item: dict, keys: list) -> dict:
    out = {}
    for k in keys:
        if k in item:
            out[k] = item[k]
        elif k in KEY_DEFAULTS:
            out[k] = KEY_DEFAULTS[k]
    return out


def _key_element(item: dict, keys: list) -> str:
    return "k:" + _dump(_key_dict(item, keys))


# ---------------------------------------------------------------------------
# field sets
# ---------------------------------------------------------------------------
def field_set(obj, node: Node, which: str | None = None, walked: dict | None = None) -> set:
    """Every field path of `obj`. With `which`, the parts `scope(..., which)` drops are not
    walked at all (apiVersion/kind, untracked metadata such as managedFields, status or all
    but status): the same set once scoped, for a fraction of the work. `walked`: the paths of
    top-level values already walked, by identity (two versions of an object sharing their
    spec walk it once; only for objects alive as long as the dict)."""
    out: set = set()
    node = node or ANY
    if which is None or not isinstance(obj, dict) or not obj or node.kind not in ("struct", "map", "any") or node.atomic:
        _walk(obj, node, (), out)
        return out
    for key, child in obj.items():
        if key in ("apiVersion", "kind") or (which == "main" and key == "status") or (which == "status" and key != "status"):
            continue
        child_node = node.child(key) or ANY
        if key == "metadata" and isinstance(child, dict) and child and child_node.kind in ("struct", "map", "any") \
                and not child_node.atomic:
            for meta_key, meta_child in child.items():
                if meta_key not in IGNORED_META:
                    _walk(meta_child, child_node.child(meta_key) or ANY, ("f:metadata", "f:" + meta_key), out)
        elif walked is None:
            _walk(child, child_node, ("f:" + key,), out)
        else:
            paths = walked.get((key, id(child)))
            if paths is None:
                paths = walked[(key, id(child))] = set()
                _walk(child, child_node, ("f:" + key,), paths)
            out |= paths
    return out


def _walk(value, node, path, out):
    node = node or ANY
    if isinstance(value, dict) and node.kind in ("struct", "map", "any") and not node.atomic:
        if not value:
            if path:
                out.add(path)
            return
        for key, child in value.items():
            _walk(child, node.child(key) or ANY, path + ("f:" + key,), out)
    elif isinstance(value, list) and node.kind == "list" and node.list_type == "map" and \
            all(isinstance(i, dict) for i in value):
        keys, items = node.list_keys, node.items()
        for item in value:
            item_path = path + (_key_element(item, keys),)
            out.add(item_path + (".",))
            for key, child in item.items():
                _walk(child, items.child(key) or ANY, item_path + ("f:" + key,), out)
    elif isinstance(value, list) and node.kind == "list" and node.list_type == "set":
        for item in value:
            out.add(path + ("v:" + _dump(item),))
    else:
        out.add(path)


def scope(paths: set, which: str) -> set:
    """Drop untracked paths; `which` is 'main' (status reset), 'status' or 'all'."""
    out = set()
    for p in paths:
        if not p or p[0] in ("f:apiVersion", "f:kind"):
            continue
        if p[0] == "f:metadata" and (len(p) == 1 or p[1][2:] in IGNORED_META):
            continue
        is_status = p[0] == "f:status"
        if (which == "main" and is_status) or (which == "status" and not is_status):
            continue
        out.add(p)
    return out


def to_fields_v1(paths: set) -> dict:
    root: dict = {}
    for p in sorted(paths):
        cur = root
        for el in p:
            cur = cur.setdefault(el, {})
    return root


def from_fields_v1(fields: dict, prefix=()) -> set:
    out: set = set()
    for key, sub in (fields or {}).items():
        if key == ".":
            out.add(prefix + (".",))
        elif not sub:
            out.add(prefix + (key,))
        else:
            out |= from_fields_v1(sub, prefix + (key,))
    return out


def human_path(path) -> str:
    """('f:spec','k:{"name":"a"}','f:image') -> .spec[name="a"].image (SMD's spelling)."""
    out = ""
    for el in path:
        if el == ".":
            continue
        kind, rest = el[:2], el[2:]
        if kind == "f:":
            out += "." + rest
        elif kind == "k:":
            keys = json.loads(rest)
            out += "[" + ",".join(f"{k}={_dump(v)}" for k, v in keys.items()) + "]"
        elif kind == "v:":
            out += f"[={rest}]"
    return out


# ---------------------------------------------------------------------------
# value access by path
# ---------------------------------------------------------------------------
def _find_item(lst, key_el):
    keys = json.loads(key_el[2:])
    for i, item in enumerate(lst):
        if isinstance(item, dict) and _key_dict(item, list(keys)) == keys:
            return i
    return None


def get_at(obj, path):
    cur = obj
    for el in path:
        if el == ".":
            return cur
        kind, rest = el[:2], el[2:]
        if kind == "f:":
            if not isinstance(cur, dict) or rest not in cur:
                return MISSING
            cur = cur[rest]
        elif kind == "k:":
            if not isinstance(cur, list):
                return MISSING
            idx = _find_item(cur, el)
            if idx is None:
                return MISSING
            cur = cur[idx]
        elif kind == "v:":
            value = json.loads(rest)
            return value if isinstance(cur, list) and value in cur else MISSING
    return cur


def _remove_at(obj, path, owned_anywhere):
    last = path[-1]
    if last == ".":
        parent = get_at(obj, path[:-2])
        if isinstance(parent, list):
            idx = _find_item(parent, path[-2])
            if idx is not None:
                del parent[idx]
        return
    parent = get_at(obj, path[:-1])
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("v:") and isinstance(parent, list):
        value = json.loads(last[2:])
        if value in parent:
            parent.remove(value)
    # Remove maps emptied by this removal unless someone owns them as a leaf.
    up = path[:-1]
    while len(up) > 1 and up[-1].startswith("f:"):
        container = get_at(obj, up)
        if container != {} or up in owned_anywhere:
            break
        holder = get_at(obj, up[:-1])
        if isinstance(holder, dict):
            holder.pop(up[-1][2:], None)
        up = up[:-1]


# ---------------------------------------------------------------------------
# managedFields entries
# ---------------------------------------------------------------------------
class Entry:
    def __init__(self, manager, operation, subresource="", api_version="", time="", fields=None):
        self.manager, self.operation, self.subresource = manager, operation, subresource or ""
        self.api_version, self.time = api_version, time
        self.fields: set = set(fields or ())

    @property
    def ident(self):
        return (self.manager, self.operation, self.subresource)

    def describe(self) -> str:
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
            if self.time:
                text += f" at {self.time}"
        return text


def read_entries(obj) -> list:
    out = []
    for raw in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        out.append(Entry(raw.get("manager", ""), raw.get("operation", "Update"), raw.get("subresource", ""),
                         raw.get("apiVersion", ""), raw.get("time", ""), from_fields_v1(raw.get("fieldsV1"))))
    return out


def write_entries(obj: dict, entries: list):
    encoded = []
    for e in entries:
        if not e.fields:
            continue
        raw = {"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version, "time": e.time,
               "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(e.fields)}
        if e.subresource:
            raw["subresource"] = e.subresource
        encoded.append(raw)
    meta = obj.setdefault("metadata", {})
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)


def _entry(entries, manager, operation, subresource, api_version, now):
    for e in entries:
        if e.ident == (manager, operation, subresource or ""):
            return e
    e = Entry(manager, operation, subresource, api_version, now)
    entries.append(e)
    return e


def track_update(old, new: dict, manager: str, node: Node, which: str, subresource: str,
                 api_version: str, now: str):
    """Record ownership for a non-apply write; sets new.metadata.managedFields."""
    entries = read_entries(old) if old else []
    walked: dict = {}
    old_set = scope(field_set(old, node, which, walked), which) if old else set()
    new_set = scope(field_set(new, node, which, walked), which)
    removed = old_set - new_set
    # A top-level value the new version shares with the old (the same object) has not changed.
    shared = {"f:" + key for key, value in new.items() if old.get(key, MISSING) is value} if isinstance(old, dict) else set()
    changed = {p for p in new_set
               if p not in old_set or (p[-1] != "." and p[0] not in shared and get_at(old, p) != get_at(new, p))}
    mine = None
    if changed:
        mine = _entry(entries, manager, "Update", subresource, api_version, now)
        mine.time, mine.api_version = now, api_version
    for e in entries:
        e.fields -= removed
        if e is not mine:
            e.fields -= changed
    if mine is not None:
        mine.fields |= changed
    write_entries(new, entries)


# ---------------------------------------------------------------------------
# apply
# ---------------------------------------------------------------------------
def apply_merge(live, applied, node: Node):
    node = node or ANY
    if isinstance(applied, dict) and isinstance(live, dict) and node.kind in ("struct", "map", "any") \
            and not node.atomic:
        out = dict(live)
        for key, value in applied.items():
            out[key] = apply_merge(live.get(key), value, node.child(key) or ANY)
        return out
    if isinstance(applied, list) and isinstance(live, list) and node.kind == "list":
        if node.list_type == "map" and all(isinstance(i, dict) for i in applied + live):
            keys, items = node.list_keys, node.items()
            out = clone(live)
            for item in applied:
                idx = _find_item(out, _key_element(item, keys))
                if idx is None:
                    out.append(clone(item))
                else:
                    out[idx] = apply_merge(out[idx], item, items)
            return out
        if node.list_type == "set":
            out = list(live)
            out.extend(clone(v) for v in applied if v not in out)
            return out
    return clone(applied)


def conflict_error(conflicts: list) -> E.ApiError:
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {e.describe()}",
               "field": human_path(p)} for e, p in conflicts]
    if len(conflicts) == 1:
        e, p = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {e.describe()}: {human_path(p)}"
    else:
        by_manager: dict = {}
        for e, p in conflicts:
            by_manager.setdefault(e.describe(), []).append(human_path(p))
        lines = []
        for who in sorted(by_manager):
            lines.append(f"conflicts with {who}:")
            lines.extend(f"- {p}" for p in sorted(by_manager[who]))
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return E.ApiError(409, "Conflict", message, {"causes": causes})


def server_side_apply(live, applied: dict, manager: str, force: bool, node: Node, which: str,
                      subresource: str, api_version: str, now: str) -> dict:
    """Merge `applied` into `live` (None on create) for `manager`; returns the new object.

    Raises a 409 Conflict ApiError listing the contested fields unless `force`.
    """
    applied_set = scope(field_set(applied, node, which), which)
    base = clone(live) if live else {}
    entries = read_entries(live) if live else []
    merged = apply_merge(base, applied, node)
    me = (manager, "Apply", subresource or "")

    conflicts = []
    for e in entries:
        if e.ident == me:
            continue
        for p in sorted(e.fields & applied_set):
            if p[-1] != "." and get_at(base, p) != get_at(merged, p):
                conflicts.append((e, p))
    if conflicts and not force:
        raise conflict_error(conflicts)
    for e, p in conflicts:
        e.fields.discard(p)

    mine = _entry(entries, manager, "Apply", subresource, api_version, now)
    previous = set(mine.fields)
    others: set = set()
    for e in entries:
        if e is not mine:
            others |= e.fields
    kept = others | applied_set
    dropped = previous - applied_set
    # Whole list items nobody else has a stake in go at once (their key fields
    # must still be there to find them), then the remaining leaves.
    items = [p[:-1] for p in dropped if p[-1] == "." and p not in others
             and not any(q[:len(p) - 1] == p[:-1] for q in kept)]
    for p in sorted(dropped, key=lambda p: -len(p)):
        if p[-1] == "." or p in others or any(p[:len(i)] == i for i in items):
            continue
        _remove_at(merged, p, kept)
    for item in sorted(items, key=lambda p: -len(p)):
        _remove_at(merged, item + (".",), kept)
    mine.fields = applied_set
    mine.time, mine.api_version = now, api_version
    write_entries(merged, entries)
    return merged
