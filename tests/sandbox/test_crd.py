"""CRDs: install, custom objects, status subresource, schema validation, deletion."""
import pytest

from .manifests import DIGEST, GROUP, api_error, crd, image_source, raw

V = "v1alpha1"
PLURAL = "imagesources"


@pytest.fixture
def installed(ext):
    return ext.create_custom_resource_definition(crd())


def test_crd_is_established(ext):
    created = ext.create_custom_resource_definition(crd())
    conditions = {c.type: c.status for c in created.status.conditions}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert created.status.accepted_names.kind == "ImageSource"
    assert created.status.stored_versions == [V]
    assert created.spec.conversion.strategy == "None"
    assert ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").metadata.generation == 1


def test_crd_validation(kube_api_client, ext):
    bad = crd()
    bad["metadata"]["name"] = "wrong.example.com"
    exc, status = api_error(ext.create_custom_resource_definition, bad)
    assert exc.status == 422
    assert 'metadata.name: Invalid value: "wrong.example.com": must be spec.names.plural+"."+spec.group' \
        in status["message"]
    no_schema = crd()
    del no_schema["spec"]["versions"][0]["schema"]
    code, status = raw(kube_api_client, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                       no_schema)
    assert code == 422
    assert "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required" in status["message"]


def test_custom_object_crud(custom, installed, ns):
    created = custom.create_namespaced_custom_object(GROUP, V, ns, PLURAL, image_source(digest=DIGEST))
    assert created["apiVersion"] == f"{GROUP}/{V}" and created["kind"] == "ImageSource"
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    assert created["spec"]["binding"] == "track_latest"  # schema default
    got = custom.get_namespaced_custom_object(GROUP, V, ns, PLURAL, "src")
    assert got["spec"]["digest"] == DIGEST
    listed = custom.list_namespaced_custom_object(GROUP, V, ns, PLURAL)
    assert listed["kind"] == "ImageSourceList" and [i["metadata"]["name"] for i in listed["items"]] == ["src"]
    assert listed["items"][0]["kind"] == "ImageSource"
    patched = custom.patch_namespaced_custom_object(GROUP, V, ns, PLURAL, "src", {"spec": {"replicas": 2}})
    assert patched["spec"]["replicas"] == 2 and patched["metadata"]["generation"] == 2
    got = custom.get_namespaced_custom_object(GROUP, V, ns, PLURAL, "src")
    got["spec"]["image"] = "registry.local/other"
    replaced = custom.replace_namespaced_custom_object(GROUP, V, ns, PLURAL, "src", got)
    assert replaced["spec"]["image"] == "registry.local/other"
    exc, status = api_error(custom.create_namespaced_custom_object, GROUP, V, ns, PLURAL, image_source())
    assert exc.status == 409 and status["message"] == f'{PLURAL}.{GROUP} "src" already exists'
    custom.delete_namespaced_custom_object(GROUP, V, ns, PLURAL, "src")
    exc, status = api_error(custom.get_namespaced_custom_object, GROUP, V, ns, PLURAL, "src")
    assert exc.status == 404 and status["message"] == f'{PLURAL}.{GROUP} "src" not found'
    assert status["details"] == {"name": "src", "group": GROUP, "kind": PLURAL}


def test_replace_requires_resource_version(custom, installed, ns):
    custom.create_namespaced_custom_object(GROUP, V, ns, PLURAL, image_source())
    exc, status = api_error(custom.replace_namespaced_custom_object, GROUP, V, ns, PLURAL, "src", image_source())
    assert exc.status == 422
    assert "metadata.resourceVersion: Invalid value: 0: must be specified for an update" in status["message"]


def test_status_subresource(custom, installed, ns):
    body = image_source()
    body["status"] = {"phase": "ignored"}
    created = custom.create_namespaced_custom_object(GROUP, V, ns, PLURAL, body)
    assert "status" not in created  # status is not settable through the main endpoint
    artifact = {"image": "registry.local/app", "digest": DIGEST, "publishedAt": "2025-01-01T00:00:00Z"}
    updated = custom.patch_namespaced_custom_object_status(
        GROUP, V, ns, PLURAL, "src", {"status": {"latestArtifact": artifact}, "spec": {"image": "nope"}})
    assert updated["status"]["latestArtifact"] == artifact
    assert updated["spec"]["image"] == "registry.local/app"
    assert updated["metadata"]["generation"] == 1
    main = custom.patch_namespaced_custom_object(GROUP, V, ns, PLURAL, "src", {"status": {"phase": "x"},
                                                                            "spec": {"replicas": 1}})
    assert main["status"] == {"latestArtifact": artifact}
    assert main["metadata"]["generation"] == 2
    read = custom.get_namespaced_custom_object_status(GROUP, V, ns, PLURAL, "src")
    assert read["status"]["latestArtifact"]["digest"] == DIGEST


def test_without_status_subresource_status_is_plain_data(custom, ext, ns):
    ext.create_custom_resource_definition(crd(status=False))
    body = image_source()
    body["status"] = {"phase": "kept"}
    created = custom.create_namespaced_custom_object(GROUP, V, ns, PLURAL, body)
    assert created["status"] == {"phase": "kept"}
    exc, _ = api_error(custom.get_namespaced_custom_object_status, GROUP, V, ns, PLURAL, "src")
    assert exc.status == 404


