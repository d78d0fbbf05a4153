"""List endpoints read a fixed number of queries, whatever the number of rows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from environments.models import Artifact, EnvVar, Resource, SourceType
from promotions.models import Promotion
from tests.fixtures.api import resource_url, url
from tests.fixtures.domain import digest


def grow(dev, staging, upstream, n):
    """n image resources in dev (each with env vars and an artifact), n promoted ones in staging."""
    start = Resource.objects.count()
    images = Resource.objects.bulk_create(
        Resource(environment=dev, name=f"r{start + i}", image="a.example.com/r:1", ports=[{"name": "p80", "port": 80, "protocol": "TCP"}])
        for i in range(n)
    )
    Resource.objects.bulk_create(
        Resource(environment=staging, name=f"r{start + i}", source_type=SourceType.PROMOTE, promote_from=upstream, binding="track_latest")
        for i in range(n)
    )
    EnvVar.objects.bulk_create(EnvVar(resource=r, name="K", value="v", secret=True) for r in images)
    artifacts = Artifact.objects.bulk_create(
        Artifact(resource=r, sequence=1, repository="a.example.com/r", digest=digest(r.pk), origin="api", first_published_at="2026-01-01T00:00:00Z")
        for r in images
    )
    Promotion.objects.bulk_create(
        Promotion(resource=a.resource, to_digest=a.digest, artifact=a, reason="publish", actor_id=None) for a in artifacts
    )


@pytest.mark.parametrize("path", [
    lambda dev, staging: resource_url(dev) + "?page_size=500",
    lambda dev, staging: resource_url(staging) + "?page_size=500",
    lambda dev, staging: url("projects", "shop", "promotions") + "?page_size=500",
    lambda dev, staging: url("projects", "shop", "promotions") + "?page_size=500&environment=dev&status=queued",
    lambda dev, staging: url("projects", "shop", "environments"),
    lambda dev, staging: url("projects"),
])
def test_list_queries_do_not_grow_with_rows(api, dev, staging, dev_web, path, django_assert_max_num_queries):
    client = api["viewer"]
    target = path(dev, staging)
    client.get(target)  # the token's last use is written once a minute, not per request
    grow(dev, staging, dev_web, 5)
    with CaptureQueriesContext(connection) as small:
        assert client.get(target).status_code == 200
    grow(dev, staging, dev_web, 195)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(target)
    assert response.status_code == 200
    assert len(small.captured_queries) <= 10  # a resource list: 6, tag watches 2, keep-tag protection 2
