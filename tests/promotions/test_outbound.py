"""Issue 11, rows 2 and 3: where Hoist may connect, and what a slow or hostile registry may cost.

Real sockets throughout: a black hole (accepts, never answers), real
docker-registry instances, scripted fake registries, the sandbox cluster.
DNS is the one thing faked (a name pointed at loopback), since no test
can own a public name.
"""

from __future__ import annotations

import ast
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from environments import outbound, services
from environments.models import Artifact, Resource
from projects.models import AuditEntry
from promotions import guard, mirror, publishing, reconcile
from promotions.models import Gate, GateSlot, Promotion
from promotions.registry import OUTBOUND_REFUSED, RegistryClient, RegistryError
from tests.fixtures.api import assert_error, resource_url, url
from tests.fixtures.domain import cooldown_over, digest
from tests.fixtures.registry import FakeResponse

pytestmark = pytest.mark.django_db


@pytest.fixture
def strict(settings):
    """Production's default: no list, DEBUG off, so only public addresses."""
    settings.HOIST_ALLOWED_REGISTRIES = []
    settings.HOIST_ALLOW_PRIVATE_REGISTRIES = False
    return settings


@pytest.fixture
def fast_registry_calls(settings):
    settings.HOIST_REGISTRY_CONNECT_TIMEOUT_S = 0.5
    settings.HOIST_REGISTRY_READ_TIMEOUT_S = 0.3
    settings.HOIST_REGISTRY_DEADLINE_S = 1.0
    settings.HOIST_REQUEST_REGISTRY_WAIT_S = 0.5
    return settings


# --- the policy itself --------------------------------------------------------------------------


class TestPolicy:
    def refused(self, policy, host) -> bool:
        try:
            policy.check_host(host)
            return False
        except outbound.OutboundRefused:
            return True

    @pytest.mark.parametrize("host", ["127.0.0.1:5000", "localhost:5432", "10.1.2.3", "192.168.0.9:443", "169.254.169.254",
                                      "[::1]:6379", "[fe80::1]", "[::ffff:127.0.0.1]:80", "0.0.0.0:5000", "100.64.0.1",
                                      "foo.localhost", "metadata.google.internal"])
    def test_without_a_list_private_and_metadata_hosts_are_refused(self, host):
        assert self.refused(outbound.Policy(), host)

    @pytest.mark.parametrize("host", ["ghcr.io", "registry.example.com:5000", "8.8.8.8:443", "docker.io"])
    def test_without_a_list_public_names_pass_the_static_check(self, host):
        assert not self.refused(outbound.Policy(), host)

    def test_a_list_allows_only_what_matches(self):
        policy = outbound.Policy(allowed=outbound.parse_patterns(["registry.corp", "*.ghcr.example:443", "10.20.0.0/16"]))
        assert not self.refused(policy, "registry.corp:5000")
        assert not self.refused(policy, "a.ghcr.example:443")
        assert self.refused(policy, "a.ghcr.example:5000")  # the pattern names a port
        assert self.refused(policy, "ghcr.example:443")  # "*." needs a subdomain
        assert not self.refused(policy, "10.20.3.4:5000")
        assert self.refused(policy, "10.21.0.1")
        assert self.refused(policy, "ghcr.io")

    def test_listed_hosts_may_be_private_but_never_metadata(self):
        policy = outbound.Policy(allowed=outbound.parse_patterns(["registry.corp"]))
        policy.check_connection("registry.corp", 5000, ["10.0.0.5"])
        with pytest.raises(outbound.OutboundRefused, match="metadata"):
            policy.check_connection("registry.corp", 5000, ["169.254.169.254"])

    def test_after_dns_every_address_must_be_public(self):
        policy = outbound.Policy()
        policy.check_connection("registry.example.com", 443, ["93.184.216.34"])
        with pytest.raises(outbound.OutboundRefused) as refused:
            policy.check_connection("registry.example.com", 443, ["93.184.216.34", "127.0.0.1"])
        assert "127.0.0.1" not in str(refused.value)  # never says what the name resolved to

    def test_configured_registries_are_always_allowed(self):
        policy = outbound.Policy(allowed=outbound.parse_patterns(["ghcr.io"]), configured=lambda: ["central.corp:5000"])
        assert not self.refused(policy, "central.corp:5000")
        assert self.refused(policy, "central.corp:6000")

    def test_development_allows_everything(self):
        assert not self.refused(outbound.Policy(private_ok=True), "127.0.0.1:5000")

    @pytest.mark.parametrize("bad", ["http://x/", "a b", "10.0.0.0/99"])
    def test_bad_patterns_are_errors(self, bad):
        with pytest.raises(ValueError):
            outbound.parse_patterns([bad])

    def test_a_bad_list_is_a_system_check_error(self, settings):
        from environments.checks import outbound_policy

        settings.HOIST_ALLOWED_REGISTRIES = ["ok.example", "http://bad/"]
        errors = outbound_policy()
        assert [e.id for e in errors] == ["hoist.E002"] and "http://bad/" in errors[0].msg


