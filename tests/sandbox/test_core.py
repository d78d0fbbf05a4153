"""Namespaces, services, secrets and configmaps through CoreV1Api."""
import base64

from .manifests import api_error, deployment, service


def test_system_namespaces_exist_and_namespace_crud(core):
    names = {n.metadata.name for n in core.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    created = core.create_namespace({"metadata": {"name": "team"}})
    assert created.status.phase == "Active"
    assert created.metadata.labels["kubernetes.io/metadata.name"] == "team"
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert core.read_namespace("team").metadata.uid == created.metadata.uid


def test_namespace_name_must_be_dns_label(core):
    exc, body = api_error(core.create_namespace, {"metadata": {"name": "Team.One"}})
    assert exc.status == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith('Namespace "Team.One" is invalid: metadata.name: Invalid value: "Team.One": '
                                      "a lowercase RFC 1123 label must consist of")
    assert body["details"]["causes"][0]["field"] == "metadata.name"


def test_missing_namespace_is_404(core):
    exc, body = api_error(core.create_namespaced_config_map, "ghost", {"metadata": {"name": "c"}})
    assert exc.status == 404
    assert body["message"] == 'namespaces "ghost" not found'
    assert body["details"] == {"name": "ghost", "kind": "namespaces"}


def test_deleting_namespace_deletes_its_objects(sandbox, core, apps, ns):
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    apps.create_namespaced_deployment(ns, deployment())
    core.create_namespaced_config_map("default", {"metadata": {"name": "keep"}})
    # Like the real server: the namespace itself, Terminating, rather than a Status
    # (the v37 client hands DELETE responses back as plain dicts).
    gone = core.delete_namespace(ns)
    assert gone["kind"] == "Namespace"
    assert gone["status"]["phase"] == "Terminating" and gone["metadata"]["deletionTimestamp"]
    assert sandbox.get_object("v1", "namespaces", None, ns) is None
    assert sandbox.get_object("apps/v1", "deployments", ns, "web") is None
    assert sandbox.get_object("v1", "configmaps", ns, "cfg") is None
    assert sandbox.get_object("v1", "configmaps", "default", "keep") is not None
    exc, _ = api_error(core.read_namespace, ns)
    assert exc.status == 404


def test_default_namespace_cannot_be_deleted(core):
    exc, body = api_error(core.delete_namespace, "default")
    assert exc.status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == 'namespaces "default" is forbidden: this namespace may not be deleted'


def test_service_defaults(core, ns):
    svc = core.create_namespaced_service(ns, service(ports=[{"name": "http", "port": 80, "targetPort": 8080},
                                                           {"name": "admin", "port": 9000}]))
    assert svc.spec.type == "ClusterIP"
    assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.cluster_ips == [svc.spec.cluster_ip]
    assert svc.spec.session_affinity == "None"
    assert [(p.protocol, p.target_port) for p in svc.spec.ports] == [("TCP", 8080), ("TCP", 9000)]
    other = core.create_namespaced_service(ns, service("other"))
    assert other.spec.cluster_ip != svc.spec.cluster_ip
    node_port = core.create_namespaced_service(ns, service("np", type="NodePort"))
    assert 30000 <= node_port.spec.ports[0].node_port <= 32767


def test_service_validation(core, ns):
    exc, body = api_error(core.create_namespaced_service, ns, service(ports=[]))
    assert exc.status == 422
    assert body["message"] == 'Service "web" is invalid: spec.ports: Required value'
    _, body = api_error(core.create_namespaced_service, ns, service("1web"))
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert "a DNS-1035 label must consist of lower case" in body["message"]
    _, body = api_error(core.create_namespaced_service, ns, service(ports=[{"port": 70000}]))
    # targetPort defaults to port, so it is reported too (as the real server does)
    assert {"reason": "FieldValueInvalid", "field": "spec.ports[0].port",
            "message": "Invalid value: 70000: must be between 1 and 65535, inclusive"} in body["details"]["causes"]
    _, body = api_error(core.create_namespaced_service, ns, service(ports=[{"port": 80}, {"port": 81}]))
    assert {c["field"] for c in body["details"]["causes"]} == {"spec.ports[0].name", "spec.ports[1].name"}


def test_service_replace_keeps_cluster_ip_and_rejects_change(core, ns):
    svc = core.create_namespaced_service(ns, service())
    body = service(ports=[{"port": 81}])
    replaced = core.replace_namespaced_service("web", ns, body)
    assert replaced.spec.cluster_ip == svc.spec.cluster_ip
    body["spec"]["clusterIP"] = "10.96.200.200"
    exc, err = api_error(core.replace_namespaced_service, "web", ns, body)
    assert exc.status == 422 and "may not change once set" in err["message"]


def test_secret_defaults_string_data_and_base64(core, ns):
    sec = core.create_namespaced_secret(ns, {"metadata": {"name": "creds"}, "stringData": {"PASSWORD": "hunter2"},
                                             "data": {"USER": base64.b64encode(b"admin").decode()}})
    assert sec.type == "Opaque"
    assert base64.b64decode(sec.data["PASSWORD"]) == b"hunter2"
    assert sec.string_data is None
    exc, body = api_error(core.create_namespaced_secret, ns, {"metadata": {"name": "bad"},
                                                              "data": {"KEY": "not base64!"}})
    assert exc.status == 400 and body["reason"] == "BadRequest"
    assert body["message"].startswith('Secret in version "v1" cannot be handled as a Secret: illegal base64 data')
    exc, body = api_error(core.create_namespaced_secret, ns, {"metadata": {"name": "bad"}, "data": {"a b": ""}})
    assert exc.status == 422 and body["details"]["causes"][0]["field"] == "data[a b]"
    exc, body = api_error(core.create_namespaced_secret, ns, {"metadata": {"name": "tls"},
                                                              "type": "kubernetes.io/tls", "data": {}})
    assert {c["field"] for c in body["details"]["causes"]} == {"data[tls.crt]", "data[tls.key]"}


def test_secret_type_is_immutable(core, ns):
    core.create_namespaced_secret(ns, {"metadata": {"name": "s"}})
    exc, body = api_error(core.patch_namespaced_secret, "s", ns, {"type": "kubernetes.io/basic-auth"})
    assert exc.status == 422 and "type: Invalid value" in body["message"] and "field is immutable" in body["message"]


def test_configmap_crud_and_already_exists(core, ns):
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg", "labels": {"a": "1"}},
                                                "data": {"k": "v"}})
    exc, body = api_error(core.create_namespaced_config_map, ns, {"metadata": {"name": "cfg"}})
    assert exc.status == 409 and body["reason"] == "AlreadyExists"
    assert body["message"] == 'configmaps "cfg" already exists'
    assert body["details"] == {"name": "cfg", "kind": "configmaps"}
    cm.data["k"] = "w"
    replaced = core.replace_namespaced_config_map("cfg", ns, cm)
    assert replaced.data == {"k": "w"}
    assert int(replaced.metadata.resource_version) > int(cm.metadata.resource_version)
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["cfg"]
    status = core.delete_namespaced_config_map("cfg", ns)
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert status["details"] == {"name": "cfg", "kind": "configmaps", "uid": cm.metadata.uid}
    exc, body = api_error(core.read_namespaced_config_map, "cfg", ns)
    assert exc.status == 404 and body["message"] == 'configmaps "cfg" not found'


