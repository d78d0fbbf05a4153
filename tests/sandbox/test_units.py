"""Pure-function tests of the sandbox internals (no server)."""
import pytest

from sandbox import apply as ssa
from sandbox import errors as E
from sandbox import patch as P
from sandbox import schema
from sandbox.selectors import parse_field_selector, parse_label_selector

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"


def test_label_selector_parser():
    match = parse_label_selector("env in (prod, staging),!canary,tier!=db")
    assert match({"env": "prod"}) and match({"env": "staging", "tier": "web"})
    assert not match({"env": "dev"}) and not match({"env": "prod", "canary": ""})
    assert not match({"env": "prod", "tier": "db"})
    assert parse_label_selector("n>3")({"n": "4"}) and not parse_label_selector("n<3")({"n": "4"})
    with pytest.raises(E.ApiError):
        parse_label_selector("a b")


def test_field_selector_parser():
    match = parse_field_selector("metadata.name=x,metadata.namespace!=y")
    assert match({"metadata": {"name": "x", "namespace": "z"}})
    assert not match({"metadata": {"name": "x", "namespace": "y"}})


def test_merge_patch_rfc7386():
    assert P.merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == \
        {"a": {"c": 2, "d": 3}, "l": [2]}


def test_json_patch_ops():
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = P.json_patch(doc, [{"op": "add", "path": "/a/-", "value": 3}, {"op": "move", "from": "/b/c",
                                                                          "path": "/d"},
                             {"op": "copy", "from": "/d", "path": "/e"}, {"op": "remove", "path": "/a/0"}])
    assert out == {"a": [2, 3], "b": {}, "d": 1, "e": 1} and doc == {"a": [1, 2], "b": {"c": 1}}
    with pytest.raises(P.PatchFailed):
        P.json_patch(doc, [{"op": "replace", "path": "/zz", "value": 1}])


def test_strategic_merge_uses_schema_markers():
    node = schema.builtin(DEPLOYMENT)
    live = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x", "ports": [
        {"containerPort": 80, "protocol": "TCP"}]}], "volumes": [{"name": "v", "emptyDir": {}}]}}}}
    patch = {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "ports": [{"containerPort": 81}]}],
        "$setElementOrder/containers": [{"name": "a"}]}}}}
    out = P.strategic_merge(live, patch, node)
    container = out["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "x" and [p["containerPort"] for p in container["ports"]] == [80, 81]
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]


def test_field_sets_round_trip_fields_v1():
    node = schema.builtin(DEPLOYMENT)
    obj = {"metadata": {"name": "x", "labels": {"a": "1"}},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "1"}},
                    "template": {"spec": {"containers": [{"name": "c", "image": "i", "args": ["x"]}]}}}}
    paths = ssa.scope(ssa.field_set(obj, node), "main")
    assert ("f:spec", "f:selector") in paths  # LabelSelector is x-kubernetes-map-type: atomic
    assert ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"c"}', "f:args") in paths
    assert ("f:metadata", "f:name") not in paths
    assert ssa.from_fields_v1(ssa.to_fields_v1(paths)) == paths
    assert ssa.human_path(("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"c"}', "f:image")) == \
        '.spec.template.spec.containers[name="c"].image'


def test_crd_schema_validation_and_defaults():
    raw = {"type": "object", "properties": {
        "spec": {"type": "object", "required": ["a"], "properties": {
            "a": {"type": "string", "maxLength": 3}, "n": {"type": "integer", "default": 5},
            "ios": {"x-kubernetes-int-or-string": True}, "m": {"type": "object",
                                                             "additionalProperties": {"type": "boolean"}}}}}}
    obj = {"spec": {"a": "toolong", "ios": "50%", "m": {"x": "no"}}}
    schema.apply_crd_defaults(obj, raw)
    assert obj["spec"]["n"] == 5
    errs = {e.field: str(e) for e in schema.validate_crd_value(obj, raw, ())}
    assert errs == {"spec.a": "spec.a: Too long: may not be more than 3 bytes",
                    "spec.m.x": 'spec.m.x: Invalid value: "string": spec.m.x in body must be of type boolean: '
                                '"string"'}


def test_status_error_shapes():
    err = E.invalid_object(type("RT", (), {"kind": "Service", "group": "", "plural": "services"})(), "web",
                           [E.required("spec.ports")])
    assert err.status() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": 'Service "web" is invalid: spec.ports: Required value', "reason": "Invalid",
                            "details": {"name": "web", "kind": "Service", "causes": [
                                {"reason": "FieldValueRequired", "message": "Required value",
                                 "field": "spec.ports"}]}, "code": 422}


def _schema_errors(kind, api_version, obj) -> list:
    from sandbox import validation

    return [e.validator for e in validation._validator(kind, api_version).iter_errors(obj)
            if e.validator != "additionalProperties"]  # unknown fields are pruned before the check


@pytest.mark.parametrize("change", [
    None,
    lambda d: d["spec"].update(replicas="3"),
    lambda d: d["spec"].update(replicas=1.5),
    lambda d: d["spec"].update(replicas=True),
    lambda d: d["spec"].update(replicas=2.0),
    lambda d: d["spec"].pop("selector"),
    lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"),
    lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="80"),
    lambda d: d["spec"]["template"]["spec"]["containers"][0].update(resources={"limits": {"cpu": 1}}),
    lambda d: d["spec"]["template"]["spec"]["containers"][0].update(resources={"limits": {"cpu": [1]}}),
    lambda d: d["metadata"].update(labels={"a": 1}),
    lambda d: d["metadata"].update(creationTimestamp="not a time"),
    lambda d: d.update(status={"observedGeneration": "1", "conditions": [{"type": "Available"}]}),
    lambda d: d.update(status={"conditions": [{"status": "True"}]}),
    lambda d: d["spec"].update(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}),
    lambda d: d["spec"].update(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": [1]}}),
])
def test_fast_schema_check_agrees_with_jsonschema(change):
    """The compiled validator only answers "valid": it must say so exactly when jsonschema finds nothing."""
    from sandbox import validation
    from tests.sandbox.manifests import deployment

    obj = deployment(replicas=2)
    obj["metadata"]["namespace"] = "default"
    if change is not None:
        change(obj)
    fast = validation._fast_validator("Deployment", "apps/v1")
    if fast is None:
        pytest.skip("jsonschema_rs is not installed")
    assert fast.is_valid(obj) == (not _schema_errors("Deployment", "apps/v1", obj))


