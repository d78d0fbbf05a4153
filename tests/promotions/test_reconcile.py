"""Reconcile against the sandbox Kubernetes API over HTTP (DESIGN guarantees 1, 2, 3, 5, 8)."""

import re

import pytest
from kubernetes import client as k8s

from environments import services as env_services
from environments.models import Binding, Resource
from environments import services
from promotions import reconcile
from promotions.models import Promotion
from tests.fixtures.domain import cooldown_over, digest

REF_RE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


def deployment(server, namespace, name):
    return server.get_object("apps/v1", "deployments", namespace, name)


def image_of(server, namespace, name):
    return deployment(server, namespace, name)["spec"]["template"]["spec"]["containers"][0]["image"]


def image_source(server, namespace, name):
    return server.get_object("hoist.dev/v1alpha1", "imagesources", namespace, name)


@pytest.fixture
def web(dev, make_resource, clusters):
    resource = make_resource(
        dev, "web", image="registry.a.example/shop/web@" + digest(1), ports=[8080], replicas=2,
        ingress_host="web.dev.example.com", database_url="postgres://u:pw@db/shop",
        env=[{"name": "MODE", "value": "dev"}, {"name": "API_KEY", "value": "k3y", "secret": True}],
    )
    return resource


def test_an_image_source_is_applied_by_digest_with_its_objects(web, clusters):
    outcome = reconcile.reconcile_resource(web.pk)
    assert outcome.changed
    a = clusters["a"]
    dep = deployment(a, "shop-dev", "web")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.a.example/shop/web@" + digest(1)
    assert REF_RE.match(container["image"])
    assert dep["spec"]["replicas"] == 2
    assert dep["metadata"]["labels"]["hoist.dev/resource"] == "web"
    assert {"name": "MODE", "value": "dev"} in container["env"]
    # Secret values are referenced, never inlined in the Deployment (guarantee 7).
    assert "k3y" not in str(dep) and "pw@db" not in str(dep)
    secret = a.get_object("v1", "secrets", "shop-dev", "web-env")
    assert set(secret["data"]) == {"API_KEY", "DATABASE_URL"}
    assert a.get_object("v1", "services", "shop-dev", "web")["spec"]["ports"][0]["port"] == 8080
    ingress = a.get_object("networking.k8s.io/v1", "ingresses", "shop-dev", "web")
    assert ingress["spec"]["rules"][0]["host"] == "web.dev.example.com"
    latest = image_source(a, "shop-dev", "web")["status"]["latestArtifact"]
    assert (latest["digest"], latest["sequence"]) == (digest(1), 1)
    web.refresh_from_db()
    assert (web.phase, web.current_digest, web.applied_seq) == ("ready", digest(1), 1)
    assert Promotion.objects.get(resource=web).status == "healthy"


def test_reconcile_is_idempotent(web, clusters):
    reconcile.reconcile_resource(web.pk)
    rv = deployment(clusters["a"], "shop-dev", "web")["metadata"]["resourceVersion"]
    assert not reconcile.reconcile_resource(web.pk).changed
    assert deployment(clusters["a"], "shop-dev", "web")["metadata"]["resourceVersion"] == rv
    assert Promotion.objects.filter(resource=web).count() == 1


def test_the_crd_is_installed_when_missing(web, clusters):
    reconcile.reconcile_resource(web.pk)
    crd = clusters["a"].get_object("apiextensions.k8s.io/v1", "customresourcedefinitions", None, "imagesources.hoist.dev")
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_same_cluster_track_latest_reads_the_image_source_not_a_registry(web, staging, make_resource, clusters, no_registry):
    downstream = make_resource(staging, upstream=web, replicas=1)
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(downstream.pk)
    assert image_of(clusters["a"], "shop-staging", "web") == "registry.a.example/shop/web@" + digest(1)
    downstream.refresh_from_db()
    assert (downstream.current_digest, downstream.applied_seq, downstream.replicas) == (digest(1), 1, 1)
    # The downstream keeps its own config: no env, no secret from the upstream (guarantee 7).
    assert clusters["a"].get_object("v1", "secrets", "shop-staging", "web-env") is None
    # The promotion queued when the resource was created is the one applied.
    promotion = Promotion.objects.get(resource=downstream)
    assert (promotion.status, promotion.reason, promotion.to_digest) == ("healthy", "create", digest(1))
    assert promotion.latency_s is not None and promotion.latency_s >= 0