# --- every door refuses a reference before connecting ---------------------------------------------


class TestReferencesAtTheDoors:
    def test_service_refuses_a_loopback_image_naming_the_field(self, strict, dev, black_hole):
        with pytest.raises(ValidationError) as refused:
            services.resource_create(environment=dev, name="db", image=f"{black_hole.host}/x/y:1")
        assert "image" in refused.value.message_dict and "outbound policy" in refused.value.message_dict["image"][0]
        assert black_hole.accepted == 0 and not Resource.objects.filter(name="db").exists()

    def test_api_create_and_update_are_400_on_image(self, strict, api, dev, dev_web):
        body = {"name": "meta", "source_type": "image", "image": "169.254.169.254/latest/meta-data:1"}
        assert_error(api["developer"].post(url("projects", "shop", "environments", "dev", "resources"),
                                           body, format="json"), 400, "image")
        response = api["developer"].patch(resource_url(dev, "web"), {"image": "localhost:6379/x:1"}, format="json")
        assert_error(response, 400, "image")
        dev_web.refresh_from_db()
        assert dev_web.image == "registry.example.com/shop/web:1.0"

    def test_api_publish_refuses_a_private_repository_before_any_connection(self, strict, api, dev, dev_web, black_hole):
        response = api["developer"].post(resource_url(dev, "web", "artifacts"),
                                         {"tag": "v1", "repository": f"{black_hole.host}/scan"}, format="json")
        assert_error(response, 400, "repository")
        assert black_hole.accepted == 0 and not Artifact.objects.exists()
        entry = AuditEntry.objects.filter(action="artifact.publish").latest("id")
        assert entry.outcome == "refused"

    def test_the_list_refuses_other_hosts(self, settings, dev):
        settings.HOIST_ALLOWED_REGISTRIES = ["ghcr.io", "*.corp.example"]
        services.resource_create(environment=dev, name="ok", image="eu.corp.example/app:1")
        with pytest.raises(ValidationError, match="HOIST_ALLOWED_REGISTRIES"):
            services.resource_create(environment=dev, name="no", image="quay.io/app:1")

    def test_admin_form_shows_the_error_next_to_image(self, strict, admin_client, dev):
        response = admin_client.post("/admin/environments/resource/add/", {
            "environment": dev.pk, "name": "adm", "kind": "deployment", "source_type": "image",
            "image": "127.0.0.1:5432/db:1", "binding": "track_latest", "follow": "healthy", "replicas": 1,
            "soak_seconds": 0, "progress_deadline_seconds": 120,
        })
        assert response.status_code == 200
        form = response.context["adminform"].form
        assert "image" in form.errors and "outbound policy" in form.errors["image"][0]
        assert not Resource.objects.filter(name="adm").exists()


# --- every connection is checked after DNS --------------------------------------------------------


