"""Create (or refresh) the demo: a project with dev → staging → prod and an admin login.

Idempotent: running it again updates what names the sandbox and registry
ports (cluster URLs and registries, and dev/web's image when it names another
registry than cluster-a's now), keeps everything else (prod/web's pin too), and
asks for a reconcile of every resource of the demo project (the sandbox
clusters start empty on every run). Every write goes through the services, as
the "command" door.
"""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core import doors
from environments import services as env_services
from environments.models import Binding, Cluster, Environment, Resource, SourceType
from environments.references import InvalidReference, parse_reference
from projects import services as project_services
from projects.models import Membership, Project, Role

DEMO_DIGEST = "sha256:" + "5e" * 32


class Command(BaseCommand):
    help = "Create the demo project (dev/staging/prod), its clusters and an admin user."

    def add_arguments(self, parser):
        parser.add_argument("--cluster", action="append", default=[], metavar="SLUG=URL",
                            help="A cluster and its API URL, e.g. cluster-a=http://127.0.0.1:6443 (repeatable).")
        parser.add_argument("--registry", action="append", default=[], metavar="SLUG=HOST",
                            help="The registry a cluster's nodes pull from, e.g. cluster-a=127.0.0.1:5001.")
        parser.add_argument("--image", default=f"127.0.0.1:5001/shop/web@{DEMO_DIGEST}",
                            help="The image dev/web starts from.")
        parser.add_argument("--pin", default="", help="The digest prod/web is pinned to (default: dev/web's first).")
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", help="Admin password (default: a new random one, printed).")

    def handle(self, *args, **options):
        clusters = self._pairs(options["cluster"], "--cluster") or {"cluster-a": "http://127.0.0.1:6443", "cluster-b": "http://127.0.0.1:6444"}
        registries = self._pairs(options["registry"], "--registry")
        password = options["password"] or secrets.token_urlsafe(12)
        with doors.door("command"), transaction.atomic():
            user = self._admin(options["username"], password)
            rows = {slug: self._cluster(slug, url, registries.get(slug, "")) for slug, url in clusters.items()}
            first, last = rows[next(iter(rows))], rows[list(rows)[-1]]
            project = Project.objects.filter(slug="shop").first() or project_services.project_create(
                slug="shop", name="Shop", description="Demo project"
            )
            if not Membership.objects.filter(project=project, user=user, role=Role.MAINTAINER).exists():
                project_services.membership_set(project=project, username=user.username, role=Role.MAINTAINER)
            envs = {}
            for position, (slug, cluster, protected) in enumerate(
                [("dev", first, False), ("staging", first, False), ("prod", last, True)]
            ):
                envs[slug] = Environment.objects.filter(project=project, slug=slug).first() or env_services.environment_create(
                    project=project, name=slug, slug=slug, cluster=cluster, namespace=f"shop-{slug}",
                    protected=protected, position=position,
                )
            dev_web = self._resource(envs["dev"], name="web", source_type=SourceType.IMAGE, image=options["image"],
                                     ports=[8080], replicas=1, ingress_host="web.dev.shop.example.com",
                                     env=[{"name": "MODE", "value": "dev"}])
            dev_web = self._follow_registry(dev_web, registry=registries.get(first.slug, ""), image=options["image"])
            staging_web = self._resource(envs["staging"], name="web", source_type=SourceType.PROMOTE, promote_from=dev_web,
                                         binding=Binding.TRACK_LATEST, ports=[8080], replicas=2,
                                         ingress_host="web.staging.shop.example.com", env=[{"name": "MODE", "value": "staging"}])
            self._resource(envs["prod"], name="web", source_type=SourceType.PROMOTE, promote_from=staging_web,
                           binding=Binding.PIN_DIGEST, pinned_digest=options["pin"] or self._first_digest(dev_web),
                           ports=[8080], replicas=3, ingress_host="web.shop.example.com",
                           database_url="postgres://shop:change-me@db.prod.internal/shop",
                           env=[{"name": "MODE", "value": "prod"}])
            # The sandbox clusters start empty: fill them now, not at the next sweep.
            for resource in Resource.objects.filter(environment__project=project).order_by("pk"):
                env_services.reconcile_request(resource=resource)
        self.stdout.write(f"login: {options['username']} / {password}")

    def _first_digest(self, resource):
        first = resource.artifacts.order_by("sequence").first()
        return first.digest if first else DEMO_DIGEST

    def _pairs(self, values, flag):
        pairs = {}
        for value in values:
            slug, sep, rest = value.partition("=")
            if not sep or not slug or not rest:
                raise CommandError(f"{flag} expects SLUG=VALUE, got {value!r}")
            pairs[slug] = rest
        return pairs

    def _admin(self, username, password):
        # The demo's Django login (not a Hoist object: no Hoist service writes users' passwords).
        user, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return user

    def _cluster(self, slug, url, registry):
        cluster = Cluster.objects.filter(slug=slug).first()
        if cluster is None:
            return env_services.cluster_create(name=slug, slug=slug, api_url=url, registry=registry)
        return env_services.cluster_update(cluster=cluster, api_url=url, registry=registry or cluster.registry)

    def _follow_registry(self, resource, *, registry, image):
        """Point dev/web at `image` when it names another registry than `registry` (cluster-a's now).

        Only when `image` itself is on that registry (what rundemo passes): a run
        without registries, or a seed by hand without --image, changes nothing.
        A new reference by tag: the reconciler resolves it and publishes the digest.
        """
        if not registry or resource.source_type != SourceType.IMAGE:
            return resource
        try:
            current, wanted = parse_reference(resource.image).registry, parse_reference(image).registry
        except InvalidReference:
            return resource
        if current == registry.lower() or wanted != registry.lower():
            return resource
        return env_services.resource_update(resource=resource, image=image)

    def _resource(self, environment, name, **arguments):
        existing = Resource.objects.filter(environment=environment, name=name).first()
        return existing or env_services.resource_create(environment=environment, name=name, **arguments)
