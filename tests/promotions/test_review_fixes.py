"""Regressions found in review: each test names the scenario it guards."""

import pytest
from django.core.exceptions import ValidationError
from kubernetes import client as k8s

from environments import services as env_services
from promotions.kube import ClusterClient, ClusterError
from environments.models import Binding, Cluster
from environments import services
from promotions import reconcile, tasks
from promotions.models import Promotion
from tests.fixtures.domain import cooldown_over, digest


def image_of(server, namespace, name):
    obj = server.get_object("apps/v1", "deployments", namespace, name)
    return obj and obj["spec"]["template"]["spec"]["containers"][0]["image"]


def test_changing_the_image_to_a_tag_resolves_the_new_tag(dev, make_resource, clusters, monkeypatch):
    from promotions import mirror

    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    reconcile.reconcile_resource(web.pk)
    monkeypatch.setattr(mirror, "resolve", lambda image: digest("v2") if image.endswith("other:v2") else None)
    env_services.resource_update(resource=web, image="registry.a.example/shop/other:v2")
    reconcile.reconcile_resource(web.pk)
    assert image_of(clusters["a"], "shop-dev", "web") == "registry.a.example/shop/other@" + digest("v2")
    assert services.latest_artifact(web).origin == "resolve"


def test_an_upstream_image_source_status_must_be_a_consistent_digest(dev, staging, make_resource, clusters):
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    downstream = make_resource(staging, upstream=web)
    reconcile.reconcile_resource(web.pk)
    api = k8s.CustomObjectsApi(k8s.ApiClient(clusters["a"].configuration()))
    source = clusters["a"].get_object("hoist.dev/v1alpha1", "imagesources", "shop-dev", "web")["status"]["latestArtifact"]
    api.patch_namespaced_custom_object_status("hoist.dev", "v1alpha1", "shop-dev", "imagesources", "web", {"status": {
        "latestArtifact": {**source, "image": "registry.a.example/shop/web:latest"}}})
    reconcile.reconcile_resource(downstream.pk)
    downstream.refresh_from_db()
    assert downstream.phase == "failed" and "malformed" in downstream.message
    assert image_of(clusters["a"], "shop-staging", "web") is None
    api.patch_namespaced_custom_object_status("hoist.dev", "v1alpha1", "shop-dev", "imagesources", "web", {"status": {
        "latestArtifact": {**source, "image": "registry.a.example/shop/web@" + digest(9), "digest": digest(9)}}})
    reconcile.reconcile_resource(downstream.pk)
    downstream.refresh_from_db()
    assert "Hoist recorded" in downstream.message and image_of(clusters["a"], "shop-staging", "web") is None


def test_one_broken_resource_does_not_starve_its_batch(dev, staging, make_resource, clusters, monkeypatch):
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    first, second = make_resource(staging, upstream=web), make_resource(staging, "web2", upstream=web)
    reconcile.reconcile_resource(web.pk)
    real = reconcile.reconcile_steps

    def flaky(resource_id, **kwargs):  # a chunk's reconciles run as steps (reconcile_steps)
        if resource_id == first.pk:
            raise KeyError("boom")
        return (yield from real(resource_id, **kwargs))

    monkeypatch.setattr(reconcile, "reconcile_steps", flaky)
    tasks.reconcile_resources([first.pk, second.pk])
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.phase == "failed" and "boom" in first.message
    assert second.current_digest == digest(1)


def test_deleting_an_environment_removes_its_objects_from_the_cluster(dev, make_resource, clusters,
                                                                      django_capture_on_commit_callbacks, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1), database_url="postgres://x:y@db/z")
    reconcile.reconcile_resource(web.pk)
    with django_capture_on_commit_callbacks(execute=True):
        env_services.environment_delete(environment=dev)
    assert image_of(clusters["a"], "shop-dev", "web") is None
    assert clusters["a"].get_object("v1", "secrets", "shop-dev", "web-env") is None