class TestConnections:
    def policed_client(self):
        return RegistryClient(policy=mirror._CurrentPolicy(), timeout=2, connect_timeout=1)

    def test_a_name_that_resolves_to_loopback_is_refused_without_connecting(self, strict, fake_dns, black_hole):
        fake_dns["innocent.example"] = "127.0.0.1"
        with self.policed_client() as client, pytest.raises(RegistryError) as refused:
            client.resolve(f"innocent.example:{black_hole.port}/app:v1")
        assert refused.value.code == OUTBOUND_REFUSED and not refused.value.retryable
        assert black_hole.accepted == 0
        assert "127.0.0.1" not in refused.value.message

    @pytest.mark.parametrize("bulk", [False, True], ids=["api", "blob-transport"])
    def test_a_redirect_to_a_private_address_is_refused(self, settings, fake_dns, fake_registry, black_hole, bulk):
        # The registry itself is listed (its name points at the fake registry on loopback);
        # its redirect goes to a name that resolves to loopback too, but is not listed. Blob
        # bodies (`bulk`) take Hoist's own transport: the policy holds there too.
        settings.HOIST_ALLOWED_REGISTRIES = ["listed.example"]
        settings.HOIST_ALLOW_PRIVATE_REGISTRIES = False
        port = int(fake_registry.host.rsplit(":", 1)[1])
        fake_dns["listed.example"] = "127.0.0.1"
        fake_dns["sneaky.example"] = "127.0.0.1"
        fake_registry.routes[("GET", "/v2/app/blobs/x")] = FakeResponse(
            307, b"", {"Location": f"http://sneaky.example:{black_hole.port}/steal"})
        with self.policed_client() as client, pytest.raises(RegistryError) as refused:
            client._send("GET", f"http://listed.example:{port}/v2/app/blobs/x", host=f"listed.example:{port}",
                         scopes=(), what="downloading", follow_redirects=True, bulk=bulk)
        assert refused.value.code == OUTBOUND_REFUSED
        assert len(fake_registry.requests) == 1 and black_hole.accepted == 0

    def test_a_token_realm_elsewhere_is_refused_and_gets_no_credentials(self, settings, fake_registry, black_hole):
        settings.HOIST_ALLOWED_REGISTRIES = ["127.0.0.1"]
        settings.HOIST_ALLOW_PRIVATE_REGISTRIES = False
        realm = "http://169.254.169.254/token"
        fake_registry.routes[("HEAD", "/v2/app/manifests/v1")] = FakeResponse(
            401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}",service="x",scope="repository:app:pull"'})
        client = RegistryClient({"127.0.0.1": ("robot", "s3cret")}, policy=mirror._CurrentPolicy(), timeout=2)
        with client, pytest.raises(RegistryError) as refused:
            client.resolve(f"{fake_registry.host}/app:v1")
        assert refused.value.code == OUTBOUND_REFUSED and "169.254.169.254" in refused.value.message

    def test_credentials_go_only_to_their_own_host(self, settings, fake_registry):
        """A realm on another listed host gets that host's credentials, or none; never the registry's."""
        from tests.fixtures.registry import TokenServer  # noqa: F401 (the real flow is in test_registry_auth)

        client = RegistryClient({"registry.corp": ("robot", "s3cret")})
        assert client._realm_credentials("registry.corp", "auth.elsewhere.example", ("robot", "s3cret")) is None
        assert client._realm_credentials("registry.corp", "registry.corp:8443", ("robot", "s3cret")) == ("robot", "s3cret")
        assert client._realm_credentials("docker.io", "auth.docker.io", ("me", "pw")) == ("me", "pw")


# --- a black hole costs only its own ----------------------------------------------------------------


