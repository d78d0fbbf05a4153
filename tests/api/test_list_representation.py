"""What the resource list, the promoted-resource list and the promotion history say, pinned.

The read paths are hand-written for speed (environments.api.serializers.ResourceSerializer,
promotions.api.serializers.PromotionSerializer); the declared DRF fields stay the contract
and the OpenAPI schema. These tests hold them to it two ways:

- every endpoint's body for a rich project (env vars plain and secret, set and empty, a
  database URL, a tag watch, keep-tag protection, an image source, a track-latest and a
  pinned promotion, every status the display decides, approvals, freezes, publishes by a
  person and by a webhook) equals, byte for byte once serialised, the body recorded in
  `representations.json` from the code before the hand-written paths;
- the hand-written representation of each row equals what DRF's declared fields give.

Regenerate the recording only for an intended change of the contract:
`HOIST_RECORD_REPRESENTATIONS=1 pytest tests/api/test_list_representation.py`.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path

import pytest
from rest_framework import serializers as drf

from environments import services
from environments.models import (Artifact, Binding, ChangeRequest, Environment, Follow, Keep, Kind, Phase, RegistryHost,
                                 Resource, TagWatch)
from promotions.models import Promotion
from tests.fixtures.api import resource_url, url
from tests.fixtures.domain import digest

pytestmark = pytest.mark.django_db

RECORDED = Path(__file__).with_name("representations.json")
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt_timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def rich(dev, staging, prod, make_resource, developer, maintainers):
    """A project with one of each thing the three lists show."""
    web = make_resource(
        dev, "web", image="registry.example.com/shop/web:1.0", ports=[8080, {"name": "metrics", "port": 9100, "protocol": "TCP"}],
        runtime="gvisor", replicas=2, ingress_host="web.example.com", database_url="postgres://u:p@db/shop",
        env=[{"name": "PLAIN", "value": "hello world", "secret": False},
             {"name": "EMPTY", "value": "", "secret": False},
             {"name": "TOKEN", "value": "s3cr3t-value", "secret": True},
             {"name": "UNSET_SECRET", "value": "", "secret": True},
             {"name": "A_FIRST", "value": "ünïcødé \"quoted\" <b>", "secret": False}],
    )
    api = make_resource(dev, "api", image="registry.example.com/shop/api@" + digest("api"))
    make_resource(dev, "nightly", kind=Kind.CRONJOB, image="registry.example.com/shop/jobs:nightly", schedule="0 3 * * *")
    services.artifact_publish(resource=web, digest=digest(1), actor=developer)
    services.artifact_publish(resource=web, digest=digest(2), actor_label="registry webhook (registry.example.com)")
    follower = make_resource(staging, "web", upstream=web)
    services.resource_update(resource=follower, actor=maintainers[0], follow=Follow.PUBLISHED, soak_seconds=30,
                             rollback_on_failure=True, progress_deadline_seconds=120, replicas=3)
    frozen = make_resource(staging, "worker", upstream=web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    pinned = make_resource(prod, "web", upstream=web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    services.resource_promote_upstream_current(resource=pinned, actor=maintainers[0])  # no approvals yet: applied
    Environment.objects.filter(pk=prod.pk).update(required_approvals=1)
    pinned.refresh_from_db()
    approved = services.resource_pin(resource=pinned, digest=digest(1), actor=maintainers[0]).change_request
    services.change_request_approve(request=approved, actor=maintainers[1])
    pinned.refresh_from_db()
    services.resource_pin(resource=pinned, digest=digest(2), actor=maintainers[0])  # awaits approval

    # Status as reconcile and the rollout watch leave it.
    Resource.objects.filter(pk=web.pk).update(
        phase=Phase.READY, current_digest=digest(2), current_image="registry.example.com/shop/web@" + digest(2),
        healthy_digest=digest(2), healthy_at=at(50), failed_digest=digest(1), reconciled_at=at(49), message="")
    Resource.objects.filter(pk=api.pk).update(
        phase=Phase.FAILED, message="Will retry after attempt 4: registry.example.com: connection refused",
        failures_in_a_row=2, backoff_until=at(-3600))
    Resource.objects.filter(pk=follower.pk).update(
        phase=Phase.PROGRESSING, message="rolling out 1/3", rollout_ready=1, rollout_total=3,
        current_digest=digest(2), current_image="registry.example.com/shop/web@" + digest(2))
    Resource.objects.filter(pk=frozen.pk).update(
        phase=Phase.WAITING, message="waiting for the freeze", current_digest=digest(1),
        current_image="registry.example.com/shop/web@" + digest(1))
    Environment.objects.filter(pk=staging.pk).update(frozen_until=datetime(2999, 1, 1, tzinfo=dt_timezone.utc))
    Resource.objects.filter(pk=pinned.pk).update(
        phase=Phase.READY, current_digest=digest(1), healthy_digest=digest(1), healthy_at=at(70),
        current_image="127.0.0.1:5002/shop/web@" + digest(1))
    for index, resource in enumerate(Resource.objects.order_by("pk")):
        Resource.objects.filter(pk=resource.pk).update(created_at=at(index), updated_at=at(100 + index))

    # What the tag watch saw, keep tags, and the rollback candidates.
    TagWatch.objects.update_or_create(host="registry.example.com", repository="shop/web", tag="1.0", defaults={
        "digest": digest(2), "next_check_at": at(300), "checked_at": at(240), "changed_at": at(120),
        "last_error": ""})
    TagWatch.objects.update_or_create(host="registry.example.com", repository="shop/jobs", tag="nightly", defaults={
        "digest": "", "next_check_at": at(310), "checked_at": None, "changed_at": None,
        "last_error": "registry.example.com answered 401"})
    RegistryHost.objects.update_or_create(host="registry.example.com", defaults={"watch_interval_s": 45})
    Artifact.objects.filter(resource=web).update(healthy_at=at(60))
    Keep.objects.create(repository="registry.example.com/shop/web", digest=digest(2), state=Keep.State.KEPT,
                        tag="hoist-keep-x", kept_at=at(65))
    Keep.objects.create(repository="registry.example.com/shop/web", digest=digest(1), state=Keep.State.FAILED,
                        detail="registry.example.com refused the push (403)")

    # The history: what the engine adds by itself, then fixed times in creation order, some applied and healthy.
    latest = Artifact.objects.filter(resource=web).order_by("-sequence").first()
    Promotion.objects.create(resource=follower, from_digest=digest(1), to_digest=digest(2), artifact=latest,
                             reason=Promotion.Reason.TRACK_LATEST)
    Promotion.objects.create(resource=follower, from_digest=digest(2), to_digest=digest(2), reason=Promotion.Reason.DRIFT,
                             actor_label="Hoist (drift)")
    Promotion.objects.create(resource=web, from_digest=digest(2), to_digest=digest(1), reason=Promotion.Reason.ROLLBACK)
    Promotion.objects.create(resource=follower, from_digest=digest(2), to_digest=digest(1), artifact=latest,
                             reason=Promotion.Reason.TRACK_LATEST, actor=maintainers[1])
    for index, promotion in enumerate(Promotion.objects.order_by("pk")):
        changes = {"queued_at": at(10 * index)}
        if index % 2 == 0:
            changes.update(applied_at=at(10 * index + 1.25), latency_s=1.25 + index, status=Promotion.Status.HEALTHY,
                           healthy_at=at(10 * index + 4), healthy_latency_s=4.5 + index, attempts=1)
        elif index % 3 == 0:
            changes.update(status=Promotion.Status.FAILED, error="ImagePullBackOff: not found", attempts=3)
        Promotion.objects.filter(pk=promotion.pk).update(**changes)
    ChangeRequest.objects.filter(pk=approved.pk).update(decided_at=at(5))
    return {"web": web, "pinned": pinned}


def _paths(dev, staging, prod):
    return {
        "dev resources": resource_url(dev),
        "staging resources": resource_url(staging),
        "prod resources": resource_url(prod),
        "dev/web": resource_url(dev, "web"),
        "staging/worker": resource_url(staging, "worker"),
        "prod/web": resource_url(prod, "web"),
        "promotions": url("projects", "shop", "promotions"),
        "promotions, filtered": url("projects", "shop", "promotions") + "?environment=prod",
        "prod/web promotions": resource_url(prod, "web", "promotions"),
    }


def _bodies(client, paths: dict) -> dict:
    """Each path's JSON body as sent, with promotion ids (database-assigned) as their rank."""
    bodies = {}
    for name, path in paths.items():
        response = client.get(path)
        assert response.status_code == 200, (name, response.content[:300])
        bodies[name] = response.content.decode()
    ids = sorted({p["id"] for name in bodies if "promotions" in name for p in json.loads(bodies[name])["results"]})
    rank = {pk: index for index, pk in enumerate(ids)}

    def renumber(body: str) -> str:
        data = json.loads(body)
        for row in data.get("results", [data]):
            row["id"] = rank[row["id"]]
        # Written again as DRF's JSONRenderer writes (compact, not ASCII-escaped, key order kept).
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    return {name: renumber(body) if "promotion" in name else body for name, body in bodies.items()}


