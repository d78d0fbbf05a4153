"""Keep tags against real registries: what is kept where, idempotency, indexes, releases, outages,
and distribution's garbage collection run over the result."""

import subprocess
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from environments import keeps, services
from environments.models import Artifact, Binding, Keep, RegistryHost, Resource
from promotions import keeping, mirror, reconcile
from promotions.registry import PLACEHOLDER
from tests.fixtures.api import resource_url
from tests.fixtures.domain import cooldown_over, digest
from tests.fixtures.registry import MANIFEST_ACCEPT, REGISTRY_BIN, Pusher, make_image, make_index, make_multiarch

pytestmark = pytest.mark.registry


@pytest.fixture(autouse=True)
def keep_two(settings):
    settings.HOIST_KEEP_HEALTHY = 2


@pytest.fixture
def central(registry_b, settings):
    """The shared second registry as the central one, under this test's own prefix."""
    settings.HOIST_CENTRAL_REGISTRY = registry_b.host
    settings.HOIST_MIRROR_LAYOUT = registry_b.prefix + "/{project}/{resource}"
    return registry_b


def tag_target(pusher: Pusher, repo: str, tag: str) -> str | None:
    response = pusher.http.head(f"/v2/{repo}/manifests/{tag}", headers={**pusher._h(repo), "Accept": MANIFEST_ACCEPT})
    return response.headers["Docker-Content-Digest"] if response.status_code == 200 else None


def row(repository: str, digest_: str) -> Keep:
    return Keep.objects.get(repository=repository, digest=digest_)


class Chain:
    """dev/web (an image source in `registry`, cluster-a) → prod/web (cluster-b, track latest):
    every digest dev runs healthy is mirrored into the central registry and run by prod."""

    def __init__(self, registry, make_resource, dev, prod):
        self.registry = registry
        self.dev_repo = f"{registry.host}/{registry.repo('web')}"
        self.published: list[str] = []
        first = self._push(0)
        self.dev = make_resource(dev, "web", image=f"{self.dev_repo}@{first}")
        self.prod = make_resource(prod, upstream=self.dev)
        self._reconcile()

    def _push(self, seed: int, *, index: bool = False) -> str:
        image = make_multiarch(512, seed=1000 + seed) if index else make_image((2048, 1024), seed=1000 + seed)
        self.published.append(self.registry.push(image, "web"))
        return self.published[-1]

    def _reconcile(self) -> None:
        for resource in (self.dev, self.prod):
            reconcile.reconcile_resource(resource.pk)
            resource.refresh_from_db()
        assert self.prod.current_digest == self.published[-1] and self.prod.phase == "ready"

    def promote(self, seed: int, *, index: bool = False) -> str:
        new = self._push(seed, index=index)
        services.artifact_publish(resource=self.dev, digest=new, repository=self.dev_repo)
        self._reconcile()
        return new

    @property
    def central_repo(self) -> str:
        return self.prod.current_image.rpartition("@")[0]


@pytest.fixture
def chain(registry, make_resource, dev, prod, clusters, central):
    return Chain(registry, make_resource, dev, prod)


# --- what is needed ---------------------------------------------------------------------------------


def test_it_needs_what_runs_the_pin_and_the_last_n_healthy_digests(dev, prod, make_resource):
    repo = "registry.a.example/shop/web"
    web = make_resource(dev, "web", image=f"{repo}@{digest(1)}")
    now = timezone.now()
    for seq, seed in enumerate([1, 2, 3, 3, 4], start=2):  # five healthy publishes, the fourth the third's bytes again
        Artifact.objects.create(resource=web, sequence=seq, repository=repo, digest=digest(seed),
                                origin=Artifact.Origin.API, first_published_at=now, healthy_at=now)
    Artifact.objects.create(resource=web, sequence=7, repository=repo, digest=digest(6), origin=Artifact.Origin.API,
                            first_published_at=now)  # never ran healthy: no rollback candidate
    Resource.objects.filter(pk=web.pk).update(current_digest=digest(6), current_image=f"{repo}@{digest(6)}")
    pinned = make_resource(prod, upstream=web, binding=Binding.PIN_DIGEST, pinned=digest(2))
    Resource.objects.filter(pk=pinned.pk).update(current_digest=digest(2), current_image=f"central.example/shop/web@{digest(2)}")

    needs = keeps.needs([web.pk, pinned.pk])

    assert [(n.digest, n.roles) for n in needs[web.pk]] == [(digest(6), ["running"]), (digest(4), ["rollback"]),
                                                           (digest(3), ["rollback"])]
    assert [(n.repository, n.digest, n.roles) for n in needs[pinned.pk]] == [
        ("central.example/shop/web", digest(2), ["running", "pinned"])]