class TestBlackHole:
    def test_timeouts_and_the_deadline_bound_a_call(self, fast_registry_calls, black_hole):
        with pytest.raises(RegistryError) as failed:
            mirror.resolve(f"{black_hole.host}/app:v1")
        assert failed.value.retryable and "timed out" in failed.value.message

    def test_the_breaker_opens_after_repeated_failures_and_stops_calling(self, fast_registry_calls, black_hole):
        for _ in range(3):
            with pytest.raises(RegistryError):
                mirror.resolve(f"{black_hole.host}/app:v1")
        before = black_hole.accepted
        with pytest.raises(mirror.Deferred) as deferred:
            mirror.resolve(f"{black_hole.host}/app:v1")
        assert black_hole.accepted == before  # not called at all while open
        assert deferred.value.retry_at > timezone.now() and "failed 3 times" in deferred.value.message
        gate = Gate.objects.get(key=f"registry:{black_hole.host}")
        assert gate.failures == 3 and gate.open_until is not None

    def test_after_the_cooldown_one_probe_at_a_time(self, fast_registry_calls, black_hole):
        key = f"registry:{black_hole.host}"
        for _ in range(3):
            with pytest.raises(RegistryError):
                mirror.resolve(f"{black_hole.host}/app:v1")
        cooldown_over()
        probe = guard.check(key, lease_s=30, label="x")  # this call is the probe…
        assert probe.probing
        with pytest.raises(guard.Closed, match="being tried again"):
            guard.check(key, lease_s=30, label="x")  # …so the next one isn't let through
        guard.failed(key, probe, "still silent")
        gate = Gate.objects.get(key=key)
        assert gate.open_until > timezone.now() and gate.cooldown_s == 10  # doubled after a failed probe

    def test_a_probe_that_succeeds_closes_the_breaker(self, fast_registry_calls, registry, black_hole):
        from tests.fixtures.registry import make_image

        pushed = registry.push(make_image((256,), seed=5), "app", tag="v1")
        key = f"registry:{registry.server.host}"
        Gate.objects.create(key=key, failures=5, open_until=timezone.now() - timedelta(seconds=1), cooldown_s=20)
        assert mirror.resolve(registry.ref("app", tag="v1")) == pushed
        gate = Gate.objects.get(key=key)
        assert (gate.failures, gate.open_until, gate.cooldown_s) == (0, None, 0)

    def test_an_error_answer_proves_the_host_alive(self, fast_registry_calls, registry):
        key = f"registry:{registry.server.host}"
        Gate.objects.create(key=key, failures=2)
        with pytest.raises(RegistryError, match="not found"):
            mirror.resolve(registry.ref("missing", tag="v1"))
        assert Gate.objects.get(key=key).failures == 0

    def test_the_concurrency_limit_refuses_at_once_when_every_slot_is_held(self, settings):
        settings.HOIST_REGISTRY_CONCURRENCY = 2
        held = [guard.take_slot("registry:h", 2, lease_s=30, label="registry h") for _ in range(2)]
        with pytest.raises(guard.Closed, match="already has 2 calls"):
            guard.take_slot("registry:h", 2, lease_s=30, label="registry h")
        guard.give_back("registry:h", *held[0])
        assert guard.take_slot("registry:h", 2, lease_s=30, label="registry h")

    def test_a_slot_whose_holder_died_comes_back_when_its_lease_ends(self):
        guard.take_slot("registry:h", 1, lease_s=30, label="h")
        GateSlot.objects.filter(key="registry:h").update(held_until=timezone.now() - timedelta(seconds=1))
        assert guard.take_slot("registry:h", 1, lease_s=30, label="h")

    def test_a_busy_host_is_deferred_without_a_connection(self, settings, black_hole):
        settings.HOIST_REGISTRY_CONCURRENCY = 1
        guard.take_slot(f"registry:{black_hole.host}", 1, lease_s=30, label="x")
        with pytest.raises(mirror.Deferred, match="in flight"):
            mirror.resolve(f"{black_hole.host}/app:v1")
        assert black_hole.accepted == 0


