"""Validation of built-in kinds, in the order the real apiserver does it.

1. decode: wrong JSON types (per the official OpenAPI schemas shipped with
   `kubernetes_validate`) and bad base64 in Secret/ConfigMap data are 400
   BadRequest, because the real server fails while decoding into Go structs;
2. validation: schema `required` plus the semantic checks the schemas do
   not express (names, labels, ports, selectors, immutability ...) are
   collected into one 422 Invalid with `details.causes`, worded like
   k8s.io/kubernetes/pkg/apis/*/validation.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import threading

import jsonschema
from kubernetes_validate import utils as kv_utils

try:  # the same schemas checked by a compiled validator (installed with the dev tools), else only jsonschema
    import jsonschema_rs
except ImportError:  # pragma: no cover
    jsonschema_rs = None
from referencing import Registry, Resource

from . import errors as E
from .schema import KUBE_VERSION, SCHEMA_DIR, definitions, definitions_document, fmt_path

# ---------------------------------------------------------------------------
# name / label / key format checks (apimachinery/pkg/util/validation)
# ---------------------------------------------------------------------------
_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _QUALIFIED_NAME + ")?"
_CONFIG_KEY = "[-._a-zA-Z0-9]+"


def _full(rx):
    return re.compile("^" + rx + "$")


RX_DNS1123_LABEL, RX_DNS1123_SUBDOMAIN, RX_DNS1035 = _full(_DNS1123_LABEL), _full(_DNS1123_SUBDOMAIN), \
    _full(_DNS1035_LABEL)
RX_QUALIFIED, RX_LABEL_VALUE, RX_CONFIG_KEY = _full(_QUALIFIED_NAME), _full(_LABEL_VALUE), _full(_CONFIG_KEY)

MSG_DNS1123_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                     "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
                     f"used for validation is '{_DNS1123_LABEL}')")
MSG_DNS1123_SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
                         "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
                         f"regex used for validation is '{_DNS1123_SUBDOMAIN}')")
MSG_DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
               "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
               f"regex used for validation is '{_DNS1035_LABEL}')")
MSG_QUALIFIED = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                 "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                 f"validation is '{_QUALIFIED_NAME}')")
MSG_LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                   "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
                   f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')")
MSG_CONFIG_KEY = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
                  f"'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY}')")
MSG_PORT = "must be between 1 and 65535, inclusive"


def dns1123_label(value) -> list:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not RX_DNS1123_LABEL.match(value):
        out.append(MSG_DNS1123_LABEL)
    return out


def dns1123_subdomain(value) -> list:
    out = []
    if len(value) > 253:
        out.append("must be no more than 253 characters")
    if not RX_DNS1123_SUBDOMAIN.match(value):
        out.append(MSG_DNS1123_SUBDOMAIN)
    return out


def dns1035_label(value) -> list:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not RX_DNS1035.match(value):
        out.append(MSG_DNS1035)
    return out


def qualified_name(value) -> list:
    parts = value.split("/")
    if len(parts) == 1:
        prefix, name = "", parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
    else:
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start "
                "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
                f"used for validation is '{_QUALIFIED_NAME}') with an optional DNS subdomain prefix and '/' "
                "(e.g. 'example.com/MyName')"]
    out = []
    if prefix:
        out.extend("prefix part " + m for m in dns1123_subdomain(prefix))
    if not name:
        out.append("name part must be non-empty")
    elif len(name) > 63:
        out.append("name part must be no more than 63 characters")
    if name and not RX_QUALIFIED.match(name):
        out.append(MSG_QUALIFIED)
    return out


def label_value(value) -> list:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not RX_LABEL_VALUE.match(value):
        out.append(MSG_LABEL_VALUE)
    return out


def iana_svc_name(value) -> list:
    out = []
    if len(value) > 15:
        out.append("must be no more than 15 characters")
    if not re.fullmatch(r"[-a-z0-9]+", value):
        out.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        out.append("must not contain consecutive hyphens")
    if not re.search(r"[a-z]", value):
        out.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        out.append("must not begin or end with a hyphen")
    return out


def _invalids(field, value, messages) -> list:
    return [E.invalid(field, value, m) for m in messages]


def labels_errors(labels, field) -> list:
    errs = []
    if not isinstance(labels, dict):
        return errs
    for key, value in labels.items():
        errs += _invalids(field, key, qualified_name(key))
        errs += _invalids(field, value, label_value(value if isinstance(value, str) else str(value)))
    return errs


def annotations_errors(annotations, field) -> list:
    errs = []
    if not isinstance(annotations, dict):
        return errs
    for key in annotations:
        errs += _invalids(field, key.lower(), qualified_name(key.lower()))
    size = sum(len(k) + len(v or "") for k, v in annotations.items())
    if size > 256 * 1024:
        errs.append(E.too_long(field, 256 * 1024))
    return errs


def selector_errors(selector, field) -> list:
    errs = []
    if not isinstance(selector, dict):
        return errs
    errs += labels_errors(selector.get("matchLabels"), f"{field}.matchLabels")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        f = f"{field}.matchExpressions[{i}]"
        op = expr.get("operator")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            errs.append(E.not_supported(f"{f}.operator", op, ["DoesNotExist", "Exists", "In", "NotIn"]))
        elif op in ("In", "NotIn") and not expr.get("values"):
            errs.append(E.required(f"{f}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist") and expr.get("values"):
            errs.append(E.forbidden(f"{f}.values", "may not be specified when `operator` is 'Exists' or "
                                                   "'DoesNotExist'"))
        errs += _invalids(f"{f}.key", expr.get("key", ""), qualified_name(expr.get("key", "")))
    return errs


def selector_matches(selector: dict, labels: dict) -> bool:
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# ---------------------------------------------------------------------------
# 1. decode stage: JSON types via the kubernetes_validate schemas
# ---------------------------------------------------------------------------
_validators: dict = {}
_validators_lock = threading.Lock()


def _root_schema(kind: str, api_version: str) -> dict:
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return kv_utils.schema_contents(f"{SCHEMA_DIR}/{kind.lower()}-{api}.json", KUBE_VERSION)


def _validator(kind: str, api_version: str):
    """Cached Draft 2020-12 validator built from kubernetes_validate's files.

    `kubernetes_validate.validate()` re-reads the 1.8 MB definitions file on
    every call (~25 ms); this builds the same validator once per kind.
    """
    key = (kind, api_version)
    with _validators_lock:
        if key not in _validators:
            root = _root_schema(kind, api_version)
            registry = Resource.from_contents(root) @ Registry()
            registry = Resource.from_contents(definitions_document()) @ registry
            _validators[key] = jsonschema.validators.Draft202012Validator(root, registry=registry)
        return _validators[key]


_fast_validators: dict = {}


def _fast_validator(kind: str, api_version: str):
    """The same schemas as `_validator`, compiled by jsonschema_rs (formats not asserted, as
    jsonschema doesn't by default): a yes/no answer in microseconds, where jsonschema walks
    the object in Python. None without jsonschema_rs."""
    if jsonschema_rs is None:
        return None
    key = (kind, api_version)
    with _validators_lock:
        if key not in _fast_validators:
            root, defs = _root_schema(kind, api_version), definitions_document()
            registry = jsonschema_rs.Registry([(defs["$id"], defs), (root["$id"], root)])
            _fast_validators[key] = jsonschema_rs.Draft202012Validator(root, registry=registry, validate_formats=False)
        return _fast_validators[key]


_GO_TYPES = {"string": "string", "boolean": "bool", "number": "float64", "object": "map[string]interface {}",
             "array": "[]interface {}"}


def _json_kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _struct_field(definition: str, path) -> str:
    """'ContainerPort.spec.template.spec.containers.ports.containerPort' like Go's decoder says."""
    defs = definitions()
    owner = definition.rsplit(".", 1)[-1]
    raw = defs[definition]
    for el in path:
        if isinstance(el, int):
            raw = raw.get("items", {})
        else:
            while "$ref" in raw:
                name = raw["$ref"].rsplit("/", 1)[-1]
                owner, raw = name.rsplit(".", 1)[-1], defs[name]
            raw = (raw.get("properties") or {}).get(el, {})
        while "$ref" in raw and isinstance(el, int):
            name = raw["$ref"].rsplit("/", 1)[-1]
            owner, raw = name.rsplit(".", 1)[-1], defs[name]
    dotted = ".".join(str(p) for p in path if not isinstance(p, int))
    return f"{owner}.{dotted}"


def schema_check(rt, obj: dict) -> list:
    """Raise 400 for type errors; return FieldErrors for schema `required`."""
    fast = _fast_validator(rt.kind, rt.api_version)
    if fast is not None and fast.is_valid(obj):
        return []  # nothing below would be found: most writes end here
    errs = []
    validator = _validator(rt.kind, rt.api_version)
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(err.absolute_path)
        if err.validator == "required":
            for name in err.validator_value:
                if isinstance(err.instance, dict) and name not in err.instance:
                    errs.append(E.required(fmt_path(path + (name,))))
        elif err.validator in ("type", "oneOf", "anyOf"):
            expected = err.validator_value if err.validator == "type" else ["string", "integer"]
            expected = [t for t in (expected if isinstance(expected, list) else [expected]) if t != "null"]
            fmt = err.schema.get("format") if isinstance(err.schema, dict) else None
            go_type = fmt if fmt in ("int32", "int64") else _GO_TYPES.get(expected[0] if expected else "", "value")
            if expected and expected[0] == "integer" and not fmt:
                go_type = "int64"
            raise E.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: cannot unmarshal '
                f'{_json_kind(err.instance)} into Go struct field {_struct_field(rt.definition, path)} '
                f'of type {go_type}')
        elif err.validator == "additionalProperties":
            continue  # unknown fields are pruned/handled before this point
        elif err.validator == "enum":
            errs.append(E.not_supported(fmt_path(path), err.instance, err.validator_value))
        else:
            errs.append(E.invalid(fmt_path(path), err.instance, err.message))
    return errs