def test_labels_are_validated(core, ns):
    exc, body = api_error(core.create_namespaced_config_map, ns,
                          {"metadata": {"name": "c", "labels": {"bad key": "ok", "fine": "bad value"}}})
    assert exc.status == 422
    messages = [c["message"] for c in body["details"]["causes"]]
    assert all(c["field"] == "metadata.labels" for c in body["details"]["causes"])
    assert any("name part must consist of alphanumeric characters" in m for m in messages)
    assert any("a valid label must be an empty string or consist of alphanumeric" in m for m in messages)


def test_generate_name_and_dry_run(sandbox, core, ns):
    created = core.create_namespaced_config_map(ns, {"metadata": {"generateName": "cfg-"}})
    assert created.metadata.name.startswith("cfg-") and len(created.metadata.name) == 9
    dry = core.create_namespaced_config_map(ns, {"metadata": {"name": "dry"}}, dry_run="All")
    assert dry.metadata.name == "dry"
    assert sandbox.get_object("v1", "configmaps", ns, "dry") is None


def test_delete_service_returns_the_object_and_delete_collection(core, ns):
    core.create_namespaced_service(ns, service())
    gone = core.delete_namespaced_service("web", ns)  # the client types this as V1Service: the real one returns it
    assert gone.kind == "Service" and gone.metadata.name == "web"
    for name, tier in [("a", "x"), ("b", "x"), ("c", "y")]:
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": {"tier": tier}}})
    deleted = core.delete_collection_namespaced_config_map(ns, label_selector="tier=x")
    assert deleted.kind == "ConfigMapList"  # the deleted items come back as a list, as on a real server
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["c"]