class TestPublishByTagDoesNotHoldTheRequest:
    def test_a_slow_registry_queues_the_publish_and_says_so(self, fast_registry_calls, api, dev, make_resource, black_hole,
                                                           django_capture_on_commit_callbacks):
        from django_q.models import OrmQ

        resource = make_resource(dev, "slow", image=f"{black_hole.host}/shop/slow:v1")
        with django_capture_on_commit_callbacks(execute=True):
            response = api["developer"].post(resource_url(dev, "slow", "artifacts"), {"tag": "v1"}, format="json")
        assert response.status_code == 202, response.json()
        body = response.json()
        assert body["status"] == "queued" and body["tag"] == "v1" and "background" in body["detail"]
        assert not Artifact.objects.filter(resource=resource).exists()
        assert any("publish_tag" in str(task.task["func"]) for task in OrmQ.objects.all())

    def test_the_queued_publish_publishes_once_the_registry_answers(self, api, dev, make_resource, registry, developer):
        from tests.fixtures.registry import make_image

        pushed = registry.push(make_image((512,), seed=8), "late", tag="v2")
        resource = make_resource(dev, "late", image=registry.ref("late", tag="v2"))
        publishing.publish_tag(resource.pk, "v2", registry.ref("late"), Artifact.Origin.API, developer.pk, "", 1)
        artifact = Artifact.objects.get(resource=resource)
        assert artifact.digest == pushed and artifact.published_by == developer

    def test_the_queued_publish_gives_up_in_the_audit_log(self, fast_registry_calls, dev, make_resource, black_hole, developer):
        resource = make_resource(dev, "never", image=f"{black_hole.host}/shop/never:v1")
        publishing.publish_tag(resource.pk, "v1", f"{black_hole.host}/shop/never", Artifact.Origin.API, developer.pk, "",
                               publishing.QUEUED_ATTEMPTS)
        entry = AuditEntry.objects.filter(action="artifact.publish").latest("id")
        assert entry.outcome == "failed" and not Artifact.objects.filter(resource=resource).exists()

    def test_non_staff_are_not_told_what_answered(self, api, dev, make_resource, fake_registry):
        make_resource(dev, "gone", image=f"{fake_registry.host}/shop/gone:v1")
        developer = api["developer"].post(resource_url(dev, "gone", "artifacts"), {"tag": "v1"}, format="json")
        message = assert_error(developer, 400, "tag")["errors"]["tag"][0]
        # The registry's own words and status are not repeated (its host is: the developer named it, and
        # its random port may well contain "404", so look at the message without it).
        said = message.replace(fake_registry.host, "<registry>")
        assert "MANIFEST_UNKNOWN" not in said and "404" not in said and "could not be reached" in said
        staff = api["admin"].post(resource_url(dev, "gone", "artifacts"), {"tag": "v1"}, format="json")
        assert "tag 'v1' not found" in assert_error(staff, 400, "tag")["errors"]["tag"][0]


class TestReconcileAgainstABlackHole:
    def test_a_resource_on_a_black_hole_fails_fast_and_backs_off(self, fast_registry_calls, clusters, dev, make_resource,
                                                                black_hole):
        resource = make_resource(dev, "hole", image=f"{black_hole.host}/shop/hole:v1")
        for _ in range(3):
            reconcile.reconcile_resource(resource.pk)
        resource.refresh_from_db()
        # One attempt per task (no in-task retries: each would spend another timeout), and
        # the pause before the next grows: 3 s, 6 s, 12 s …
        assert resource.failures_in_a_row == 3 and black_hole.accepted == 3
        assert resource.backoff_until - timezone.now() > timedelta(seconds=11)
        assert "timed out" in resource.message and resource.dirty_at is not None
        reconcile.reconcile_resource(resource.pk)  # breaker open: no connection, a retry time from the breaker
        resource.refresh_from_db()
        assert black_hole.accepted == 3 and "not being called for now" in resource.message

    def test_the_observer_waits_for_the_backoff(self, dev, make_resource):
        from promotions.observer import hand_out

        resource = make_resource(dev, "later")
        past = timezone.now() - timedelta(seconds=30)
        Resource.objects.filter(pk=resource.pk).update(dirty_at=past, backoff_until=timezone.now() + timedelta(seconds=30))
        assert resource.pk not in hand_out()
        Resource.objects.filter(pk=resource.pk).update(backoff_until=timezone.now() - timedelta(seconds=1))
        assert resource.pk in hand_out()

    def test_a_dead_cluster_opens_its_breaker(self, clusters, dev, make_resource):
        web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
        clusters["a"].faults.refuse_connections(True)
        reconcile.reconcile_resource(web.pk)
        gate = Gate.objects.get(key=reconcile.gate_key(dev.cluster))
        assert gate.open_until is not None and gate.failures == 3
        clusters["a"].faults.refuse_connections(False)

    def test_fixing_a_clusters_endpoint_is_tried_at_once(self, clusters, dev, make_resource, sandbox_factory):
        """The breaker is the endpoint's: an operator who points the cluster somewhere else
        (or rotates its token) doesn't wait for the old endpoint's cooldown."""
        web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
        clusters["a"].faults.refuse_connections(True)
        reconcile.reconcile_resource(web.pk)
        cluster = dev.cluster
        services.cluster_update(cluster=cluster, api_url=sandbox_factory().url)
        cluster.refresh_from_db()
        reconcile.reconcile_resource(web.pk)
        web.refresh_from_db()
        assert web.current_digest == digest(1)
        clusters["a"].faults.refuse_connections(False)