@pytest.mark.parametrize("kind,api_version,obj", [
    ("Service", "v1", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                       "spec": {"ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}]}}),
    ("Service", "v1", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                       "spec": {"ports": [{"port": "80"}]}}),
    ("Secret", "v1", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "YQ=="}}),
    ("Secret", "v1", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": 1}}),
    ("Ingress", "networking.k8s.io/v1", {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                         "metadata": {"name": "i"}, "spec": {"rules": [{"host": "a.example"}]}}),
    ("Ingress", "networking.k8s.io/v1", {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                         "metadata": {"name": "i"}, "spec": {"rules": [{"http": {"paths": [{}]}}]}}),
    ("Namespace", "v1", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "labels": {"a": "b"}}}),
])
def test_fast_schema_check_agrees_on_other_kinds(kind, api_version, obj):
    from sandbox import validation

    fast = validation._fast_validator(kind, api_version)
    if fast is None:
        pytest.skip("jsonschema_rs is not installed")
    assert fast.is_valid(obj) == (not _schema_errors(kind, api_version, obj))


def test_apply_body_read_as_json_when_it_is_json():
    from sandbox.api import _json_document

    assert _json_document(b' {"a": 1e3, "b": "\\u00e9", "c": [true, null]}') == {"a": 1000.0, "b": "\u00e9", "c": [True, None]}
    # Anything else is the YAML decoder's: YAML text, a JSON array, NaN, a flow mapping that isn't JSON.
    assert _json_document(b"a: 1\n") is None
    assert _json_document(b"[1]") is None
    assert _json_document(b'{"a": NaN}') is None
    assert _json_document(b"{a: 1}") is None
    assert _json_document(b"") is None and _json_document(None) is None


def test_no_op_check_ignores_only_resource_version_and_managed_field_times():
    from sandbox.api import _same_but_volatile

    def obj(**meta):
        entry = {"manager": "m", "operation": "Apply", "time": meta.pop("time", "t1"), "fieldsV1": {"f:a": {}}}
        return {"apiVersion": "v1", "kind": "X", "spec": {"a": 1},
                "metadata": {"name": "x", "resourceVersion": meta.pop("rv", "1"), "managedFields": [entry], **meta}}

    assert _same_but_volatile(obj(), obj(rv="2", time="t2"))
    assert not _same_but_volatile(obj(), obj(labels={"a": "b"}))
    other = obj()
    other["spec"]["a"] = 2
    assert not _same_but_volatile(obj(), other)
    other = obj()
    other["metadata"]["managedFields"][0]["manager"] = "n"
    assert not _same_but_volatile(obj(), other)
    other = obj()
    other["metadata"]["managedFields"].append({"manager": "n"})
    assert not _same_but_volatile(obj(), other)
    other = obj()
    del other["metadata"]["managedFields"]
    assert not _same_but_volatile(obj(), other)
    other = obj()
    other["status"] = {}
    assert not _same_but_volatile(obj(), other)


@pytest.mark.parametrize("which", ["main", "status", "all"])
def test_field_set_walks_only_what_its_scope_keeps(which):
    from sandbox.kinds import Registry

    rt = Registry().lookup("apps", "v1", "deployments")
    from tests.sandbox.manifests import deployment

    obj = deployment(replicas=2)
    obj["metadata"].update(namespace="default", uid="u", resourceVersion="7", generation=3, annotations={"a": "b"},
                           managedFields=[{"manager": "m", "operation": "Apply", "fieldsV1": {"f:spec": {}}}])
    obj["status"] = {"observedGeneration": 3, "conditions": [{"type": "Available", "status": "True"}]}
    node = rt.root_node()
    full = ssa.scope(ssa.field_set(obj, node), which)
    assert ssa.scope(ssa.field_set(obj, node, which), which) == full
    assert full  # something is tracked in every scope