def decode_check(rt, obj: dict):
    """Errors the real server raises while decoding (400), beyond JSON types."""
    fields = []
    if rt.kind == "Secret":
        fields = ["data"]
    elif rt.kind == "ConfigMap":
        fields = ["binaryData"]
    for f in fields:
        for key, value in (obj.get(f) or {}).items():
            if not isinstance(value, str):
                continue
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                pos = _bad_base64_position(value)
                raise E.bad_request(f'{rt.kind} in version "v1" cannot be handled as a {rt.kind}: illegal '
                                    f'base64 data at input byte {pos}')


def _bad_base64_position(value: str) -> int:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    for i, ch in enumerate(value):
        if ch not in allowed and ch != "=":
            return i
    return max(len(value) - 1, 0) if len(value) % 4 else len(value)


# ---------------------------------------------------------------------------
# 2. semantic validation
# ---------------------------------------------------------------------------
def metadata_errors(rt, obj: dict, name_check) -> list:
    meta = obj.get("metadata") or {}
    errs = []
    name = meta.get("name")
    if not name:
        errs.append(E.required("metadata.name", "name or generateName is required"))
    else:
        errs += _invalids("metadata.name", name, name_check(name))
    if rt.namespaced and not meta.get("namespace"):
        errs.append(E.required("metadata.namespace"))
    errs += labels_errors(meta.get("labels"), "metadata.labels")
    errs += annotations_errors(meta.get("annotations"), "metadata.annotations")
    return errs


