"""apps/v1 deployments: defaults, validation, conflicts, generation, fake controller."""
import copy

from .manifests import api_error, deployment, raw


def test_create_applies_real_defaults(apps, ns):
    dep = apps.create_namespaced_deployment(ns, deployment(image="nginx"))
    spec = dep.spec
    assert spec.replicas == 1 and spec.revision_history_limit == 10 and spec.progress_deadline_seconds == 600
    assert spec.strategy.type == "RollingUpdate"
    assert (spec.strategy.rolling_update.max_surge, spec.strategy.rolling_update.max_unavailable) == ("25%", "25%")
    pod = spec.template.spec
    assert (pod.restart_policy, pod.dns_policy, pod.scheduler_name) == ("Always", "ClusterFirst", "default-scheduler")
    assert pod.termination_grace_period_seconds == 30
    container = pod.containers[0]
    assert container.image_pull_policy == "Always"  # untagged image
    assert container.termination_message_path == "/dev/termination-log"
    assert container.ports[0].protocol == "TCP"
    assert dep.metadata.generation == 1 and dep.metadata.uid
    tagged = apps.create_namespaced_deployment(ns, deployment("api", image="registry.local/api@sha256:" + "b" * 64))
    assert tagged.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"


def test_selector_must_match_template_labels(kube_api_client, apps, ns):
    body = deployment()
    body["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    exc, status = api_error(apps.create_namespaced_deployment, ns, body)
    assert exc.status == 422 and status["reason"] == "Invalid"
    assert status["message"] == ('Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value: '
                                 'map[string]string{"app":"other"}: `selector` does not match template `labels`')
    assert status["details"]["group"] == "apps" and status["details"]["kind"] == "Deployment"

    body = deployment()
    del body["spec"]["selector"]  # the v37 client refuses this itself, so send it raw
    code, status = raw(kube_api_client, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body)
    assert code == 422
    assert {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"} \
        in status["details"]["causes"]


def test_container_checks(apps, ns):
    containers = [
        {"name": "web", "image": "nginx", "ports": [{"containerPort": 0}]},
        {"name": "web", "image": ""},
        {"name": "Side_Car", "image": "busybox"},
    ]
    exc, status = api_error(apps.create_namespaced_deployment, ns, deployment(containers=containers, replicas=-1))
    assert exc.status == 422
    causes = {(c["field"], c["reason"]) for c in status["details"]["causes"]}
    assert causes >= {
        ("spec.replicas", "FieldValueInvalid"),
        ("spec.template.spec.containers[0].ports[0].containerPort", "FieldValueInvalid"),
        ("spec.template.spec.containers[1].name", "FieldValueDuplicate"),
        ("spec.template.spec.containers[1].image", "FieldValueRequired"),
        ("spec.template.spec.containers[2].name", "FieldValueInvalid"),
    }
    messages = {c["field"]: c["message"] for c in status["details"]["causes"]}
    assert messages["spec.replicas"] == "Invalid value: -1: must be greater than or equal to 0"
    assert messages["spec.template.spec.containers[0].ports[0].containerPort"] == \
        "Invalid value: 0: must be between 1 and 65535, inclusive"
    assert messages["spec.template.spec.containers[1].name"] == 'Duplicate value: "web"'
    assert status["message"].startswith('Deployment.apps "web" is invalid: [')


def test_wrong_json_type_is_a_decode_error(kube_api_client, ns):
    body = deployment()
    body["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "80"
    code, status = raw(kube_api_client, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body)
    assert code == 400 and status["reason"] == "BadRequest"
    assert status["message"] == (
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct '
        'field ContainerPort.spec.template.spec.containers.ports.containerPort of type int32')


def test_unknown_fields_are_dropped_with_warning_or_rejected_when_strict(sandbox, kube_api_client, ns):
    body = deployment()
    body["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "typo"
    path = f"/apis/apps/v1/namespaces/{ns}/deployments"
    code, created = raw(kube_api_client, "POST", path, body)
    assert code == 201
    stored = sandbox.get_object("apps/v1", "deployments", ns, "web")
    assert "imagePolicy" not in stored["spec"]["template"]["spec"]["containers"][0]
    assert sandbox.api.warnings == ['unknown field "spec.template.spec.containers[0].imagePolicy"']
    assert created["metadata"]["name"] == "web"
    code, status = raw(kube_api_client, "POST", path, dict(body, metadata={"name": "strict"}),
                       query={"fieldValidation": "Strict"})
    assert code == 400
    assert status["message"] == ('strict decoding error: unknown field '
                                 '"spec.template.spec.containers[0].imagePolicy"')


def test_replace_with_stale_resource_version_conflicts(apps, ns):
    created = apps.create_namespaced_deployment(ns, deployment())
    stale = copy.deepcopy(created)
    latest = apps.read_namespaced_deployment("web", ns)  # the controller has written status since
    latest.spec.replicas = 3
    updated = apps.replace_namespaced_deployment("web", ns, latest)
    assert updated.spec.replicas == 3
    stale.spec.replicas = 5
    exc, status = api_error(apps.replace_namespaced_deployment, "web", ns, stale)
    assert exc.status == 409 and status["reason"] == "Conflict"
    assert status["message"] == ('Operation cannot be fulfilled on deployments.apps "web": the object has been '
                                 'modified; please apply your changes to the latest version and try again')
    assert status["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    # Without a resourceVersion the update is unconditional (allowed for deployments).
    stale.metadata.resource_version = None
    assert apps.replace_namespaced_deployment("web", ns, stale).spec.replicas == 5


def test_resource_version_and_generation_semantics(sandbox, apps, ns):
    dep = apps.create_namespaced_deployment(ns, deployment())
    rv0 = int(dep.metadata.resource_version)
    labelled = apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"team": "a"}}})
    assert labelled.metadata.generation == 1  # metadata-only change
    assert int(labelled.metadata.resource_version) > rv0
    scaled = apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 4}})
    assert scaled.metadata.generation == 2
    status = apps.patch_namespaced_deployment_status("web", ns, {"status": {"replicas": 9}})
    assert status.metadata.generation == 2
    unchanged = apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 4}})
    assert unchanged.metadata.resource_version == apps.read_namespaced_deployment("web", ns).metadata.resource_version
    image = apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}})
    assert image.metadata.generation == 3