@pytest.mark.parametrize("user_entry, word", [
    ({"exec": {"command": "sh", "args": ["-c", "id"]}}, "exec"),
    ({"tokenFile": "/proc/self/environ"}, "tokenFile"),
    ({"auth-provider": {"name": "gcp"}}, "auth-provider"),
    ({"client-key": "/etc/ssl/private/key.pem"}, "client-key"),
])
def test_a_kubeconfig_that_runs_programs_or_reads_files_is_refused(db, user_entry, word):
    kubeconfig = (
        "apiVersion: v1\nclusters:\n- name: c\n  cluster: {server: 'https://k8s.example.com'}\n"
        f"users:\n- name: u\n  user: {user_entry!r}\n".replace("'", '"')
    )
    with pytest.raises(ValidationError) as excinfo:
        env_services.cluster_create(name="k", slug="k", api_url="https://k8s.example.com", kubeconfig=kubeconfig)
    assert word in excinfo.value.message_dict["kubeconfig"][0]
    assert not Cluster.objects.exists()


def test_a_broken_kubeconfig_error_never_quotes_it(db):
    cluster = Cluster(pk=99, name="k", slug="k", api_url="https://k8s.example.com",
                      kubeconfig="clusters: [\ntoken: s3cr3t-token")
    with pytest.raises(ClusterError) as excinfo:
        ClusterClient.for_cluster(cluster)
    assert "s3cr3t" not in str(excinfo.value)


def test_a_webhook_event_without_a_registry_name_matches_nothing(client, dev, make_resource, settings):
    import json

    settings.HOIST_WEBHOOK_TOKEN = "t"
    make_resource(dev, "web", image="registry.a.example/shop/web:main")
    event = {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                          "digest": digest(2), "repository": "shop/web", "tag": "main"}}
    response = client.post("/hooks/registry/", json.dumps({"events": [event]}), content_type="application/json",
                           HTTP_AUTHORIZATION="Bearer t")
    assert response.json() == {"published": [], "ignored": 1}


def test_resource_names_start_with_a_letter(dev, make_resource):
    with pytest.raises(ValidationError) as excinfo:
        make_resource(dev, "1web")
    assert "start with a letter" in excinfo.value.message_dict["name"][0]


def test_one_click_promote_pins_what_the_upstream_runs(dev, staging, make_resource, maintainer):
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    pinned = make_resource(staging, upstream=web, binding=Binding.PIN_DIGEST, pinned=digest(0))
    web.current_digest = digest(1)
    web.save(update_fields=["current_digest"])
    services.artifact_publish(resource=web, digest=digest(2))  # published, not yet running
    services.resource_promote_upstream_current(resource=pinned, actor=maintainer)
    pinned.refresh_from_db()
    assert pinned.pinned_digest == digest(1)


def test_a_config_edit_racing_a_pin_edit_keeps_the_new_pin(dev, staging, make_resource, maintainer, developer):
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    pinned = make_resource(staging, upstream=web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    stale = type(pinned).objects.get(pk=pinned.pk)  # the developer's form was loaded before the pin moved
    services.resource_pin(resource=pinned, digest=digest(2), actor=maintainer)
    env_services.resource_update(resource=stale, replicas=3, actor=developer)
    pinned.refresh_from_db()
    assert (pinned.pinned_digest, pinned.replicas) == (digest(2), 3)
    assert not Promotion.objects.filter(resource=pinned, to_digest=digest(1), reason="pin_edit").exists()


def test_a_batch_stops_retrying_a_cluster_that_is_down(dev, staging, make_resource, clusters):
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    followers = [make_resource(staging, f"web{i}", upstream=web) for i in range(3)]
    reconcile.reconcile_resource(web.pk)
    clusters["a"].faults.refuse_connections(True)
    tasks.reconcile_resources([f.pk for f in followers])
    messages = [type(f).objects.get(pk=f.pk).message for f in followers]
    assert "can't be reached" in messages[0]
    assert all("not retried again in this batch" in m for m in messages[1:])
    clusters["a"].faults.refuse_connections(False)
    cooldown_over()  # the cluster's breaker opened; the next sweep comes after its cooldown
    tasks.reconcile_resources([f.pk for f in followers], sweep=True)  # the next sweep: nothing lost
    assert all(type(f).objects.get(pk=f.pk).current_digest == digest(1) for f in followers)