def _port_errors(value, field) -> list:
    if not isinstance(value, int) or not 1 <= value <= 65535:
        return [E.invalid(field, value, MSG_PORT)]
    return []


PROTOCOLS = ["SCTP", "TCP", "UDP"]


def _container_errors(c, f, volume_names, port_names) -> list:
    errs = []
    name = c.get("name")
    if not name:
        errs.append(E.required(f"{f}.name"))
    else:
        errs += _invalids(f"{f}.name", name, dns1123_label(name))
    if not c.get("image"):
        errs.append(E.required(f"{f}.image"))
    elif c["image"] != c["image"].strip():
        errs.append(E.invalid(f"{f}.image", c["image"], "must not have leading or trailing whitespace"))
    policy = c.get("imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        errs.append(E.not_supported(f"{f}.imagePullPolicy", policy, ["Always", "IfNotPresent", "Never"]))
    for j, port in enumerate(c.get("ports") or []):
        pf = f"{f}.ports[{j}]"
        errs += _port_errors(port.get("containerPort"), f"{pf}.containerPort")
        if port.get("hostPort") is not None:
            errs += _port_errors(port["hostPort"], f"{pf}.hostPort")
        if port.get("protocol") not in PROTOCOLS:
            errs.append(E.not_supported(f"{pf}.protocol", port.get("protocol"), PROTOCOLS))
        if port.get("name"):
            errs += _invalids(f"{pf}.name", port["name"], iana_svc_name(port["name"]))
            if port["name"] in port_names:
                errs.append(E.duplicate(f"{pf}.name", port["name"]))
            port_names.add(port["name"])
    seen_env = set()
    for j, env in enumerate(c.get("env") or []):
        ef = f"{f}.env[{j}]"
        env_name = env.get("name")
        if not env_name:
            errs.append(E.required(f"{ef}.name"))
        elif "=" in env_name or not all(32 <= ord(ch) < 127 for ch in env_name):
            errs.append(E.invalid(f"{ef}.name", env_name, "a valid environment variable name must consist "
                                  "only of printable ASCII characters other than '='"))
        seen_env.add(env_name)
        source = env.get("valueFrom")
        if source is not None:
            if env.get("value"):
                errs.append(E.invalid(f"{ef}.valueFrom", "", "may not be specified when `value` is not empty"))
            kinds = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef")
                     if source.get(k)]
            if len(kinds) != 1:
                errs.append(E.invalid(f"{ef}.valueFrom", "", "must specify one of: `fieldRef`, "
                                      "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
            for ref in ("secretKeyRef", "configMapKeyRef"):
                if isinstance(source.get(ref), dict):
                    if not source[ref].get("key"):
                        errs.append(E.required(f"{ef}.valueFrom.{ref}.key"))
                    if not source[ref].get("name"):
                        errs.append(E.required(f"{ef}.valueFrom.{ref}.name"))
    mounts = set()
    for j, mount in enumerate(c.get("volumeMounts") or []):
        mf = f"{f}.volumeMounts[{j}]"
        if not mount.get("name"):
            errs.append(E.required(f"{mf}.name"))
        elif mount["name"] not in volume_names:
            errs.append(E.not_found_field(f"{mf}.name", mount["name"]))
        if not mount.get("mountPath"):
            errs.append(E.required(f"{mf}.mountPath"))
        elif mount["mountPath"] in mounts:
            errs.append(E.invalid(f"{mf}.mountPath", mount["mountPath"], "must be unique"))
        mounts.add(mount.get("mountPath"))
    return errs


def pod_spec_errors(spec, f, require_restart_always=False) -> list:
    errs = []
    if not isinstance(spec, dict):
        return [E.required(f)]
    volume_names = set()
    for i, vol in enumerate(spec.get("volumes") or []):
        vname = vol.get("name")
        vf = f"{f}.volumes[{i}]"
        if not vname:
            errs.append(E.required(f"{vf}.name"))
        else:
            errs += _invalids(f"{vf}.name", vname, dns1123_label(vname))
            if vname in volume_names:
                errs.append(E.duplicate(f"{vf}.name", vname))
        volume_names.add(vname)
    containers = spec.get("containers") or []
    if not containers:
        errs.append(E.required(f"{f}.containers"))
    names = set()
    port_names: set = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            cf = f"{f}.{group}[{i}]"
            errs += _container_errors(c, cf, volume_names, port_names)
            if c.get("name") in names:
                errs.append(E.duplicate(f"{cf}.name", c.get("name")))
            names.add(c.get("name"))
    policy = spec.get("restartPolicy")
    if require_restart_always and policy != "Always":
        errs.append(E.not_supported(f"{f}.restartPolicy", policy, ["Always"]))
    elif policy not in (None, "Always", "OnFailure", "Never"):
        errs.append(E.not_supported(f"{f}.restartPolicy", policy, ["Always", "Never", "OnFailure"]))
    dns = spec.get("dnsPolicy")
    if dns not in (None, "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"):
        errs.append(E.not_supported(f"{f}.dnsPolicy", dns, ["ClusterFirst", "ClusterFirstWithHostNet",
                                                             "Default", "None"]))
    for i, ref in enumerate(spec.get("imagePullSecrets") or []):
        if not ref.get("name"):
            errs.append(E.required(f"{f}.imagePullSecrets[{i}].name"))
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        errs.append(E.invalid(f"{f}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"))
    return errs


def _non_negative(errs, value, field):
    if isinstance(value, int) and value < 0:
        errs.append(E.invalid(field, value, "must be greater than or equal to 0"))


def _int_or_percent(value, field) -> list:
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]+%", value):
            return [E.invalid(field, value, "a valid percent string must be a numeric string followed by an "
                                           "ending '%' (e.g. '1%',  or '93%', regex used for validation is "
                                           "'[0-9]+%')")]
    elif isinstance(value, int) and value < 0:
        return [E.invalid(field, value, "must be greater than or equal to 0")]
    return []


def _is_zero(value) -> bool:
    return value == 0 or value == "0%"


def deployment_errors(obj, old) -> list:
    errs = metadata_errors(_RT_STUB, obj, dns1123_subdomain)
    spec = obj.get("spec") or {}
    _non_negative(errs, spec.get("replicas"), "spec.replicas")
    _non_negative(errs, spec.get("minReadySeconds"), "spec.minReadySeconds")
    _non_negative(errs, spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    selector = spec.get("selector")
    template = spec.get("template") or {}
    template_labels = (template.get("metadata") or {}).get("labels") or {}
    if selector is None:
        errs.append(E.required("spec.selector"))
    else:
        errs += selector_errors(selector, "spec.selector")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            errs.append(E.invalid("spec.selector", selector, "empty selector is invalid for deployment"))
        elif not selector_matches(selector, template_labels):
            errs.append(E.invalid("spec.template.metadata.labels", template_labels,
                                  "`selector` does not match template `labels`"))
    errs += labels_errors(template_labels, "spec.template.metadata.labels")
    errs += pod_spec_errors(template.get("spec"), "spec.template.spec", require_restart_always=True)
    strategy = spec.get("strategy") or {}
    stype = strategy.get("type")
    if stype not in (None, "RollingUpdate", "Recreate"):
        errs.append(E.not_supported("spec.strategy.type", stype, ["Recreate", "RollingUpdate"]))
    ru = strategy.get("rollingUpdate")
    if stype == "Recreate" and ru is not None:
        errs.append(E.forbidden("spec.strategy.rollingUpdate",
                                "may not be specified when strategy `type` is 'Recreate'"))
    elif isinstance(ru, dict):
        errs += _int_or_percent(ru.get("maxUnavailable"), "spec.strategy.rollingUpdate.maxUnavailable")
        errs += _int_or_percent(ru.get("maxSurge"), "spec.strategy.rollingUpdate.maxSurge")
        if _is_zero(ru.get("maxUnavailable")) and _is_zero(ru.get("maxSurge")):
            errs.append(E.invalid("spec.strategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"),
                                  "may not be 0 when `maxSurge` is 0"))
    pds, mrs = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds", 0)
    if isinstance(pds, int) and isinstance(mrs, int) and pds <= mrs:
        errs.append(E.invalid("spec.progressDeadlineSeconds", pds,
                              "must be greater than minReadySeconds"))
    if old is not None:
        old_sel = (old.get("spec") or {}).get("selector")
        if selector is not None and old_sel != selector:
            errs.append(E.invalid("spec.selector", selector, "field is immutable"))
    return errs


SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


def service_errors(obj, old) -> list:
    errs = metadata_errors(_RT_STUB, obj, dns1035_label)
    spec = obj.get("spec") or {}
    stype = spec.get("type", "ClusterIP")
    if stype not in SERVICE_TYPES:
        errs.append(E.not_supported("spec.type", stype, SERVICE_TYPES))
    ports = spec.get("ports") or []
    if stype == "ExternalName":
        if not spec.get("externalName"):
            errs.append(E.required("spec.externalName"))
    elif not ports and spec.get("clusterIP") != "None":
        errs.append(E.required("spec.ports"))
    names, seen = set(), set()
    for i, port in enumerate(ports):
        f = f"spec.ports[{i}]"
        pname = port.get("name")
        if len(ports) > 1 and not pname:
            errs.append(E.required(f"{f}.name"))
        elif pname:
            errs += _invalids(f"{f}.name", pname, dns1123_label(pname))
            if pname in names:
                errs.append(E.duplicate(f"{f}.name", pname))
            names.add(pname)
        if "port" not in port:
            errs.append(E.required(f"{f}.port"))
        else:
            errs += _port_errors(port["port"], f"{f}.port")
        protocol = port.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            errs.append(E.not_supported(f"{f}.protocol", protocol, PROTOCOLS))
        target = port.get("targetPort")
        if isinstance(target, int):
            errs += _port_errors(target, f"{f}.targetPort")
        elif isinstance(target, str):
            errs += _invalids(f"{f}.targetPort", target, iana_svc_name(target))
        node_port = port.get("nodePort")
        if node_port:
            if stype not in ("NodePort", "LoadBalancer"):
                errs.append(E.forbidden(f"{f}.nodePort", "may not be used when `type` is 'ClusterIP'"))
            else:
                errs += _port_errors(node_port, f"{f}.nodePort")
        ident = (port.get("port"), protocol)
        if ident in seen:
            errs.append(E.duplicate(f, {"port": port.get("port"), "protocol": protocol}))
        seen.add(ident)
    errs += labels_errors(spec.get("selector"), "spec.selector")
    affinity = spec.get("sessionAffinity")
    if affinity not in (None, "None", "ClientIP"):
        errs.append(E.not_supported("spec.sessionAffinity", affinity, ["ClientIP", "None"]))
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        new_ip = spec.get("clusterIP")
        if old_ip and new_ip and old_ip != new_ip and stype != "ExternalName" and \
                (old.get("spec") or {}).get("type") != "ExternalName":
            errs.append(E.invalid("spec.clusterIPs[0]", new_ip, "may not change once set"))
    return errs


def _data_keys(errs, obj, fields):
    seen = set()
    for field in fields:
        for key in (obj.get(field) or {}):
            msgs = []
            if not RX_CONFIG_KEY.match(key):
                msgs.append(MSG_CONFIG_KEY)
            if len(key) > 253:
                msgs.append("must be no more than 253 characters")
            if key in (".", "..") or key.startswith(".."):
                msgs.append("must not be '.'" if key == "." else "must not be '..'" if key == ".." else
                            "must not start with '..'")
            errs += _invalids(f"{field}[{key}]", key, msgs)
            if key in seen:
                errs.append(E.invalid(f"{field}[{key}]", key, "duplicate of key present in data"))
            seen.add(key)


def secret_errors(obj, old) -> list:
    errs = metadata_errors(_RT_STUB, obj, dns1123_subdomain)
    _data_keys(errs, obj, ["data"])
    data = obj.get("data") or {}
    size = sum(len(base64.b64decode(v)) for v in data.values() if isinstance(v, str))
    if size > 1024 * 1024:
        errs.append(E.too_long("data", 1024 * 1024))
    stype = obj.get("type")
    required = {"kubernetes.io/tls": ["tls.crt", "tls.key"], "kubernetes.io/dockerconfigjson": [".dockerconfigjson"],
                "kubernetes.io/dockercfg": [".dockercfg"], "kubernetes.io/ssh-auth": ["ssh-privatekey"]}
    for key in required.get(stype, []):
        if key not in data:
            errs.append(E.required(f"data[{key}]"))
    if stype == "kubernetes.io/dockerconfigjson" and ".dockerconfigjson" in data:
        try:
            json.loads(base64.b64decode(data[".dockerconfigjson"]))
        except ValueError as exc:
            errs.append(E.invalid("data[.dockerconfigjson]", "<secret contents redacted>", str(exc)))
    if old is not None:
        if old.get("type") != stype:
            errs.append(E.invalid("type", stype, "field is immutable"))
        if old.get("immutable") and (old.get("data") != obj.get("data")):
            errs.append(E.forbidden("data", "field is immutable when `immutable` is set"))
        if old.get("immutable") and not obj.get("immutable"):
            errs.append(E.forbidden("immutable", "field is immutable when `immutable` is set"))
    return errs


def configmap_errors(obj, old) -> list:
    errs = metadata_errors(_RT_STUB, obj, dns1123_subdomain)
    _data_keys(errs, obj, ["data", "binaryData"])
    size = sum(len(k) + len(v) for k, v in (obj.get("data") or {}).items() if isinstance(v, str))
    if size > 1024 * 1024:
        errs.append(E.too_long("", 1024 * 1024))
    if old is not None and old.get("immutable"):
        if old.get("data") != obj.get("data") or old.get("binaryData") != obj.get("binaryData"):
            errs.append(E.forbidden("data", "field is immutable when `immutable` is set"))
    return errs


def namespace_errors(obj, old) -> list:
    return metadata_errors(_RT_CLUSTER_STUB, obj, dns1123_label)


PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]


