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
