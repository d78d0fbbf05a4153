"""Helpers the page views share: the caller's project, environment and resource, looked up once."""

from __future__ import annotations

from django.shortcuts import get_object_or_404

from environments import selectors
from environments.models import Environment, Resource
from projects import audit


def environment_of(access, slug: str) -> Environment:
    environment = get_object_or_404(Environment, project=access.project, slug=slug)
    environment.project = access.project  # no second query for the project
    return environment


def resource_of(access, env: str, name: str) -> Resource:
    environment = environment_of(access, env)
    resource = get_object_or_404(
        selectors.with_status(
            Resource.objects.filter(environment=environment).select_related("promote_from__environment")
        ),
        name=name,
    )
    resource.environment = environment
    return resource


def require(request, check, *args, action: str, target=None) -> None:
    """A page's early role check (`projects.permissions.check_access*`): a page a role can't
    use is a 403. A refused post is a refused write, so it is audited like one."""
    if request.method != "POST":
        check(*args)
        return
    with audit.guarding(action, actor=request.user, target=target, project=args[0].project):
        check(*args)