def _backend_errors(backend, f) -> list:
    errs = []
    if not isinstance(backend, dict):
        return [E.required(f)]
    service, resource = backend.get("service"), backend.get("resource")
    if service and resource:
        errs.append(E.invalid(f, backend, "cannot set both resource and service backends"))
    elif not service and not resource:
        errs.append(E.invalid(f, backend, "resource or service backend is required"))
    if isinstance(service, dict):
        if not service.get("name"):
            errs.append(E.required(f"{f}.service.name"))
        else:
            errs += _invalids(f"{f}.service.name", service["name"], dns1035_label(service["name"]))
        port = service.get("port") or {}
        has_name, has_number = bool(port.get("name")), bool(port.get("number"))
        if has_name and has_number:
            errs.append(E.invalid(f"{f}.service.port", port, "cannot set both port name & port number"))
        elif has_number:
            errs += _port_errors(port["number"], f"{f}.service.port.number")
        elif has_name:
            errs += _invalids(f"{f}.service.port.name", port["name"], iana_svc_name(port["name"]))
        else:
            errs.append(E.invalid(f"{f}.service.port", port, "port name or number is required"))
    return errs


def _host_errors(host, f) -> list:
    if re.fullmatch(r"[0-9.]+", host):
        return [E.invalid(f, host, "must be a DNS name, not an IP address")]
    check = host[2:] if host.startswith("*.") else host
    return _invalids(f, host, dns1123_subdomain(check))