def test_noop_replace_does_not_write(apps, ns):
    apps.create_namespaced_deployment(ns, deployment())
    current = apps.read_namespaced_deployment("web", ns)
    again = apps.replace_namespaced_deployment("web", ns, current)
    assert again.metadata.resource_version == current.metadata.resource_version


def test_fake_controller_reports_rollout(sandbox, apps, ns):
    apps.create_namespaced_deployment(ns, deployment(replicas=3))
    dep = apps.read_namespaced_deployment("web", ns)
    st = dep.status
    assert st.observed_generation == 1
    assert (st.replicas, st.updated_replicas, st.ready_replicas, st.available_replicas) == (3, 3, 3, 3)
    conditions = {c.type: c for c in st.conditions}
    assert conditions["Available"].status == "True" and conditions["Available"].reason == "MinimumReplicasAvailable"
    assert conditions["Progressing"].reason == "NewReplicaSetAvailable"
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert any(m.manager == "kube-controller-manager" and m.subresource == "status"
               for m in dep.metadata.managed_fields)

    apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 0}})
    st = apps.read_namespaced_deployment("web", ns).status
    assert st.observed_generation == 2 and st.replicas is None and st.ready_replicas is None

    sandbox.faults.hold_rollouts(True)
    apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"replicas": 2, "template": {"metadata": {"annotations": {"x": "1"}}}}})
    dep = apps.read_namespaced_deployment("web", ns)
    assert dep.status.observed_generation == 3 and dep.status.available_replicas is None
    assert dep.status.unavailable_replicas == 2
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    sandbox.faults.hold_rollouts(False)
    assert apps.read_namespaced_deployment("web", ns).status.available_replicas == 2


def test_status_subresource_only_changes_status(apps, ns):
    apps.create_namespaced_deployment(ns, deployment())
    patched = apps.patch_namespaced_deployment_status(
        "web", ns, {"spec": {"replicas": 7}, "status": {"readyReplicas": 0, "replicas": 1}})
    assert patched.spec.replicas == 1 and patched.status.ready_replicas == 0
    # ... and the main endpoint ignores status.
    main = apps.patch_namespaced_deployment("web", ns, {"status": {"readyReplicas": 5}})
    assert main.status.ready_replicas == 0


def test_selector_is_immutable(apps, ns):
    apps.create_namespaced_deployment(ns, deployment())
    exc, status = api_error(apps.patch_namespaced_deployment, "web", ns, {
        "spec": {"selector": {"matchLabels": {"app": "web", "tier": "x"}},
                 "template": {"metadata": {"labels": {"app": "web", "tier": "x"}}}}})
    assert exc.status == 422 and "spec.selector: Invalid value" in status["message"]
    assert status["message"].endswith("field is immutable")


def test_list_for_all_namespaces_and_delete(apps, core, ns):
    apps.create_namespaced_deployment(ns, deployment("a"))
    apps.create_namespaced_deployment("default", deployment("b"))
    everything = apps.list_deployment_for_all_namespaces()
    assert [(d.metadata.namespace, d.metadata.name) for d in everything.items] == [("default", "b"), (ns, "a")]
    assert everything.items[0].kind is None  # typed list items carry no TypeMeta, as on a real cluster
    assert apps.delete_namespaced_deployment("a", ns)["details"]["group"] == "apps"
    exc, status = api_error(apps.read_namespaced_deployment, "a", ns)
    assert exc.status == 404 and status["message"] == 'deployments.apps "a" not found'
    exc, _ = api_error(apps.delete_namespaced_deployment, "a", ns)
    assert exc.status == 404


def test_delete_preconditions(apps, ns):
    dep = apps.create_namespaced_deployment(ns, deployment())
    exc, status = api_error(apps.delete_namespaced_deployment, "web", ns,
                            body={"preconditions": {"uid": "not-the-uid"}})
    assert exc.status == 409 and "Precondition failed: UID in precondition: not-the-uid" in status["message"]
    apps.delete_namespaced_deployment("web", ns, body={"preconditions": {"uid": dep.metadata.uid}})
