"""Label and field selectors with the apiserver's query-string syntax."""
from __future__ import annotations

import re

from . import errors as E

_KEY = r"[A-Za-z0-9./_-]+"
_REQ = re.compile(
    rf"^\s*(?:(?P<not>!)\s*(?P<nkey>{_KEY})"
    rf"|(?P<key>{_KEY})\s*(?:(?P<op>==|=|!=|>|<)\s*(?P<val>[A-Za-z0-9._-]*)"
    rf"|\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?)\s*$"
)


def _split_top(text: str) -> list:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in (s.strip() for s in parts) if p]


def parse_label_selector(text: str | None):
    """Return a predicate over a labels dict. Raises 400 on syntax errors."""
    if not text:
        return lambda labels: True
    reqs = []
    for part in _split_top(text):
        m = _REQ.match(part)
        if not m:
            raise E.bad_request(f"unable to parse requirement: found '{part}', expected: valid label selector")
        if m.group("not"):
            reqs.append(("!", m.group("nkey"), None))
        elif m.group("setop"):
            values = {v.strip() for v in m.group("set").split(",") if v.strip()}
            reqs.append((m.group("setop"), m.group("key"), values))
        elif m.group("op"):
            op = "=" if m.group("op") == "==" else m.group("op")
            if op in (">", "<") and not re.fullmatch(r"-?\d+", m.group("val") or ""):
                raise E.bad_request("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be "
                                    "an integer")
            reqs.append((op, m.group("key"), m.group("val")))
        else:
            reqs.append(("exists", m.group("key"), None))

    def match(labels) -> bool:
        labels = labels or {}
        for op, key, val in reqs:
            present = key in labels
            cur = labels.get(key)
            if op == "exists" and not present:
                return False
            if op == "!" and present:
                return False
            if op == "=" and cur != val:
                return False
            if op == "!=" and present and cur == val:
                return False
            if op == "in" and (not present or cur not in val):
                return False
            if op == "notin" and present and cur in val:
                return False
            if op in (">", "<"):
                try:
                    num = int(cur)
                except (TypeError, ValueError):
                    return False
                if (op == ">" and not num > int(val)) or (op == "<" and not num < int(val)):
                    return False
        return True

    return match


def _field_value(obj: dict, path: str):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return "" if cur is None else str(cur)


# Extra field labels some built-in kinds support beyond metadata.name/namespace.
EXTRA_FIELDS = {("", "secrets"): {"type"}, ("", "namespaces"): {"status.phase"}}


def parse_field_selector(text: str | None, store_key=None):
    if not text:
        return lambda obj: True
    allowed = {"metadata.name", "metadata.namespace"} | EXTRA_FIELDS.get(store_key, set())
    reqs = []
    for part in _split_top(text):
        m = re.match(r"^([A-Za-z0-9._-]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise E.bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, val = m.groups()
        if key not in allowed:
            raise E.bad_request(f'field label not supported: {key}')
        reqs.append((key, op != "!=", val))

    def match(obj) -> bool:
        return all((_field_value(obj, key) == val) == eq for key, eq, val in reqs)

    return match
