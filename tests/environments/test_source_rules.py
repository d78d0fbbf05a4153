"""The scope rules of DESIGN guarantee 6, through the services."""

import pytest
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, transaction

from environments import services
from environments.models import Binding, Kind, Resource, SourceType
from tests.fixtures.domain import digest


def field_errors(excinfo) -> dict:
    return excinfo.value.message_dict


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + "A" * 64,                      # upper-case hex
        "sha256:" + "a" * 63,                      # 63 hex
        "sha256:" + "a" * 65,                      # 65 hex
        "sha512:" + "a" * 64,                      # wrong algorithm
        "sha512:" + "a" * 128,
        "a" * 64,                                  # no algorithm
        "sha256:" + "g" * 64,                      # not hex
        " sha256:" + "a" * 64,                     # leading space
        "sha256:" + "a" * 64 + "\n",               # trailing newline
        "",
    ],
)
def test_it_refuses_bad_pinned_digests(dev_web, staging, make_resource, value):
    with pytest.raises(ValidationError) as excinfo:
        make_resource(staging, upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=value)
    assert "pinned_digest" in field_errors(excinfo)
    assert not Resource.objects.filter(environment=staging).exists()


def test_it_accepts_a_well_formed_pin(dev_web, staging, make_resource):
    pinned = "sha256:" + "0123456789abcdef" * 4
    resource = make_resource(staging, upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=pinned)
    assert resource.pinned_digest == pinned
    assert resource.promote_from == dev_web


def test_track_latest_clears_a_stale_digest(dev_web, staging):
    resource = services.resource_create(
        environment=staging, name="web", source_type=SourceType.PROMOTE, promote_from=dev_web,
        binding=Binding.TRACK_LATEST, pinned_digest=digest(1),
    )
    assert resource.pinned_digest == ""


def test_it_refuses_another_projects_environment(dev_web, other_project, cluster_a, make_resource):
    elsewhere = services.environment_create(project=other_project, name="dev", slug="dev", cluster=cluster_a, namespace="other-dev")
    with pytest.raises(ValidationError) as excinfo:
        make_resource(elsewhere, upstream=dev_web)
    message = " ".join(field_errors(excinfo)["promote_from"])
    assert "same project" in message


def test_it_refuses_the_same_environment(dev_web, dev, make_resource):
    with pytest.raises(ValidationError) as excinfo:
        make_resource(dev, "web-copy", upstream=dev_web)
    assert "environment you promote from" in " ".join(field_errors(excinfo)["promote_from"])


def test_it_refuses_a_non_deployment_upstream(dev, staging, make_resource):
    cron = make_resource(dev, "nightly", kind=Kind.CRONJOB, schedule="0 3 * * *")
    with pytest.raises(ValidationError) as excinfo:
        make_resource(staging, "nightly", upstream=cron)
    assert "only resources that produce images" in " ".join(field_errors(excinfo)["promote_from"])


def test_it_refuses_promoting_into_a_non_deployment(dev_web, staging, make_resource):
    with pytest.raises(ValidationError) as excinfo:
        make_resource(staging, "nightly", upstream=dev_web, kind=Kind.CRONJOB, schedule="0 3 * * *")
    assert "Only deployment resources can be promoted" in " ".join(field_errors(excinfo)["kind"])


def test_it_requires_an_upstream_and_a_binding(staging):
    with pytest.raises(ValidationError) as excinfo:
        services.resource_create(environment=staging, name="web", source_type=SourceType.PROMOTE, binding="sometimes")
    errors = field_errors(excinfo)
    assert "promote_from" in errors and "binding" in errors


def test_it_refuses_a_two_step_cycle(dev, staging, make_resource):
    a = make_resource(dev, "web")
    b = make_resource(staging, "web", upstream=a)
    # Turn a into a promoted resource reading from b: a ← b ← a.
    with pytest.raises(ValidationError) as excinfo:
        services.resource_update(resource=a, source_type=SourceType.PROMOTE, promote_from=b, binding=Binding.TRACK_LATEST)
    assert "cycle" in " ".join(field_errors(excinfo)["promote_from"])
    a.refresh_from_db()
    assert a.source_type == SourceType.IMAGE and a.promote_from is None


def test_it_refuses_a_three_step_cycle(dev, staging, prod, make_resource):
    a = make_resource(dev, "web")
    b = make_resource(staging, "web", upstream=a)
    c = make_resource(prod, "web", upstream=b)
    with pytest.raises(ValidationError) as excinfo:
        services.resource_update(resource=a, source_type=SourceType.PROMOTE, promote_from=c, binding=Binding.TRACK_LATEST)
    assert "cycle" in " ".join(field_errors(excinfo)["promote_from"])


def test_a_chain_without_a_loop_is_fine(dev, staging, prod, make_resource):
    a = make_resource(dev, "web")
    b = make_resource(staging, "web", upstream=a)
    c = make_resource(prod, "web", upstream=b, binding=Binding.PIN_DIGEST)
    # Re-pointing c at a directly is not a cycle.
    services.resource_update(resource=c, promote_from=a)
    c.refresh_from_db()
    assert c.promote_from == a


def test_it_refuses_deleting_a_tracked_upstream(dev_web, staging, prod, make_resource):
    make_resource(staging, upstream=dev_web)
    make_resource(prod, upstream=dev_web, binding=Binding.PIN_DIGEST)
    with pytest.raises(ValidationError) as excinfo:
        services.resource_delete(resource=dev_web)
    message = " ".join(field_errors(excinfo)["resource"])
    assert "shop/staging/web" in message and "shop/prod/web" in message
    assert Resource.objects.filter(pk=dev_web.pk).exists()


def test_an_upstream_can_be_deleted_once_its_dependants_are_gone(dev_web, staging, make_resource):
    downstream = make_resource(staging, upstream=dev_web)
    services.resource_delete(resource=downstream)
    services.resource_delete(resource=dev_web)
    assert not Resource.objects.exists()


def test_deleting_an_environment_with_outside_dependants_is_refused(dev, dev_web, staging, make_resource):
    make_resource(staging, upstream=dev_web)
    with pytest.raises(ValidationError) as excinfo:
        services.environment_delete(environment=dev)
    assert "shop/staging/web" in " ".join(field_errors(excinfo)["environment"])


@pytest.mark.parametrize("value", ["sha256:" + "A" * 64, "sha256:" + "a" * 64 + "\n", "sha256:" + "a" * 63, ""])
def test_the_database_refuses_a_malformed_pin_written_around_the_services(dev_web, staging, value):
    bad = Resource(
        environment=staging, name="web", source_type=SourceType.PROMOTE, promote_from=dev_web,
        binding=Binding.PIN_DIGEST, pinned_digest=value,
    )
    # PostgreSQL refuses a 72-character value by the column's length before the check runs.
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        bad.save()


def test_the_database_refuses_a_promoted_cronjob_written_around_the_services(dev_web, staging):
    bad = Resource(
        environment=staging, name="web", kind=Kind.CRONJOB, source_type=SourceType.PROMOTE, promote_from=dev_web,
        binding=Binding.TRACK_LATEST,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        bad.save()


def test_the_database_refuses_a_resource_promoting_from_itself(dev_web):
    with pytest.raises(IntegrityError), transaction.atomic():
        Resource.objects.filter(pk=dev_web.pk).update(
            source_type=SourceType.PROMOTE, promote_from=dev_web, binding=Binding.TRACK_LATEST, image=""
        )