def test_the_lists_say_what_they_said(api, rich, dev, staging, prod):
    client = api["viewer"]
    paths = _paths(dev, staging, prod)
    newest = client.get(paths["promotions"]).json()["results"][0]["id"]
    paths["one promotion"] = url("projects", "shop", "promotions", newest)
    bodies = _bodies(client, paths)
    if os.environ.get("HOIST_RECORD_REPRESENTATIONS"):
        RECORDED.write_text(json.dumps(bodies, indent=1, ensure_ascii=False) + "\n")
    recorded = json.loads(RECORDED.read_text())
    assert set(bodies) == set(recorded)
    for name, body in bodies.items():
        assert body == recorded[name], name


def test_nothing_is_read_per_row(api, rich, dev, staging, prod, django_assert_max_num_queries):
    """What the rows show of their actors, upstreams, artifacts and environments comes with the page's queries
    (a dozen promotions with their actors, resources with theirs: a query per row would show)."""
    client = api["viewer"]
    paths = _paths(dev, staging, prod)
    client.get(paths["promotions"])  # the token's last use is written once a minute, not per request
    most = {"promotions": 4, "promotions, filtered": 5, "prod/web promotions": 7,
            "dev resources": 10, "staging resources": 10, "prod resources": 10}  # as tests/api/test_queries.py allows
    for name, queries in most.items():
        with django_assert_max_num_queries(queries, info=name):
            client.get(paths[name])