def test_a_same_cluster_pin_not_applied_yet_is_needed_in_the_upstreams_repository(dev, staging, make_resource):
    repo = "registry.a.example/shop/web"
    web = make_resource(dev, "web", image=f"{repo}@{digest(1)}")
    Artifact.objects.create(resource=web, sequence=9, repository=repo + "-old", digest=digest(7), origin=Artifact.Origin.API,
                            first_published_at=timezone.now())
    pinned = make_resource(staging, upstream=web, binding=Binding.PIN_DIGEST, pinned=digest(7))
    assert [(n.repository, n.roles) for n in keeps.needs([pinned.pk])[pinned.pk]] == [(repo + "-old", ["pinned"])]


def test_the_list_reads_a_constant_number_of_queries(dev, make_resource, django_assert_max_num_queries):
    ids = [make_resource(dev, f"web{n}", image=f"registry.a.example/shop/web@{digest(n)}").pk for n in range(8)]
    Resource.objects.filter(pk__in=ids).update(current_digest=digest(1), current_image=f"r.example/a@{digest(1)}")
    with django_assert_max_num_queries(4):
        found = keeps.protection(ids)
    assert len(found) == 8 and all(entry[0]["state"] == "pending" for entry in found.values())


# --- keeping ----------------------------------------------------------------------------------------


def test_cross_cluster_digests_are_kept_in_the_central_registry_and_others_reported_unprotected(chain, central, registry):
    report = keeping.sync()

    kept = row(chain.central_repo, chain.prod.current_digest)
    assert (kept.state, kept.tag) == ("kept", keeps.keep_tag(chain.prod.current_digest))
    assert tag_target(central.pusher, central.repo("shop/web"), kept.tag) == chain.prod.current_digest
    # dev pulls from cluster-a's registry, which nobody let Hoist write to: reported, not touched.
    dev_row = row(chain.dev_repo, chain.dev.current_digest)
    assert dev_row.state == "unprotected" and registry.host in dev_row.detail and "protect" in dev_row.detail
    assert tag_target(registry.pusher, registry.repo("web"), kept.tag) is None
    assert (report.kept, report.unprotected) == (1, 1)
    shown = {entry["repository"]: entry for entry in keeps.protection_of(chain.prod)}
    assert shown[chain.central_repo]["state"] == "kept" and shown[chain.central_repo]["roles"] == ["running", "rollback"]


def test_a_registry_an_operator_lets_hoist_write_to_is_protected_too(chain, registry):
    keeping.sync()
    RegistryHost.objects.update_or_create(host=registry.host, defaults={"protect": True})
    keeping.sync()
    dev_row = row(chain.dev_repo, chain.dev.current_digest)
    assert (dev_row.state, dev_row.detail) == ("kept", "")
    assert tag_target(registry.pusher, registry.repo("web"), dev_row.tag) == chain.dev.current_digest


def test_a_same_cluster_promotion_copies_nothing_and_is_protected_in_the_upstream_repository(
        registry, make_resource, dev, staging, clusters, central):
    image = registry.push(make_image((1024,), seed=5), "web")
    web = make_resource(dev, "web", image=registry.ref("web", digest=image))
    follower = make_resource(staging, upstream=web)
    for resource in (web, follower):
        reconcile.reconcile_resource(resource.pk)
    keeping.sync()
    entry = keeps.protection_of(follower)[0]
    assert (entry["repository"], entry["state"]) == (f"{registry.host}/{registry.repo('web')}", "unprotected")
    assert not Keep.objects.filter(repository__startswith=central.host).exists()  # nothing was copied
    RegistryHost.objects.update_or_create(host=registry.host, defaults={"protect": True})
    keeping.keep_resource(follower.pk)
    assert keeps.protection_of(follower)[0]["state"] == "kept"


def test_a_second_run_with_nothing_changed_calls_no_registry(chain):
    chain.promote(1)
    keeping.sync()
    rows = list(Keep.objects.order_by("pk").values())
    before = mirror.client().request_count
    report = keeping.sync()
    keeping.keep_resource(chain.prod.pk)
    assert mirror.client().request_count == before
    assert list(Keep.objects.order_by("pk").values()) == rows
    assert (report.kept, report.released, report.failed) == (0, 0, 0)


