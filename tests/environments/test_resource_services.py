import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from environments import services
from environments.models import Binding, EnvVar, Resource
from promotions.models import Promotion
from tests.fixtures.domain import digest


def test_it_creates_a_resource_with_its_own_config(dev, make_resource):
    resource = make_resource(
        dev, "api", ports=[8080, {"name": "metrics", "port": 9090}], replicas=3, ingress_host="api.dev.example.com",
        runtime="gvisor", database_url="postgres://u:p@db/app",
        env=[{"name": "MODE", "value": "dev"}, {"name": "API_KEY", "value": "s3cret", "secret": True}],
    )
    assert resource.ports == [
        {"name": "p8080", "port": 8080, "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "protocol": "TCP"},
    ]
    assert {(v.name, v.value, v.secret) for v in resource.env_vars.all()} == {("MODE", "dev", False), ("API_KEY", "s3cret", True)}
    assert EnvVar.objects.get(name="API_KEY").display_value == "set"


def test_a_promoted_resource_starts_from_its_own_config_not_the_upstreams(dev, staging, make_resource):
    upstream = make_resource(dev, "web", replicas=5, env=[{"name": "MODE", "value": "dev"}])
    downstream = make_resource(staging, "web", upstream=upstream, replicas=2)
    assert downstream.replicas == 2
    assert not downstream.env_vars.exists()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"name": "Web"}, "name"),
        ({"name": "web_1"}, "name"),
        ({"name": "-web"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"ports": [0]}, "ports"),
        ({"ports": [70000]}, "ports"),
        ({"ports": ["80"]}, "ports"),
        ({"ports": [80, 80]}, "ports"),
        ({"ports": [{"port": 80, "protocol": "HTTP"}]}, "ports"),
        ({"ports": [{"port": 80, "name": "Has Space"}]}, "ports"),
        ({"ports": "80"}, "ports"),
        ({"replicas": -1}, "replicas"),
        ({"replicas": 1001}, "replicas"),
        ({"replicas": "3"}, "replicas"),
        ({"ingress_host": "Not A Host"}, "ingress_host"),
        ({"runtime": "Bad_Runtime"}, "runtime"),
        ({"env": [{"name": "1BAD", "value": "x"}]}, "env"),
        ({"env": [{"name": "A", "value": "x"}, {"name": "A", "value": "y"}]}, "env"),
        ({"env": [{"name": "DATABASE_URL", "value": "x"}]}, "env"),
        ({"env": [{"name": "A", "value": 5}]}, "env"),
        ({"image": ""}, "image"),
        ({"image": "UPPER/case:tag"}, "image"),
        ({"image": "repo@sha256:abc"}, "image"),
        ({"kind": "statefulset"}, "kind"),
        ({"schedule": "* * * * *"}, "schedule"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_it_refuses_bad_input_naming_the_field(dev, make_resource, kwargs, field):
    kwargs.setdefault("name", "web")
    with pytest.raises(ValidationError) as excinfo:
        make_resource(dev, **kwargs)
    assert field in excinfo.value.message_dict, excinfo.value.message_dict
    assert not Resource.objects.exists()


def test_it_refuses_a_duplicate_name(dev, dev_web, make_resource):
    with pytest.raises(ValidationError) as excinfo:
        make_resource(dev, "web")
    assert "already exists" in excinfo.value.message_dict["name"][0]


def test_name_kind_and_environment_are_fixed(dev_web, staging):
    with pytest.raises(ValidationError) as excinfo:
        services.resource_update(resource=dev_web, name="other", environment=staging)
    assert {"name", "environment"} <= set(excinfo.value.message_dict)


def test_secret_env_given_without_value_keeps_the_stored_one(dev, make_resource):
    resource = make_resource(dev, "api", env=[{"name": "TOKEN", "value": "t0p", "secret": True}, {"name": "A", "value": "1"}])
    services.resource_update(resource=resource, env=[{"name": "TOKEN", "value": None, "secret": True}])
    assert [(v.name, v.value) for v in resource.env_vars.all()] == [("TOKEN", "t0p")]


def test_changing_the_pin_records_a_queued_promotion(dev_web, staging, make_resource, maintainer):
    pinned = make_resource(staging, upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    services.resource_update(resource=pinned, pinned_digest=digest(2), actor=maintainer)
    promotion = Promotion.objects.filter(resource=pinned).first()
    assert (promotion.to_digest, promotion.reason, promotion.status, promotion.actor) == (
        digest(2), Promotion.Reason.PIN_EDIT, Promotion.Status.QUEUED, maintainer,
    )


def test_config_changes_record_no_promotion(dev_web):
    before = Promotion.objects.count()
    services.resource_update(resource=dev_web, replicas=4)
    assert Promotion.objects.count() == before
    dev_web.refresh_from_db()
    assert dev_web.replicas == 4


class TestRoles:
    def test_a_viewer_cannot_create(self, dev, viewer, make_resource):
        with pytest.raises(PermissionDenied):
            make_resource(dev, actor=viewer)

    def test_an_outsider_cannot_create(self, dev, members, make_resource):
        with pytest.raises(PermissionDenied):
            make_resource(dev, actor=members["outsider"])

    def test_a_developer_creates_in_unprotected_environments(self, dev, developer, make_resource):
        assert make_resource(dev, actor=developer).pk

    def test_a_developer_cannot_change_a_protected_environment(self, prod, developer, maintainer, make_resource):
        with pytest.raises(PermissionDenied):
            make_resource(prod, actor=developer)
        resource = make_resource(prod, actor=maintainer)
        with pytest.raises(PermissionDenied):
            services.resource_update(resource=resource, replicas=2, actor=developer)

    def test_changing_a_pin_needs_a_maintainer(self, dev_web, staging, developer, maintainer, make_resource):
        pinned = make_resource(staging, upstream=dev_web, binding=Binding.PIN_DIGEST, actor=maintainer)  # creating a pin is the maintainer's too
        with pytest.raises(PermissionDenied):
            services.resource_update(resource=pinned, pinned_digest=digest(9), actor=developer)
        services.resource_update(resource=pinned, pinned_digest=digest(9), actor=maintainer)
        pinned.refresh_from_db()
        assert pinned.pinned_digest == digest(9)