def test_schema_validation(custom, installed, ns):
    bad = image_source(digest="latest", binding="sometimes", replicas=-1)
    del bad["spec"]["image"]
    exc, status = api_error(custom.create_namespaced_custom_object, GROUP, V, ns, PLURAL, bad)
    assert exc.status == 422 and status["reason"] == "Invalid"
    causes = {c["field"]: c for c in status["details"]["causes"]}
    assert causes["spec.image"]["reason"] == "FieldValueRequired"
    assert causes["spec.binding"]["message"] == \
        'Unsupported value: "sometimes": supported values: "track_latest", "pin_digest"'
    assert causes["spec.digest"]["message"] == \
        "Invalid value: \"latest\": spec.digest in body should match '^sha256:[a-f0-9]{64}$'"
    assert causes["spec.replicas"]["message"] == \
        "Invalid value: -1: spec.replicas in body should be greater than or equal to 0"
    assert status["message"].startswith(f'ImageSource.{GROUP} "src" is invalid: [')

    wrong_type = image_source(replicas="two")
    exc, status = api_error(custom.create_namespaced_custom_object, GROUP, V, ns, PLURAL, wrong_type)
    assert status["details"]["causes"][0]["message"] == \
        'Invalid value: "string": spec.replicas in body must be of type integer: "string"'


def test_unknown_fields_are_pruned_unless_preserved(sandbox, custom, installed, ns):
    body = image_source(extra={"anything": {"goes": [1, 2]}}, typo=True)
    body["topLevel"] = 1
    created = custom.create_namespaced_custom_object(GROUP, V, ns, PLURAL, body)
    assert "typo" not in created["spec"] and "topLevel" not in created
    assert created["spec"]["extra"] == {"anything": {"goes": [1, 2]}}
    assert 'unknown field "spec.typo"' in sandbox.api.warnings


def test_strategic_merge_is_unsupported_for_custom_objects(kube_api_client, custom, installed, ns):
    custom.create_namespaced_custom_object(GROUP, V, ns, PLURAL, image_source())
    code, status = raw(kube_api_client, "PATCH", f"/apis/{GROUP}/{V}/namespaces/{ns}/{PLURAL}/src",
                       {"spec": {"replicas": 1}}, content_type="application/strategic-merge-patch+json")
    assert code == 415 and status["reason"] == "UnsupportedMediaType"


def test_server_side_apply_on_custom_objects(custom, installed, ns):
    apply = "application/apply-patch+yaml"
    body = image_source(tags=["a", "b"])
    created = custom.patch_namespaced_custom_object(GROUP, V, ns, PLURAL, "src", body, field_manager="hoist",
                                                    _content_type=apply)
    # Apply-create answers 201, which this client method maps to None (same against a real cluster).
    assert created is None
    assert custom.get_namespaced_custom_object(GROUP, V, ns, PLURAL, "src")["spec"]["tags"] == ["a", "b"]
    other = image_source(tags=["c"])
    merged = custom.patch_namespaced_custom_object(GROUP, V, ns, PLURAL, "src", other, field_manager="other",
                                                   _content_type=apply)
    assert merged["spec"]["tags"] == ["a", "b", "c"]  # x-kubernetes-list-type: set merges
    status = {"apiVersion": f"{GROUP}/{V}", "kind": "ImageSource", "metadata": {"name": "src"},
              "status": {"phase": "Ready"}}
    with_status = custom.patch_namespaced_custom_object_status(GROUP, V, ns, PLURAL, "src", status,
                                                               field_manager="hoist", _content_type=apply)
    assert with_status["status"] == {"phase": "Ready"}
    entries = {(m["manager"], m.get("subresource", "")) for m in with_status["metadata"]["managedFields"]}
    assert ("hoist", "status") in entries


def test_deleting_crd_removes_objects_and_endpoint(sandbox, custom, ext, installed, ns):
    custom.create_namespaced_custom_object(GROUP, V, ns, PLURAL, image_source())
    ext.delete_custom_resource_definition(f"{PLURAL}.{GROUP}")
    assert sandbox.get_object(f"{GROUP}/{V}", PLURAL, ns, "src") is None
    exc, status = api_error(custom.list_namespaced_custom_object, GROUP, V, ns, PLURAL)
    assert exc.status == 404 and status["message"] == "the server could not find the requested resource"
    ext.create_custom_resource_definition(crd())
    assert custom.list_namespaced_custom_object(GROUP, V, ns, PLURAL)["items"] == []


def test_cluster_scoped_crd(custom, ext):
    ext.create_custom_resource_definition(crd("registries", "Registry", scope="Cluster"))
    body = {"apiVersion": f"{GROUP}/{V}", "kind": "Registry", "metadata": {"name": "central"},
            "spec": {"image": "r"}}
    created = custom.create_cluster_custom_object(GROUP, V, "registries", body)
    assert "namespace" not in created["metadata"]
    assert custom.get_cluster_custom_object(GROUP, V, "registries", "central")["spec"]["image"] == "r"


def test_crd_update_changes_schema(custom, ext, installed, ns):
    live = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    live.spec.versions[0].var_schema.open_apiv3_schema.properties["spec"].required = ["image", "digest"]
    ext.replace_custom_resource_definition(f"{PLURAL}.{GROUP}", live)
    exc, status = api_error(custom.create_namespaced_custom_object, GROUP, V, ns, PLURAL, image_source())
    assert exc.status == 422 and "spec.digest: Required value" in status["message"]
