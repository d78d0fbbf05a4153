"""environments.api.reads: the resource list's rows, made resources without Model.__init__, are the resources."""

from __future__ import annotations

import pytest
from django.core.paginator import Paginator

from environments.api import reads
from environments.models import Binding, Resource

pytestmark = pytest.mark.django_db


def test_it_makes_the_resources_the_orm_loads(dev, staging, make_resource, django_assert_num_queries):
    web = make_resource(dev, "web", ports=[8080], database_url="postgres://u:p@db/x")
    api = make_resource(dev, "api", image="registry.example.com/shop/api:2")
    make_resource(staging, "web", upstream=web)
    make_resource(staging, "web-pinned", upstream=web, binding=Binding.PIN_DIGEST)
    make_resource(staging, "api", upstream=api)
    for environment in (dev, staging):
        with django_assert_num_queries(1):
            page = reads.resources_of(list(reads.resource_list(environment)), environment)
        loaded = list(Resource.objects.filter(environment=environment).select_related("promote_from__environment")
                      .order_by("name"))
        with django_assert_num_queries(0):
            assert [resource.pk for resource in page] == [resource.pk for resource in loaded]
            for got, want in zip(page, loaded):
                assert {name: getattr(got, name) for name in reads.SHOWN} == {name: getattr(want, name) for name in reads.SHOWN}
                assert got.environment is environment and got.database_url_set == bool(want.database_url)
                if want.promote_from_id:
                    assert (got.promote_from.name, got.promote_from.current_image, got.promote_from.environment.slug) == (
                        want.promote_from.name, want.promote_from.current_image, want.promote_from.environment.slug)
                else:
                    assert got.promote_from is None
        if environment == staging:  # one upstream object per upstream, however many rows promote from it
            assert page[1].promote_from is page[2].promote_from
    # What the list doesn't read is read when touched, as for `.only()`.
    assert page[0].applied_versions == loaded[0].applied_versions


def test_the_page_ids_are_the_page(dev, make_resource):
    for index in range(5):
        make_resource(dev, f"r{index}")
    rows = reads.resource_list(dev)
    for number in (1, 2, 3):
        page = reads.resources_of(list(Paginator(rows, 2).page(number)), dev)
        assert sorted(r["pk"] for r in reads.ids_of(rows, page)) == sorted(r.pk for r in page)
    assert reads.ids_of(rows, []) is None


def test_the_page_ids_hold_when_a_resource_is_created_or_deleted_before_the_page_is_read_further(dev, make_resource):
    """A page's other reads (env vars, keep tags) must find the page's resources, whatever
    happened to the environment meanwhile: the ids are the page's name range, not its offset."""
    for index in range(1, 6):
        make_resource(dev, f"r{index}")
    rows = reads.resource_list(dev)
    page = reads.resources_of(list(Paginator(rows, 2).page(2)), dev)  # r3, r4
    make_resource(dev, "r0")  # would shift the offset by one
    Resource.objects.filter(environment=dev, name="r1").delete()
    assert sorted(r["pk"] for r in reads.ids_of(rows, page)) == sorted(r.pk for r in page)
