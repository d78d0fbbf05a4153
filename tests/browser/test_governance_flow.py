"""Issue 14 in a real browser: a maintainer asks for a prod promote, a second maintainer approves it,
it is applied to the (sandbox) cluster and runs healthy, and a notification receiver (a small
loopback HTTP server) got every event, signed, in order.

No django-q2 worker runs in tests: where a worker would pick up a task (the reconcile, each
delivery), the test calls the same function.
"""

import hashlib
import hmac
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from environments import services as env_services
from environments.models import Binding, ChangeRequest, Environment
from projects.models import Membership, Role
from promotions import notifications, reconcile
from promotions.kube import forget_clients, forget_crd_cache
from promotions.models import WebhookDelivery
from tests.browser.test_promotion_flows import sign_in
from tests.fixtures.domain import digest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECRET = "receiver-s3cret-0123456789abcdef"


class Receiver:
    """Records each POST (headers, body) and answers 200."""

    def __init__(self):
        self.posts: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append((dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hoist"

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.posts]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def world(members, project, environments, make_resource, make_user, cluster_a, sandbox, settings):
    settings.HOIST_ALLOW_PRIVATE_REGISTRIES = True  # the receiver is on loopback
    cluster_a.api_url = sandbox.url
    cluster_a.save()
    forget_crd_cache()
    # prod on the same cluster as staging (no central registry needed), two approvals required.
    prod = environments["prod"]
    Environment.objects.filter(pk=prod.pk).update(cluster=cluster_a, required_approvals=1)
    second = make_user("mia")
    Membership.objects.create(project=project, user=second, role=Role.MAINTAINER)
    dev_web = make_resource(environments["dev"], "web", image="registry.a.example/shop/web@" + digest(1))
    staging_web = make_resource(environments["staging"], upstream=dev_web, follow="published")
    prod.refresh_from_db()
    prod_web = make_resource(prod, upstream=staging_web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    for resource in (dev_web, staging_web, prod_web):
        reconcile.reconcile_resource(resource.pk)
    env_services.artifact_publish(resource=dev_web, digest=digest(2))
    reconcile.reconcile_resource(dev_web.pk)
    reconcile.reconcile_resource(staging_web.pk)
    yield {"prod_web": prod_web, "staging_web": staging_web}
    forget_crd_cache()
    forget_clients()


def deliver_all():
    for delivery in WebhookDelivery.objects.filter(status__in=WebhookDelivery.PENDING).order_by("id"):
        notifications.deliver(delivery.pk, delivery.attempts + 1)


def test_a_prod_promote_is_approved_applied_and_announced(page, live_server, world, receiver, members):
    notifications.webhook_create(project=members["maintainer"].memberships.first().project, name="ops",
                                 url=receiver.url, secret=SECRET, actor=members["maintainer"])
    prod_web = world["prod_web"]

    # The maintainer asks for the promote, from the pipeline's one-click promote.
    sign_in(page, live_server, "maintainer")
    page.goto(f"{live_server.url}/projects/shop/envs/prod/resources/web/promote/")
    expect(page.get_by_text("needs 1 approval")).to_be_visible()
    page.shots("promote-asks")
    page.get_by_role("button", name="Promote").click()
    expect(page.get_by_text(re.compile("awaits 1 approval"))).to_be_visible()
    change = ChangeRequest.objects.get(resource=prod_web)
    assert change.to_digest == digest(2)
    expect(page.locator("#approvals")).to_contain_text("another maintainer decides")
    page.shots("awaiting")

    # A second maintainer approves it from the resource page.
    page.context.clear_cookies()
    sign_in(page, live_server, "mia")
    page.goto(f"{live_server.url}/projects/shop/")
    expect(page.locator("#pipeline .badge.awaiting")).to_have_count(1)
    page.locator("#pipeline .badge.awaiting").click()
    expect(page.locator("#approvals")).to_contain_text(digest(2))
    page.shots("to-approve")
    page.locator("#approvals").get_by_role("button", name="Approve").click()
    expect(page.get_by_text(re.compile("Approved the change .* the change is applied"))).to_be_visible()
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.APPLIED

    # A worker applies it; the sandbox rolls it out at once.
    reconcile.reconcile_resource(prod_web.pk)
    prod_web.refresh_from_db()
    assert prod_web.current_digest == digest(2) and prod_web.healthy_digest == digest(2)
    page.reload()
    page.shots("applied")

    deliver_all()
    assert receiver.events() == ["approval.requested", "approval.approved", "promotion.healthy"]
    for headers, body in receiver.posts:
        stamp, _, sent = headers["X-Hoist-Signature"].partition(",v1=")
        expected = hmac.new(SECRET.encode(), f"{stamp.removeprefix('t=')}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(sent, expected)
    healthy = json.loads(receiver.posts[-1][1])
    assert (healthy["digest"], healthy["environment"], healthy["resource"]) == (digest(2), "prod", "web")