def test_check_deploy_warns_when_private_registries_are_open(settings):
    from environments.checks import private_registries_in_production

    settings.DEBUG, settings.HOIST_ALLOW_PRIVATE_REGISTRIES, settings.HOIST_ALLOWED_REGISTRIES = False, True, []
    assert [w.id for w in private_registries_in_production()] == ["hoist.W001"]
    settings.HOIST_ALLOWED_REGISTRIES = ["ghcr.io"]
    assert private_registries_in_production() == []


def test_metrics_show_open_breakers(client, settings):
    settings.HOIST_METRICS_TOKEN = "m"
    Gate.objects.create(key="registry:slow.example", failures=4, open_until=timezone.now() + timedelta(seconds=30))
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer m").content.decode()
    assert 'hoist_breaker_open{target="registry:slow.example"} 1.0' in body
    assert 'hoist_breaker_failures{target="registry:slow.example"} 4.0' in body


def test_an_unreadable_pattern_fails_closed(settings, dev):
    settings.HOIST_ALLOWED_REGISTRIES = ["http://typo/"]
    settings.HOIST_ALLOW_PRIVATE_REGISTRIES = True
    with pytest.raises(ValidationError, match="HOIST_ALLOWED_REGISTRIES"):
        services.resource_create(environment=dev, name="x", image="ghcr.io/app:1")


def test_a_probe_gets_a_short_deadline(fast_registry_calls, settings, black_hole, monkeypatch):
    """A host that kept failing is probed with PROBE_DEADLINE_S, not the whole call deadline."""
    settings.HOIST_REGISTRY_DEADLINE_S = 20
    given = []
    real = RegistryClient.deadline
    monkeypatch.setattr(RegistryClient, "deadline", lambda self, seconds: given.append(seconds) or real(self, seconds))
    Gate.objects.create(key=f"registry:{black_hole.host}", failures=3, open_until=timezone.now() - timedelta(seconds=1),
                        cooldown_s=5)
    with pytest.raises(RegistryError):
        mirror.resolve(f"{black_hole.host}/app:v1")
    assert given == [mirror.PROBE_DEADLINE_S]
    gate = Gate.objects.get(key=f"registry:{black_hole.host}")
    assert gate.open_until > timezone.now() and gate.cooldown_s == 10


def test_a_queued_publish_that_fails_again_is_scheduled_later(fast_registry_calls, dev, make_resource, black_hole,
                                                               developer, django_capture_on_commit_callbacks):
    from django_q.models import Schedule

    resource = make_resource(dev, "again", image=f"{black_hole.host}/shop/again:v1")
    with django_capture_on_commit_callbacks(execute=True):
        publishing.publish_tag(resource.pk, "v1", f"{black_hole.host}/shop/again", Artifact.Origin.API, developer.pk, "", 1)
    scheduled = Schedule.objects.get(func="promotions.publishing.publish_tag")
    assert scheduled.schedule_type == Schedule.ONCE and scheduled.repeats < 0  # removed once it has run
    assert scheduled.next_run > timezone.now() and ast.literal_eval(scheduled.args)[-1] == 2  # the second try
    assert not Artifact.objects.filter(resource=resource).exists()


def test_a_watch_that_lists_a_cluster_closes_its_breaker(clusters, dev):
    """Back from an outage: the observer's relist proves the cluster answers, so repairs run
    at once instead of after the cooldown the outage's failed probes built up."""
    import threading

    from promotions import observer
    from promotions.kube import ClusterClient

    cluster = dev.cluster
    key = reconcile.gate_key(cluster)
    Gate.objects.create(key=key, failures=7, open_until=timezone.now() + timedelta(seconds=60), cooldown_s=60)
    watch = observer.Watch(cluster.pk, "apps/v1", "Deployment", observer.Handlers(), threading.Event())
    watch._list(ClusterClient.for_cluster(cluster), cluster)
    gate = Gate.objects.get(key=key)
    assert (gate.failures, gate.open_until, gate.cooldown_s) == (0, None, 0)
