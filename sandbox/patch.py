"""JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.

Strategic merge follows k8s.io/apimachinery/pkg/util/strategicpatch for the
parts clients actually send: lists whose schema says
`x-kubernetes-patch-strategy: merge` are merged by
`x-kubernetes-patch-merge-key` (containers/env/volumes by `name`, container
ports by `containerPort`, service ports by `port`, ...), primitive merge lists
are unioned, everything else is replaced. Directives supported: `$patch:
replace|delete|merge` on maps and list items, `$deleteFromPrimitiveList/<f>`,
`$setElementOrder/<f>` (used to reorder) and `$retainKeys`.
"""
from __future__ import annotations

from . import errors as E
from .schema import Node
from .util import clone


class PatchFailed(Exception):
    """A well-formed patch that cannot be applied to this document (422)."""


# ---------------------------------------------------------------------------
# RFC 7386 merge patch
# ---------------------------------------------------------------------------
def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------
# RFC 6902 JSON patch
# ---------------------------------------------------------------------------
def _pointer(path: str) -> list:
    if path == "":
        return []
    if not path.startswith("/"):
        raise E.bad_request(f'invalid JSON pointer "{path}": must start with "/"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc, tokens, path):
    cur = doc
    for tok in tokens:
        if isinstance(cur, dict):
            if tok not in cur:
                raise PatchFailed(f'doc is missing path: "{path}": missing value')
            cur = cur[tok]
        elif isinstance(cur, list):
            idx = _index(tok, cur, path)
            if idx >= len(cur):
                raise PatchFailed(f'doc is missing path: "{path}": missing value')
            cur = cur[idx]
        else:
            raise PatchFailed(f'doc is missing path: "{path}": missing value')
    return cur


def _index(tok, lst, path, allow_end=False):
    if tok == "-" and allow_end:
        return len(lst)
    try:
        idx = int(tok)
    except ValueError:
        raise PatchFailed(f'unable to access invalid index: "{tok}" in "{path}"')
    if idx < 0 or idx > len(lst) or (idx == len(lst) and not allow_end):
        raise PatchFailed(f'unable to access invalid index: {idx} in "{path}"')
    return idx


def _add(doc, tokens, value, path):
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, parent, path, allow_end=True), value)
    else:
        raise PatchFailed(f'doc is missing path: "{path}": missing value')
    return doc


def _remove(doc, tokens, path):
    if not tokens:
        raise PatchFailed("unable to remove the whole document")
    parent = _resolve(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchFailed(f'unable to remove nonexistent key: {last}: missing value')
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(last, parent, path))
    raise PatchFailed(f'doc is missing path: "{path}": missing value')


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise E.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = clone(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise E.bad_request("invalid JSON patch operation: missing 'op'")
        kind, path = op["op"], op.get("path")
        if path is None:
            raise E.bad_request(f"{kind} operation missing 'path'")
        tokens = _pointer(path)
        try:
            if kind == "add":
                doc = _add(doc, tokens, clone(op.get("value")), path)
            elif kind == "remove":
                _remove(doc, tokens, path)
            elif kind == "replace":
                if not tokens:
                    doc = clone(op.get("value"))
                    continue
                parent = _resolve(doc, tokens[:-1], path)
                last = tokens[-1]
                if isinstance(parent, dict):
                    if last not in parent:
                        raise PatchFailed(f'replace operation does not apply: doc is missing key: {path}: '
                                          f'missing value')
                    parent[last] = clone(op.get("value"))
                elif isinstance(parent, list):
                    parent[_index(last, parent, path)] = clone(op.get("value"))
                else:
                    raise PatchFailed(f'replace operation does not apply: doc is missing path: {path}')
            elif kind in ("move", "copy"):
                src = op.get("from")
                if src is None:
                    raise E.bad_request(f"{kind} operation missing 'from'")
                from_tokens = _pointer(src)
                if kind == "move":
                    value = _remove(doc, from_tokens, src)
                else:
                    value = clone(_resolve(doc, from_tokens, src))
                doc = _add(doc, tokens, value, path)
            elif kind == "test":
                if _resolve(doc, tokens, path) != op.get("value"):
                    raise PatchFailed(f'testing value {path} failed: test failed')
            else:
                raise E.bad_request(f"Unexpected kind: {kind}")
        except PatchFailed:
            raise
    return doc


# ---------------------------------------------------------------------------
# Strategic merge patch
# ---------------------------------------------------------------------------
_DELETE = object()  # sentinel: "$patch: delete" on a map


def _strip_directives(value):
    """Patch values copied verbatim into the result must not keep directives."""
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items()
                if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value
                if not (isinstance(v, dict) and v.get("$patch") == "delete")]
    return value


def strategic_merge(original, patch, node: Node | None):
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return _DELETE
    if directive not in (None, "merge"):
        raise E.bad_request(f"Unknown patch type: {directive}")
    result = clone(original) if isinstance(original, dict) else {}
    orders = {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
        elif key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in (value or [])]
        elif key in ("$patch", "$retainKeys"):
            continue
        elif value is None:
            result.pop(key, None)
        else:
            child = node.child(key) if node is not None else None
            cur = result.get(key)
            # SMP ignores x-kubernetes-map-type (it follows Go struct tags): maps always merge.
            if isinstance(value, dict):
                merged = strategic_merge(cur, value, child)
                if merged is _DELETE:
                    result.pop(key, None)
                else:
                    result[key] = merged
            elif isinstance(value, list) and child is not None and child.kind == "list" \
                    and "merge" in child.patch_strategy:
                result[key] = _merge_list(cur if isinstance(cur, list) else [], value, child)
            else:
                result[key] = _strip_directives(clone(value))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for field, order in orders.items():
        if isinstance(result.get(field), list) and isinstance(order, list):
            result[field] = _reorder(result[field], order, node.child(field) if node else None)
    return result


def _merge_list(original: list, patch: list, node: Node) -> list:
    key = node.patch_merge_key
    items_node = node.items()
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [_strip_directives(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    if not key:
        # Primitive list with merge strategy (e.g. finalizers): ordered union.
        result = list(original)
        for value in patch:
            if value not in result:
                result.append(clone(value))
        return result
    result = clone(original)
    for item in patch:
        if not isinstance(item, dict):
            raise E.bad_request(f"unable to find api field in struct for the merge key {key}")
        if key not in item:
            raise E.bad_request(f"map: {item} does not contain declared merge key: {key}")
        idx = next((i for i, cur in enumerate(result) if isinstance(cur, dict) and cur.get(key) == item[key]),
                   None)
        if item.get("$patch") == "delete":
            result = [cur for cur in result if not (isinstance(cur, dict) and cur.get(key) == item[key])]
            continue
        if idx is None:
            result.append(_strip_directives(item))
        else:
            merged = strategic_merge(result[idx], item, items_node)
            if merged is _DELETE:
                del result[idx]
            else:
                result[idx] = merged
    return result


def _reorder(values: list, order: list, node: Node | None) -> list:
    key = node.patch_merge_key if node is not None else None

    def ident(v):
        return v.get(key) if key and isinstance(v, dict) else v

    order_ids = [ident(o) for o in order]
    ranked = sorted(values, key=lambda v: order_ids.index(ident(v)) if ident(v) in order_ids else len(order_ids))
    return ranked