def test_kept_tags_are_checked_once_a_day_and_put_back_if_moved(chain, central):
    keeping.sync()
    kept = row(chain.central_repo, chain.prod.current_digest)
    repo = central.repo("shop/web")
    other = make_image((64,), seed=77)
    central.pusher.push(repo, other, tag=kept.tag)  # a person (or a retention rule) moved it
    Keep.objects.filter(pk=kept.pk).update(checked_at=timezone.now() - timedelta(days=2))
    report = keeping.sync()
    assert tag_target(central.pusher, repo, kept.tag) == kept.digest
    kept.refresh_from_db()
    assert report.kept == 1 and "outside Hoist" in kept.detail and kept.state == "kept"


def test_an_index_and_each_of_its_children_are_tagged(chain, central):
    index_digest = chain.promote(1, index=True)
    keeping.sync()
    kept = row(chain.central_repo, index_digest)
    repo = central.repo("shop/web")
    assert kept.state == "kept" and len(kept.children) == 2
    for d in [index_digest, *kept.children]:
        assert tag_target(central.pusher, repo, keeps.keep_tag(d)) == d


def test_a_child_another_kept_index_shares_is_not_released(dev, staging, make_resource, central, settings):
    settings.HOIST_KEEP_HEALTHY = 0
    shared, only_a, only_b = (make_image((256,), seed=s) for s in (31, 32, 33))
    index_a, index_b = make_index([shared, only_a]), make_index([shared, only_b])
    repo = central.repo("shared")
    for index in (index_a, index_b):
        central.push(index, "shared")
    name = f"{central.host}/{repo}"
    a = make_resource(dev, "a", image=f"{name}@{index_a.digest}")
    b = make_resource(staging, "b", image=f"{name}@{index_b.digest}")
    for resource, index in ((a, index_a), (b, index_b)):
        Resource.objects.filter(pk=resource.pk).update(current_digest=index.digest, current_image=f"{name}@{index.digest}")
    keeping.sync()
    assert {r.state for r in Keep.objects.filter(repository=name)} == {"kept"}
    Resource.objects.filter(pk=a.pk).update(current_digest="", current_image="")  # nothing needs index A any more

    report = keeping.sync()

    assert report.released == 1 and row(name, index_a.digest).state == "released"
    assert tag_target(central.pusher, repo, keeps.keep_tag(index_a.digest)) == PLACEHOLDER.digest
    assert tag_target(central.pusher, repo, keeps.keep_tag(only_a.digest)) == PLACEHOLDER.digest
    assert tag_target(central.pusher, repo, keeps.keep_tag(shared.digest)) == shared.digest
    assert tag_target(central.pusher, repo, keeps.keep_tag(index_b.digest)) == index_b.digest


def test_a_digest_needed_again_after_its_release_is_kept_again(chain, central):
    first = chain.prod.current_digest
    keeping.sync()
    for seed in (1, 2, 3):
        chain.promote(seed)
        keeping.sync()
    assert row(chain.central_repo, first).state == "released"
    services.resource_pin(resource=chain.prod, digest=first)  # roll back by pinning the old digest
    reconcile.reconcile_resource(chain.prod.pk)
    keeping.keep_resource(chain.prod.pk)
    assert row(chain.central_repo, first).state == "kept"
    assert tag_target(central.pusher, central.repo("shop/web"), keeps.keep_tag(first)) == first


def test_a_registry_that_is_down_marks_its_rows_failed_and_the_next_run_keeps_them(
        registry, make_resource, dev, prod, clusters, registry_factory, settings):
    down = registry_factory()
    settings.HOIST_CENTRAL_REGISTRY = down.host
    chain = Chain(registry, make_resource, dev, prod)
    chain.promote(1)
    down.stop()

    report = keeping.sync()  # must not raise

    failed = Keep.objects.filter(repository=chain.central_repo)
    assert report.failed >= 1 and {r.state for r in failed} == {"failed"}
    assert all(down.host in r.detail for r in failed)
    assert row(chain.dev_repo, chain.dev.current_digest).state == "unprotected"  # other hosts went on
    down.start()
    cooldown_over()
    keeping.sync()
    assert {r.state for r in Keep.objects.filter(repository=chain.central_repo)} == {"kept"}


def test_every_applied_digest_is_kept_through_the_queue(registry, make_resource, dev, prod, clusters, central, monkeypatch,
                                                       django_capture_on_commit_callbacks):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)  # tasks run inline: reconcile → record → keep task
    image = registry.push(make_image((1024,), seed=40), "web")
    with django_capture_on_commit_callbacks(execute=True):
        web = make_resource(dev, "web", image=registry.ref("web", digest=image))
    with django_capture_on_commit_callbacks(execute=True):
        prod_web = make_resource(prod, upstream=web)
    prod_web.refresh_from_db()
    assert prod_web.current_digest == image
    assert row(prod_web.current_image.rpartition("@")[0], image).state == "kept"