def test_track_latest_waits_for_an_upstream_that_never_published(web, staging, make_resource, clusters):
    downstream = make_resource(staging, upstream=web)
    assert reconcile.reconcile_resource(downstream.pk) is None
    downstream.refresh_from_db()
    assert downstream.phase == "waiting" and "shop/dev/web" in downstream.message
    assert deployment(clusters["a"], "shop-staging", "web") is None


def test_a_chain_follows_transitively_forward(web, staging, qa, make_resource, clusters):
    mid = make_resource(staging, upstream=web)
    tail = make_resource(qa, upstream=mid)
    for resource in (web, mid, tail):
        reconcile.reconcile_resource(resource.pk)
    services.artifact_publish(resource=web, digest=digest(2))
    for resource in (web, mid, tail):
        reconcile.reconcile_resource(resource.pk)
    assert image_of(clusters["a"], "shop-qa", "web").endswith(digest(2))
    tail.refresh_from_db()
    assert tail.current_digest == digest(2)


def test_a_late_read_never_rolls_back(web, staging, make_resource, clusters):
    downstream = make_resource(staging, upstream=web)
    services.artifact_publish(resource=web, digest=digest(2))
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(downstream.pk)
    # A stale view of the upstream (an older sequence) arrives late.
    source = image_source(clusters["a"], "shop-dev", "web")
    k8s.CustomObjectsApi(k8s.ApiClient(clusters["a"].configuration())).patch_namespaced_custom_object_status(
        "hoist.dev", "v1alpha1", "shop-dev", "imagesources", "web",
        {"status": {"latestArtifact": {**source["status"]["latestArtifact"], "digest": digest(1), "sequence": 1,
                                       "image": "registry.a.example/shop/web@" + digest(1)}}},
    )
    outcome = reconcile.reconcile_resource(downstream.pk)
    assert not outcome.changed
    assert image_of(clusters["a"], "shop-staging", "web").endswith(digest(2))


def test_pins_never_move_by_themselves(web, staging, make_resource, clusters):
    pinned = make_resource(staging, upstream=web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(pinned.pk)
    services.artifact_publish(resource=web, digest=digest(2))
    services.artifact_publish(resource=web, digest=digest(3))
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(pinned.pk, sweep=True)
    assert image_of(clusters["a"], "shop-staging", "web").endswith(digest(1))
    pinned.refresh_from_db()
    assert pinned.current_digest == digest(1)


def test_a_pin_edit_is_applied_and_recorded(web, staging, make_resource, clusters, maintainer):
    pinned = make_resource(staging, upstream=web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    reconcile.reconcile_resource(pinned.pk)
    services.artifact_publish(resource=web, digest=digest(2))
    services.resource_pin(resource=pinned, digest=digest(2), actor=maintainer)
    reconcile.reconcile_resource(pinned.pk)
    assert image_of(clusters["a"], "shop-staging", "web") == "registry.a.example/shop/web@" + digest(2)
    edit = Promotion.objects.get(resource=pinned, reason="pin_edit")
    assert (edit.status, edit.from_digest, edit.to_digest, edit.actor) == ("healthy", digest(1), digest(2), maintainer)


def test_drift_is_put_back_and_recorded(web, clusters):
    reconcile.reconcile_resource(web.pk)
    apps = k8s.AppsV1Api(k8s.ApiClient(clusters["a"].configuration()))
    apps.patch_namespaced_deployment("web", "shop-dev", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "registry.a.example/shop/web:hotfix"}]}}}})
    reconcile.reconcile_resource(web.pk, sweep=True)
    assert image_of(clusters["a"], "shop-dev", "web").endswith(digest(1))
    drift = Promotion.objects.get(resource=web, reason="drift")
    assert "hotfix" in drift.actor_label and drift.status == "healthy"


def test_config_changes_are_applied_without_a_promotion(web, clusters):
    reconcile.reconcile_resource(web.pk)
    env_services.resource_update(resource=web, replicas=5, ports=[9090], ingress_host="")
    reconcile.reconcile_resource(web.pk)
    a = clusters["a"]
    assert deployment(a, "shop-dev", "web")["spec"]["replicas"] == 5
    assert a.get_object("v1", "services", "shop-dev", "web")["spec"]["ports"][0]["port"] == 9090
    assert a.get_object("networking.k8s.io/v1", "ingresses", "shop-dev", "web") is None
    assert Promotion.objects.filter(resource=web).count() == 1


