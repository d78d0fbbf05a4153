"""Clusters are visible to staff, and to the members of the projects that use them; an environment goes
only on a cluster its creator may see, whichever door it comes through (the service decides)."""

import pytest
from django.core.exceptions import ValidationError

from environments import services
from environments.models import Environment
from environments.selectors import clusters_visible_to
from projects.models import AuditEntry, Membership


@pytest.fixture
def cluster_c(db):
    return services.cluster_create(name="cluster-c", slug="cluster-c", api_url="http://127.0.0.1:3")


@pytest.fixture
def other_on_c(other_project, cluster_c):
    return services.environment_create(project=other_project, name="dev", slug="dev", cluster=cluster_c, namespace="other-dev")


def slugs(queryset) -> list[str]:
    return sorted(queryset.values_list("slug", flat=True))


def test_it_shows_staff_and_superusers_every_cluster(environments, other_on_c, make_user):
    assert slugs(clusters_visible_to(make_user("op", is_staff=True))) == ["cluster-a", "cluster-b", "cluster-c"]
    assert slugs(clusters_visible_to(make_user("su", is_superuser=True))) == ["cluster-a", "cluster-b", "cluster-c"]
    assert slugs(clusters_visible_to(None)) == ["cluster-a", "cluster-b", "cluster-c"]  # Hoist itself


def test_it_shows_members_the_clusters_of_their_projects_once(environments, other_on_c, members):
    # cluster-a hosts two of shop's environments: listed once.
    for role in ("viewer", "developer", "maintainer"):
        assert list(clusters_visible_to(members[role]).order_by("slug").values_list("slug", flat=True)) == ["cluster-a", "cluster-b"]
    assert slugs(clusters_visible_to(members["outsider"])) == []


def test_it_shows_anonymous_users_nothing(environments):
    from django.contrib.auth.models import AnonymousUser

    assert slugs(clusters_visible_to(AnonymousUser())) == []


def test_a_maintainer_cannot_place_an_environment_on_a_cluster_they_do_not_see(environments, other_on_c, maintainer, project, cluster_c):
    for validate_only in (True, False):  # the admin's form validates first, then saves
        with pytest.raises(ValidationError) as refused:
            services.environment_create(project=project, name="qa", slug="qa", cluster=cluster_c, namespace="shop-qa",
                                        actor=maintainer, validate_only=validate_only)
        assert refused.value.message_dict == {"cluster": ["No cluster 'cluster-c'."]}
    assert not Environment.objects.filter(project=project, slug="qa").exists()
    entry = AuditEntry.objects.filter(action="environment.create", outcome="refused", actor=maintainer).latest("pk")
    assert entry.message == "cluster: No cluster 'cluster-c'."


def test_the_role_is_checked_before_the_cluster(environments, other_on_c, developer, project, cluster_c):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        services.environment_create(project=project, name="qa", slug="qa", cluster=cluster_c, namespace="shop-qa", actor=developer)


def test_a_maintainer_places_environments_on_clusters_they_see(environments, other_on_c, maintainer, project, other_project, cluster_a, cluster_c):
    assert services.environment_create(project=project, name="qa", slug="qa", cluster=cluster_a, namespace="shop-qa", actor=maintainer).pk
    # A cluster another of their projects uses is visible too.
    Membership.objects.create(project=other_project, user=maintainer, role="viewer")
    assert services.environment_create(project=project, name="qa2", slug="qa2", cluster=cluster_c, namespace="shop-qa2", actor=maintainer).pk


def test_staff_and_hoist_itself_place_environments_anywhere(environments, project, cluster_c, make_user):
    admin = make_user("root", is_staff=True, is_superuser=True)
    assert services.environment_create(project=project, name="qa", slug="qa", cluster=cluster_c, namespace="shop-qa", actor=admin).pk
    assert services.environment_create(project=project, name="qa2", slug="qa2", cluster=cluster_c, namespace="shop-qa2").pk