# --- the doors: API, resource page, admin -----------------------------------------------------------


def test_the_api_says_what_is_protected(chain, api, dev, prod):
    keeping.sync()
    one = api["viewer"].get(resource_url(prod, "web")).json()["status"]["protection"]
    assert [(e["digest"], e["roles"], e["repository"], e["state"], e["tag"]) for e in one] == [
        (chain.prod.current_digest, ["running", "rollback"], chain.central_repo, "kept",
         keeps.keep_tag(chain.prod.current_digest))]
    assert one[0]["kept_at"] and one[0]["detail"] == ""
    listed = api["viewer"].get(resource_url(dev)).json()["results"][0]["status"]["protection"]
    assert listed[0]["state"] == "unprotected" and "protect" in listed[0]["detail"]


def test_the_resource_page_shows_the_protection(chain, viewer_client):
    keeping.sync()
    body = viewer_client.get("/projects/shop/envs/prod/resources/web/").content.decode()
    section = body[body.index('id="protection"'):]
    assert "Protected in the central registry" in section and 'data-state="kept"' in section
    assert chain.central_repo in section and keeps.keep_tag(chain.prod.current_digest) in section
    dev_page = viewer_client.get("/projects/shop/envs/dev/resources/web/").content.decode()
    assert 'data-state="unprotected"' in dev_page and "Not protected" in dev_page


def test_the_admin_lists_keep_rows_read_only(chain, admin_client):
    keeping.sync()
    kept = row(chain.central_repo, chain.prod.current_digest)
    listing = admin_client.get(reverse("admin:environments_keep_changelist"), {"state": "kept"})
    assert listing.status_code == 200 and kept.digest[:19] in listing.content.decode()
    assert admin_client.get(reverse("admin:environments_keep_change", args=[kept.pk])).status_code == 200
    assert admin_client.get(reverse("admin:environments_keep_add")).status_code == 403
    assert admin_client.post(reverse("admin:environments_keep_delete", args=[kept.pk]), {"post": "yes"}).status_code == 403
    assert Keep.objects.filter(pk=kept.pk).exists()


# --- THE test: garbage collection after the tag moved on --------------------------------------------


def skopeo_inspect(ref: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"], capture_output=True, timeout=60)


def test_garbage_collection_keeps_every_protected_digest_and_deletes_the_released_ones(
        registry, make_resource, dev, prod, clusters, registry_factory, settings):
    gc_registry = registry_factory()
    settings.HOIST_CENTRAL_REGISTRY = gc_registry.host
    chain = Chain(registry, make_resource, dev, prod)
    keeping.sync()
    for seed in range(1, 5):  # the tag moves on four times; the last one is a multi-arch index
        chain.promote(seed, index=seed == 4)
        keeping.keep_resource(chain.prod.pk)  # as the queue does on every change
    keeping.sync()  # as the schedule does: releases what fell out of the last two healthy

    protected = [e["digest"] for e in keeps.protection_of(chain.prod) if e["state"] == "kept"]
    assert protected == chain.published[-1:-3:-1]  # running (the index) and the one before it
    released = [d for d in chain.published if d not in protected]
    assert {row(chain.central_repo, d).state for d in released} == {"released"}
    index_children = row(chain.central_repo, chain.published[-1]).children

    gc_registry.stop()
    gc = subprocess.run([REGISTRY_BIN, "garbage-collect", "--delete-untagged", str(gc_registry.config_path)],
                        capture_output=True, text=True, timeout=120)
    assert gc.returncode == 0, gc.stderr
    assert "eligible for deletion" in gc.stdout
    gc_registry.start()

    pusher = Pusher(gc_registry)
    repo = chain.central_repo.split("/", 1)[1]
    for d in [*protected, *index_children]:
        # skopeo reads the manifest and the config (of an index: this machine's platform's).
        result = skopeo_inspect(f"{chain.central_repo}@{d}")
        assert result.returncode == 0, result.stderr
        doc = pusher.get_manifest(repo, d).json()
        for blob in [doc.get("config"), *doc.get("layers", [])]:
            if blob:
                assert pusher.get_blob(repo, blob["digest"])  # every layer of every platform is still there
    for d in released:
        assert skopeo_inspect(f"{chain.central_repo}@{d}").returncode != 0
        assert pusher.get_manifest(repo, d).status_code == 404
    pusher.close()