def ingress_errors(obj, old) -> list:
    errs = metadata_errors(_RT_STUB, obj, dns1123_subdomain)
    spec = obj.get("spec") or {}
    rules = spec.get("rules") or []
    if not rules and not spec.get("defaultBackend"):
        errs.append(E.invalid("spec", spec, "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        errs += _backend_errors(spec["defaultBackend"], "spec.defaultBackend")
    for i, rule in enumerate(rules):
        f = f"spec.rules[{i}]"
        if rule.get("host"):
            errs += _host_errors(rule["host"], f"{f}.host")
        http = rule.get("http")
        if http is None:
            continue
        paths = http.get("paths") or []
        if not paths:
            errs.append(E.required(f"{f}.http.paths"))
        for j, p in enumerate(paths):
            pf = f"{f}.http.paths[{j}]"
            ptype = p.get("pathType")
            if not ptype:
                errs.append(E.required(f"{pf}.pathType", "pathType must be specified"))
            elif ptype not in PATH_TYPES:
                errs.append(E.not_supported(f"{pf}.pathType", ptype, PATH_TYPES))
            path = p.get("path", "")
            if ptype in ("Exact", "Prefix") and not str(path).startswith("/"):
                errs.append(E.invalid(f"{pf}.path", path, "must be an absolute path"))
            errs += _backend_errors(p.get("backend"), f"{pf}.backend")
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate(tls.get("hosts") or []):
            errs += _host_errors(host, f"spec.tls[{i}].hosts[{j}]")
    return errs


def crd_errors(obj, old) -> list:
    from .schema import structural_errors  # local: keeps module import order simple

    errs = metadata_errors(_RT_CLUSTER_STUB, obj, dns1123_subdomain)
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    group, plural = spec.get("group", ""), names.get("plural", "")
    name = (obj.get("metadata") or {}).get("name", "")
    if not group:
        errs.append(E.required("spec.group"))
    elif "." not in group:
        errs.append(E.invalid("spec.group", group, "should be a domain with at least one dot"))
    else:
        errs += _invalids("spec.group", group, dns1123_subdomain(group))
    if not plural:
        errs.append(E.required("spec.names.plural"))
    else:
        errs += _invalids("spec.names.plural", plural, dns1123_label(plural))
    if not names.get("kind"):
        errs.append(E.required("spec.names.kind"))
    if name and group and plural and name != f"{plural}.{group}":
        errs.append(E.invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    scope = spec.get("scope")
    if scope not in ("Cluster", "Namespaced"):
        errs.append(E.not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        errs.append(E.invalid("spec.versions", versions, "must have exactly one version marked as storage "
                                                         "version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errs.append(E.invalid("spec.versions", versions, "must have exactly one version marked as storage "
                                                         "version"))
    seen = set()
    for i, v in enumerate(versions):
        f = f"spec.versions[{i}]"
        vname = v.get("name", "")
        errs += _invalids(f"{f}.name", vname, dns1035_label(vname))
        if vname in seen:
            errs.append(E.invalid("spec.versions", versions, "must contain unique version names"))
        seen.add(vname)
        root = (v.get("schema") or {}).get("openAPIV3Schema")
        if root is None:
            errs.append(E.required(f"{f}.schema.openAPIV3Schema", "schemas are required"))
        else:
            if root.get("type") != "object":
                errs.append(E.invalid(f"{f}.schema.openAPIV3Schema.type", root.get("type"),
                                      "must be object at the root"))
            errs += structural_errors(root, f"{f}.schema.openAPIV3Schema")
    if old is not None:
        old_spec = old.get("spec") or {}
        if old_spec.get("scope") != spec.get("scope"):
            errs.append(E.invalid("spec.scope", spec.get("scope"), "field is immutable"))
        if old_spec.get("group") != group:
            errs.append(E.invalid("spec.group", group, "field is immutable"))
    return errs


class _Stub:
    def __init__(self, namespaced):
        self.namespaced = namespaced


_RT_STUB, _RT_CLUSTER_STUB = _Stub(True), _Stub(False)

SEMANTIC = {
    "Deployment": deployment_errors, "Service": service_errors, "Secret": secret_errors,
    "ConfigMap": configmap_errors, "Namespace": namespace_errors, "Ingress": ingress_errors,
    "CustomResourceDefinition": crd_errors,
}


def validate_builtin(rt, obj: dict, old) -> list:
    """All 422 causes for a built-in object (after decode checks passed)."""
    errs = schema_check(rt, obj)
    errs += SEMANTIC[rt.kind](obj, old)
    # One error per (field, message) like the real ErrorList after dedup.
    out, seen = [], set()
    for e in errs:
        key = str(e)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def validate_custom(rt, obj: dict) -> list:
    """Metadata rules plus the CRD's structural schema."""
    from .schema import validate_crd_value

    errs = metadata_errors(rt, obj, dns1123_subdomain)
    root = dict(rt.crd_schema or {})
    props = dict(root.get("properties") or {})
    props.pop("metadata", None)  # metadata is validated above, as the real server does
    root["properties"] = props
    body = {k: v for k, v in obj.items() if k != "metadata"}
    errs += validate_crd_value(body, root, ())
    return errs
