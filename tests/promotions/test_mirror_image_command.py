import io

import pytest
from django.core.management import CommandError, call_command

from tests.fixtures.registry import make_image

pytestmark = pytest.mark.registry


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("mirror_image", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_it_copies_by_digest_and_prints_it(db, registry, registry_b):
    digest = registry.push(make_image((2048,), seed=11), "web")
    printed, report = run(registry.ref("web", digest=digest), f"{registry_b.host}/{registry_b.repo('web')}")
    assert printed == digest
    assert registry_b.pusher.manifest_exists(registry_b.repo("web"), digest)
    again, report = run(registry.ref("web", digest=digest), f"{registry_b.host}/{registry_b.repo('web')}")
    assert again == digest and "already present" in report


def test_a_tag_is_resolved_to_its_digest(db, registry, registry_b):
    digest = registry.push(make_image((1024,), seed=12), "web", tag="v1")
    printed, _ = run(registry.ref("web", tag="v1"), f"{registry_b.host}/{registry_b.repo('web')}")
    assert printed == digest


@pytest.mark.parametrize(
    "source, dest, message",
    [
        ("not a ref", "127.0.0.1:1/x", "not a valid image reference"),
        ("127.0.0.1:1/x@sha256:abc", "127.0.0.1:1/y", "not a valid image reference"),
        ("127.0.0.1:1/x:v1", "127.0.0.1:1/y:latest", "without a tag"),
    ],
)
def test_bad_references_are_refused(db, source, dest, message):
    with pytest.raises(CommandError, match=message):
        run(source, dest)


def test_a_missing_digest_is_a_clear_error(db, registry, registry_b):
    with pytest.raises(CommandError, match="not found"):
        run(registry.ref("web", digest="sha256:" + "1" * 64), f"{registry_b.host}/{registry_b.repo('web')}")


def test_an_unreachable_registry_says_to_retry(db, registry_b):
    with pytest.raises(CommandError, match="try again"):
        run("127.0.0.1:9/x@sha256:" + "1" * 64, f"{registry_b.host}/{registry_b.repo('web')}")