def test_secret_values_are_never_read_for_a_list(api, rich, dev, django_assert_max_num_queries):
    """The list masks secrets: their values are not even decrypted (nor, for the database URL, read)."""
    from environments import fields

    decrypted = []
    real = fields.decrypt

    def spy(stored):
        value = real(stored)
        decrypted.append(value)
        return value

    fields.decrypt = spy
    try:
        body = api["viewer"].get(resource_url(dev)).json()
    finally:
        fields.decrypt = real
    env = {var["name"]: var for row in body["results"] for var in row["config"]["env"]}
    assert env["TOKEN"] == {"name": "TOKEN", "value": None, "secret": True, "set": True}
    assert env["UNSET_SECRET"] == {"name": "UNSET_SECRET", "value": None, "secret": True, "set": False}
    assert "s3cr3t-value" not in decrypted and "postgres://u:p@db/shop" not in decrypted
    assert sorted(decrypted) == sorted(["hello world", "ünïcødé \"quoted\" <b>"])


def test_the_hand_written_rows_are_the_declared_fields(api, rich, dev, staging, prod):
    """Each row as DRF's declared fields would write it (the contract the OpenAPI schema documents)."""
    from environments import keeps, selectors
    from environments.api import serializers as s
    from promotions import selectors as promotion_selectors
    from promotions.api.serializers import PromotionSerializer

    for environment in (dev, staging, prod):
        resources = list(Resource.objects.filter(environment=environment).select_related(
            "environment", "promote_from__environment").prefetch_related("env_vars").annotate(
            awaiting_approval=selectors.awaiting_approval()).order_by("name", "pk"))
        context = {"watches": selectors.tag_watches_for(resources), "protection": keeps.protection(resources)}
        serializer = s.ResourceSerializer(context=context)
        for resource in resources:
            assert serializer.to_representation(resource) == drf.Serializer.to_representation(serializer, resource)
    serializer = PromotionSerializer()
    promotions = list(promotion_selectors.project_promotions(dev.project).select_related("artifact"))
    assert len(promotions) >= 8
    for promotion in promotions:
        assert serializer.to_representation(promotion) == drf.ModelSerializer.to_representation(serializer, promotion)
