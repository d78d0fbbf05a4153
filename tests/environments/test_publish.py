import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from environments.models import Artifact, Binding
from environments import services
from promotions.models import Promotion
from tests.fixtures.domain import digest


def test_publishing_grows_the_sequence_and_queues_a_promotion(dev_web, developer):
    first = services.artifact_publish(resource=dev_web, digest=digest(1), tag="1.1", actor=developer)
    second = services.artifact_publish(resource=dev_web, digest=digest(2), actor=developer)
    assert (first.sequence, second.sequence) == (1, 2)
    assert first.repository == "registry.example.com/shop/web"
    assert services.latest_artifact(dev_web) == second
    # The newer publish supersedes the older one before it was applied.
    assert list(Promotion.objects.filter(resource=dev_web, reason="publish").order_by("id").values_list("status", flat=True)) == [
        "superseded", "queued"]


def test_republishing_an_older_digest_is_a_new_publish(dev_web):
    services.artifact_publish(resource=dev_web, digest=digest(1))
    services.artifact_publish(resource=dev_web, digest=digest(2))
    again = services.artifact_publish(resource=dev_web, digest=digest(1))
    assert again.sequence == 3


def test_an_image_given_by_digest_is_its_first_publish(dev, make_resource):
    ref = "registry.example.com/shop/api@" + digest("api")
    resource = make_resource(dev, "api", image=ref)
    artifact = services.latest_artifact(resource)
    assert (artifact.sequence, artifact.digest, artifact.repository) == (1, digest("api"), "registry.example.com/shop/api")


def test_track_latest_desires_the_upstreams_latest(dev_web, staging, prod, make_resource):
    staging_web = make_resource(staging, upstream=dev_web)
    prod_web = make_resource(prod, upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=digest("p"))
    assert services.desired_source(staging_web) == ("", None)
    artifact = services.artifact_publish(resource=dev_web, digest=digest(7))
    assert services.desired_source(staging_web) == (digest(7), artifact)
    assert services.desired_source(prod_web) == (digest("p"), None)


@pytest.mark.parametrize("bad", ["sha256:" + "F" * 64, "sha256:abc", "sha512:" + "a" * 64, "latest"])
def test_it_refuses_bad_digests(dev_web, bad):
    with pytest.raises(ValidationError) as excinfo:
        services.artifact_publish(resource=dev_web, digest=bad)
    assert "digest" in excinfo.value.message_dict
    assert not Artifact.objects.exists()


def test_it_refuses_publishing_to_a_promoted_resource(dev_web, staging, make_resource):
    downstream = make_resource(staging, upstream=dev_web)
    with pytest.raises(ValidationError) as excinfo:
        services.artifact_publish(resource=downstream, digest=digest(1))
    assert "publish to the upstream" in excinfo.value.message_dict["resource"][0]


def test_it_refuses_a_bad_tag(dev_web):
    with pytest.raises(ValidationError) as excinfo:
        services.artifact_publish(resource=dev_web, digest=digest(1), tag="no spaces")
    assert "tag" in excinfo.value.message_dict


def test_a_viewer_cannot_publish(dev_web, viewer):
    with pytest.raises(PermissionDenied):
        services.artifact_publish(resource=dev_web, digest=digest(1), actor=viewer)


def test_promote_upstream_current_pins_the_upstreams_latest(dev_web, staging, make_resource, maintainer):
    pinned = make_resource(staging, upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=digest("old"))
    with pytest.raises(ValidationError):
        services.resource_promote_upstream_current(resource=pinned, actor=maintainer)  # nothing published yet
    services.artifact_publish(resource=dev_web, digest=digest("new"))
    services.resource_promote_upstream_current(resource=pinned, actor=maintainer)
    pinned.refresh_from_db()
    assert pinned.pinned_digest == digest("new")


def test_switching_to_track_latest_clears_the_pin(dev_web, staging, make_resource, maintainer):
    pinned = make_resource(staging, upstream=dev_web, binding=Binding.PIN_DIGEST)
    services.resource_track_latest(resource=pinned, actor=maintainer)
    pinned.refresh_from_db()
    assert (pinned.binding, pinned.pinned_digest) == (Binding.TRACK_LATEST, "")