class TestFaults:
    def test_an_unreachable_cluster_leaves_the_promotion_queued_with_the_error(self, web, clusters):
        clusters["a"].faults.refuse_connections(True)
        reconcile.reconcile_resource(web.pk)
        promotion = Promotion.objects.get(resource=web)
        assert promotion.status == "queued" and "can't be reached" in promotion.error
        assert promotion.attempts == 4
        web.refresh_from_db()
        assert web.phase == "failed" and web.current_digest == ""
        clusters["a"].faults.refuse_connections(False)
        # The cluster's breaker opened after three failures: until its cooldown ends nothing calls it.
        reconcile.reconcile_resource(web.pk, sweep=True)
        promotion.refresh_from_db()
        assert promotion.status == "queued" and "not being called for now" in promotion.error
        cooldown_over()
        reconcile.reconcile_resource(web.pk, sweep=True)  # the sweep, as the probe: nothing lost (guarantee 8)
        promotion.refresh_from_db()
        assert promotion.status == "healthy"

    @pytest.mark.parametrize("status", [500, 429, 409])
    def test_transient_answers_are_retried_within_the_task(self, web, clusters, status):
        clusters["a"].faults.fail_next(2, status=status, method="PATCH")
        reconcile.reconcile_resource(web.pk)
        assert Promotion.objects.get(resource=web).status == "healthy"
        assert image_of(clusters["a"], "shop-dev", "web").endswith(digest(1))

    def test_an_invalid_config_fails_the_promotion_and_touches_nothing_else(self, web, clusters):
        reconcile.reconcile_resource(web.pk)
        services.artifact_publish(resource=web, digest=digest(2))
        # A config the cluster refuses (written around today's validation, e.g. by an older release).
        Resource.objects.filter(pk=web.pk).update(ports=[{"name": "http", "port": 70000, "protocol": "TCP"}])
        reconcile.reconcile_resource(web.pk)
        failed = Promotion.objects.get(resource=web, to_digest=digest(2))
        assert failed.status == "failed"
        assert "422" in failed.error and "70000" in failed.error or "containerPort" in failed.error
        web.refresh_from_db()
        assert (web.phase, web.current_digest) == ("failed", digest(1))
        assert image_of(clusters["a"], "shop-dev", "web").endswith(digest(1))

    def test_a_worker_killed_mid_reconcile_is_finished_by_the_next_run(self, web, clusters, monkeypatch):
        real = reconcile.record

        def die(*args, **kwargs):
            raise SystemExit("worker killed")

        monkeypatch.setattr(reconcile, "record", die)
        with pytest.raises(SystemExit):
            reconcile.reconcile_resource(web.pk)
        web.refresh_from_db()
        assert web.current_digest == ""  # nothing recorded by the dead worker
        monkeypatch.setattr(reconcile, "record", real)
        reconcile.reconcile_resource(web.pk)
        reconcile.reconcile_resource(web.pk)
        assert Promotion.objects.filter(resource=web).count() == 1
        assert Promotion.objects.get(resource=web).status == "healthy"


def test_a_dependant_of_a_vanished_upstream_waits_with_a_clear_phase(web, staging, make_resource, clusters):
    downstream = make_resource(staging, upstream=web)
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(downstream.pk)
    clusters["a"].api.reset()  # the upstream's objects are gone from the cluster
    reconcile.reconcile_resource(downstream.pk)
    downstream.refresh_from_db()
    assert downstream.phase == "waiting" and "no ImageSource" in downstream.message


def test_deleting_a_resource_removes_its_objects(web, clusters):
    reconcile.reconcile_resource(web.pk)
    env = web.environment
    env_services.resource_delete(resource=web)
    removed = reconcile.cleanup_resource(env.cluster_id, env.namespace, "shop", "dev", "web")
    assert removed == 5
    assert deployment(clusters["a"], "shop-dev", "web") is None


def test_cross_cluster_without_a_central_registry_refuses_clearly(web, prod, make_resource, clusters, settings):
    settings.HOIST_CENTRAL_REGISTRY = ""
    downstream = make_resource(prod, upstream=web)
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(downstream.pk)
    downstream.refresh_from_db()
    assert downstream.phase == "failed" and "central registry" in downstream.message
    assert deployment(clusters["b"], "shop-prod", "web") is None


def test_a_batch_of_dependants_reads_the_upstream_once(web, staging, qa, make_resource, clusters):
    from promotions import tasks

    followers = [make_resource(staging, upstream=web), make_resource(staging, "web2", upstream=web), make_resource(qa, upstream=web)]
    reconcile.reconcile_resource(web.pk)
    clusters["a"].requests.clear()
    tasks.reconcile_resources([f.pk for f in followers])
    reads = [r for r in clusters["a"].requests if r["method"] == "GET" and r["path"].endswith("/imagesources/web")]
    assert len(reads) == 1
    for follower in followers:
        follower.refresh_from_db()
        assert follower.current_digest == digest(1)
