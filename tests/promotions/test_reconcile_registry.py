"""Reconcile with real registries: cross-cluster mirroring (guarantee 4) and tag resolution."""

import pytest

from environments.models import Artifact, Binding
from promotions import reconcile
from promotions.models import Promotion
from tests.fixtures.registry import make_image, skopeo_inspect_raw, sha256_digest

pytestmark = pytest.mark.registry


def image_of(server, namespace, name):
    obj = server.get_object("apps/v1", "deployments", namespace, name)
    return obj and obj["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.fixture
def central(registry_b, settings):
    settings.HOIST_CENTRAL_REGISTRY = registry_b.host
    settings.HOIST_MIRROR_LAYOUT = registry_b.prefix + "/{project}/{resource}"
    return registry_b


@pytest.fixture
def pushed(registry):
    image = make_image((4096, 2048), seed=7)
    return registry.ref("web", digest=registry.push(image, "web")), image.digest


def test_cross_cluster_promotion_mirrors_then_applies_the_same_digest(dev, prod, make_resource, clusters, central, pushed, registry):
    ref, digest = pushed
    web = make_resource(dev, "web", image=ref)
    downstream = make_resource(prod, upstream=web)
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(downstream.pk)
    central_repo = f"{central.prefix}/shop/web"
    assert image_of(clusters["b"], "shop-prod", "web") == f"{central.host}/{central_repo}@{digest}"
    # Byte-identical, checked outside Hoist: the registry API and skopeo agree with the source.
    source_bytes = registry.pusher.get_manifest(registry.repo("web"), digest).content
    assert central.pusher.get_manifest(central_repo, digest).content == source_bytes
    assert sha256_digest(skopeo_inspect_raw(f"{central.host}/{central_repo}@{digest}")) == digest
    downstream.refresh_from_db()
    assert downstream.current_digest == digest and downstream.phase == "ready"


def test_a_mirror_that_is_already_present_is_one_check(dev, prod, make_resource, clusters, central, pushed):
    from promotions import mirror

    ref, digest = pushed
    web = make_resource(dev, "web", image=ref)
    downstream = make_resource(prod, upstream=web)
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(downstream.pk)
    before = mirror.client().request_count
    reconcile.reconcile_resource(downstream.pk)
    assert mirror.client().request_count - before == 1


def test_nothing_is_applied_while_the_central_registry_is_down(dev, prod, make_resource, clusters, registry, registry_factory, settings, pushed):
    down = registry_factory()
    settings.HOIST_CENTRAL_REGISTRY = down.host
    down.stop()
    ref, digest = pushed
    web = make_resource(dev, "web", image=ref)
    downstream = make_resource(prod, upstream=web)
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(downstream.pk)
    assert image_of(clusters["b"], "shop-prod", "web") is None  # never an unmirrored reference
    promotion = Promotion.objects.get(resource=downstream)
    assert promotion.status == "queued" and down.host in promotion.error
    down.start()
    reconcile.reconcile_resource(downstream.pk, sweep=True)
    assert image_of(clusters["b"], "shop-prod", "web") == f"{down.host}/shop/web@{digest}"
    promotion.refresh_from_db()
    assert promotion.status == "healthy"


def test_a_pin_across_clusters_mirrors_the_pinned_digest(dev, prod, make_resource, clusters, central, registry, pushed):
    ref, digest = pushed
    newer = registry.push(make_image((1024,), seed=8), "web")
    web = make_resource(dev, "web", image=registry.ref("web", digest=newer))
    pinned = make_resource(prod, upstream=web, binding=Binding.PIN_DIGEST, pinned=digest)
    reconcile.reconcile_resource(pinned.pk)
    assert image_of(clusters["b"], "shop-prod", "web").endswith("@" + digest)


def test_a_pin_to_a_digest_the_registry_lacks_fails_permanently(dev, prod, make_resource, clusters, central, pushed):
    ref, _ = pushed
    web = make_resource(dev, "web", image=ref)
    missing = "sha256:" + "0" * 64
    pinned = make_resource(prod, upstream=web, binding=Binding.PIN_DIGEST, pinned=missing)
    reconcile.reconcile_resource(pinned.pk)
    promotion = Promotion.objects.get(resource=pinned)
    assert promotion.status == "failed" and "not found" in promotion.error
    assert image_of(clusters["b"], "shop-prod", "web") is None


def test_an_image_given_by_tag_is_resolved_once(dev, make_resource, clusters, registry):
    first = registry.push(make_image((1024,), seed=1), "web", tag="stable")
    web = make_resource(dev, "web", image=registry.ref("web", tag="stable"))
    reconcile.reconcile_resource(web.pk)
    assert image_of(clusters["a"], "shop-dev", "web") == registry.ref("web", digest=first)
    artifact = Artifact.objects.get(resource=web)
    assert (artifact.origin, artifact.tag, artifact.digest) == ("resolve", "stable", first)
    registry.push(make_image((1024,), seed=2), "web", tag="stable")  # the tag moves...
    reconcile.reconcile_resource(web.pk, sweep=True)
    assert image_of(clusters["a"], "shop-dev", "web").endswith(first)  # ...what runs does not


def test_an_unknown_tag_fails_with_its_name(dev, make_resource, clusters, registry):
    web = make_resource(dev, "web", image=registry.ref("web", tag="nope"))
    reconcile.reconcile_resource(web.pk)
    web.refresh_from_db()
    assert web.phase == "failed" and "nope" in web.message
    assert image_of(clusters["a"], "shop-dev", "web") is None


def test_a_pin_already_at_the_central_path_is_still_verified(dev, prod, qa, make_resource, clusters, central, pushed):
    ref, digest = pushed
    web = make_resource(dev, "web", image=ref)
    prod_web = make_resource(prod, upstream=web)  # pulls from the central path after mirroring
    for resource in (web, prod_web):
        reconcile.reconcile_resource(resource.pk)
    missing = "sha256:" + "0" * 64
    qa_web = make_resource(qa, upstream=prod_web, binding=Binding.PIN_DIGEST, pinned=missing)
    reconcile.reconcile_resource(qa_web.pk)
    promotion = Promotion.objects.get(resource=qa_web)
    assert promotion.status == "failed" and "not found" in promotion.error
    assert image_of(clusters["a"], "shop-qa", "web") is None
