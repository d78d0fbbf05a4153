"""Clusters, environments, resources and artifacts.

Views check the caller's role early (so a viewer gets 403 before any body
parsing), check JSON shape with the serializers, and call the services for
everything else; the services audit every write, refused or not. Views open
no transaction and take no lock of their own: the services do.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as APIValidationError
from rest_framework.response import Response

from environments import freeze, selectors, services
from environments.models import Binding, Cluster, Environment, RegistryHost, Resource, SourceType
from environments.selectors import clusters_visible_to
from core.api.base import HoistViewSet
from core.api.errors import conflict, field_errors
from core.api.renderers import JSONRenderer
from projects.api.base import ENVIRONMENT_PARAM, PROJECT_PARAM, RESOURCE_PARAM, ProjectScopedViewSet
from projects import audit, permissions
from projects.models import Project, Role

from . import reads
from . import serializers as s
from .approvals import AwaitingApprovalSerializer, awaiting_body
from .etags import check_if_match, resource_etag
from .filters import ResourceFilter

# --- clusters ---------------------------------------------------------------------------------


def _no_cluster(slug: str) -> str:
    # One wording for a cluster that doesn't exist and one the caller may not see.
    return f"No cluster {slug!r}."


@extend_schema(tags=["clusters"])
@extend_schema_view(
    create=extend_schema(request=s.ClusterWriteSerializer, responses={201: s.ClusterSerializer}),
    partial_update=extend_schema(request=s.ClusterUpdateSerializer, responses=s.ClusterSerializer),
    destroy=extend_schema(responses={204: None}),
)
class ClusterViewSet(HoistViewSet):
    """Kubernetes clusters (credentials only as "set"/"not set"). Staff see and change every cluster; anyone
    else sees only the clusters that host an environment of a project they are a member of. A cluster you
    may not see is a 404, as one that doesn't exist."""

    serializer_class = s.ClusterSerializer
    lookup_url_kwarg = "cluster"
    queryset = Cluster.objects.none()
    extra_error_codes = {"DELETE": (409,)}

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            action = {"POST": "cluster.create", "DELETE": "cluster.delete"}.get(request.method, "cluster.update")
            with audit.guarding(action, actor=request.user):
                permissions.require_staff(request.user, "change clusters")

    def _get(self) -> Cluster:
        slug = self.kwargs["cluster"]
        cluster = clusters_visible_to(self.request.user).filter(slug=slug).first()
        if cluster is None:
            raise NotFound(_no_cluster(slug))
        return cluster

    def list(self, request):
        page = self.paginate_queryset(clusters_visible_to(request.user).order_by("name", "pk"))
        return self.get_paginated_response(s.ClusterSerializer(page, many=True).data)

    def retrieve(self, request, cluster):
        return Response(s.ClusterSerializer(self._get()).data)

    def create(self, request):
        body = s.ClusterWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = s.keep_masked(body.validated_data, s.ClusterWriteSerializer.SECRETS)
        cluster = services.cluster_create(actor=request.user, **values)
        return Response(s.ClusterSerializer(cluster).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, cluster):
        instance = self._get()
        body = s.ClusterUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = s.keep_masked(body.validated_data, s.ClusterWriteSerializer.SECRETS)
        instance = services.cluster_update(cluster=instance, actor=request.user, **values)
        return Response(s.ClusterSerializer(instance).data)

    def destroy(self, request, cluster):
        instance = self._get()
        try:
            services.cluster_delete(cluster=instance, actor=request.user)
        except DjangoValidationError as exc:
            raise conflict(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- registries -------------------------------------------------------------------------------


@extend_schema(tags=["registries"])
@extend_schema_view(
    retrieve=extend_schema(parameters=[OpenApiParameter("host", str, OpenApiParameter.PATH)]),
    partial_update=extend_schema(parameters=[OpenApiParameter("host", str, OpenApiParameter.PATH)],
                                 request=s.RegistryUpdateSerializer, responses=s.RegistrySerializer),
)
class RegistryViewSet(HoistViewSet):
    """Registry hosts Hoist has called (staff only): how often their tags are watched, the rate and
    concurrency Hoist allows itself there, whether keep tags are pushed, and what Hoist observed
    (requests in the last minute, a 429's wait, the last error)."""

    serializer_class = s.RegistrySerializer
    lookup_url_kwarg = "host"
    lookup_value_regex = "[^/]+"
    queryset = RegistryHost.objects.none()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method in ("GET", "HEAD", "OPTIONS"):
            permissions.require_staff(request.user, "see registry settings")
        else:
            with audit.guarding("registry.update", actor=request.user):
                permissions.require_staff(request.user, "change registry settings")

    def _get(self) -> RegistryHost:
        host = self.kwargs["host"]
        found = selectors.registries_with_watch_counts().filter(host=host).first()
        if found is None:
            raise NotFound(f"No registry {host!r} (a registry appears once Hoist has called it).")
        return found

    def list(self, request):
        page = self.paginate_queryset(selectors.registries_with_watch_counts().order_by("host"))
        return self.get_paginated_response(s.RegistrySerializer(page, many=True).data)

    def retrieve(self, request, host):
        return Response(s.RegistrySerializer(self._get()).data)

    def partial_update(self, request, host):
        instance = self._get()
        body = s.RegistryUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.registry_update(registry=instance, actor=request.user, **body.validated_data)
        return Response(s.RegistrySerializer(self._get()).data)


# --- environments -----------------------------------------------------------------------------


def _environment_unique_errors(exc: DjangoValidationError, project: Project, slug: str, cluster, namespace: str):
    """Put the model's "already exists" (a non-field error for two-field constraints) on the field sent."""
    errors = field_errors(exc)
    general = errors.pop("non_field_errors", [])
    if general:
        if Environment.objects.filter(project=project, slug=slug).exists():
            errors.setdefault("slug", []).append(f"Project {project.slug} already has an environment {slug}.")
        if cluster is not None and Environment.objects.filter(cluster=cluster, namespace=namespace).exists():
            errors.setdefault("namespace", []).append(
                f"Namespace {namespace} of cluster {cluster.slug} is used by another environment."
            )
        if not errors:
            errors["non_field_errors"] = general
    return APIValidationError(errors)


@extend_schema(tags=["environments"], parameters=[PROJECT_PARAM])
@extend_schema_view(
    create=extend_schema(request=s.EnvironmentCreateSerializer, responses={201: s.EnvironmentSerializer}),
    partial_update=extend_schema(request=s.EnvironmentUpdateSerializer, responses=s.EnvironmentSerializer),
    retrieve=extend_schema(parameters=[ENVIRONMENT_PARAM]),
    destroy=extend_schema(parameters=[ENVIRONMENT_PARAM], responses={204: None}),
)
class EnvironmentViewSet(ProjectScopedViewSet):
    """A project's environments, in pipeline order. Maintainers add, change and delete them."""

    serializer_class = s.EnvironmentSerializer
    lookup_url_kwarg = "environment"
    queryset = Environment.objects.none()
    extra_error_codes = {"DELETE": (409,)}

    def get_queryset(self):
        return self.project.environments.select_related("cluster").order_by("position", "name", "pk")

    def _get(self) -> Environment:
        return get_object_or_404(self.get_queryset(), slug=self.kwargs["environment"])

    def list(self, request, project):
        page = self.paginate_queryset(self.get_queryset())
        context = {"freezes": freeze.for_environments(page)}  # every environment's windows in one query
        return self.get_paginated_response(s.EnvironmentSerializer(page, many=True, context=context).data)

    def retrieve(self, request, project, environment):
        return Response(s.EnvironmentSerializer(self._get()).data)

    def create(self, request, project):
        self.require(Role.MAINTAINER, "add environments", action="environment.create")
        body = s.EnvironmentCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = dict(body.validated_data)
        # Only a cluster the caller may see (environment_create says the same again for every door).
        cluster = clusters_visible_to(request.user).filter(slug=values["cluster"]).first()
        if cluster is None:
            raise APIValidationError({"cluster": [_no_cluster(values["cluster"])]})
        values["cluster"] = cluster
        try:
            env = services.environment_create(project=self.project, actor=request.user, **values)
        except DjangoValidationError as exc:
            raise _environment_unique_errors(exc, self.project, values["slug"], cluster, values["namespace"]) from None
        return Response(s.EnvironmentSerializer(env).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, project, environment):
        env = self._get()
        self.require(Role.MAINTAINER, "change environments", action="environment.update", target=env)
        body = s.EnvironmentUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        body.refuse_changes({"slug": env.slug, "cluster": env.cluster.slug, "namespace": env.namespace})
        env = services.environment_update(environment=env, actor=request.user, **body.validated_data)
        return Response(s.EnvironmentSerializer(env).data)

    def destroy(self, request, project, environment):
        env = self._get()
        self.require(Role.MAINTAINER, "delete environments", action="environment.delete", target=env)
        try:
            services.environment_delete(environment=env, actor=request.user)
        except DjangoValidationError as exc:
            raise conflict(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- resources --------------------------------------------------------------------------------


class EnvironmentScopedViewSet(ProjectScopedViewSet):
    """Under /projects/{project}/environments/{environment}/."""

    _environment: Environment | None = None

    @property
    def environment(self) -> Environment:
        if self._environment is None:
            self._environment = get_object_or_404(
                Environment.objects.select_related("project", "cluster"), project=self.project, slug=self.kwargs["environment"]
            )
        return self._environment

    def resources(self):
        return (
            Resource.objects.filter(environment=self.environment)
            .select_related("environment", "promote_from__environment")
            .prefetch_related("env_vars")
            .annotate(awaiting_approval=selectors.awaiting_approval())  # status.display, as the pages show it
            .order_by("name", "pk")
        )

    def get_resource(self) -> Resource:
        return get_object_or_404(self.resources(), name=self.kwargs["resource"])


def _upstream(project: Project, env_slug: str | None, name: str | None) -> Resource:
    """The resource `env_slug/name` of this project (never another's: a forged name is simply not found)."""
    errors = {}
    if not env_slug:
        errors["source.environment"] = ["Give the slug of the environment to promote from."]
    if not name:
        errors["source.resource"] = ["Give the name of the resource to promote from."]
    if errors:
        raise APIValidationError(errors)
    environment = Environment.objects.filter(project=project, slug=env_slug).first()
    if environment is None:
        raise APIValidationError({"source.environment": [f"Project {project.slug} has no environment {env_slug!r}."]})
    upstream = Resource.objects.select_related("environment__project").filter(environment=environment, name=name).first()
    if upstream is None:
        raise APIValidationError({"source.resource": [f"Environment {env_slug} has no resource {name!r}."]})
    return upstream


PROMOTE_KEYS = ("environment", "resource", "binding", "digest")


def source_arguments(project: Project, source: dict | None, current: Resource | None) -> dict:
    """The service's source arguments from the API's `source` object.

    On a change (`current` given) what is left out stays as it is. Only the
    shape is checked here (which keys go with which type); the rules are the
    services'.
    """
    if source is None:
        return {}
    errors: dict[str, list[str]] = {}
    source_type = source.get("type") or (current.source_type if current else None)
    if source_type is None:
        raise APIValidationError({"source.type": ["This field is required: image or promote."]})

    if source_type == SourceType.IMAGE:
        for key in PROMOTE_KEYS:
            if source.get(key) is not None:
                errors[f"source.{key}"] = ["Only for sources of type promote."]
        if errors:
            raise APIValidationError(errors)
        image = source.get("image")
        if image is None:
            image = current.image if current and current.source_type == SourceType.IMAGE else ""
        return {"source_type": SourceType.IMAGE, "image": image}

    if "image" in source:
        raise APIValidationError({"source.image": ["Only for sources of type image."]})
    was_promoted = current is not None and current.source_type == SourceType.PROMOTE
    env_slug, name = source.get("environment"), source.get("resource")
    if env_slug is None and name is None and was_promoted:
        upstream = current.promote_from
    else:
        if was_promoted:
            env_slug = env_slug or current.promote_from.environment.slug
            name = name or current.promote_from.name
        upstream = _upstream(project, env_slug, name)
    digest = source.get("digest")
    binding = source.get("binding")
    if binding is None:
        if digest:
            binding = Binding.PIN_DIGEST
        elif was_promoted:
            binding = current.binding
        else:
            binding = Binding.TRACK_LATEST
    if binding == Binding.TRACK_LATEST:
        if digest is not None:
            raise APIValidationError({"source.digest": ["A digest goes only with binding pin_digest; send null or leave it out."]})
        digest = ""
    elif digest is None:
        digest = current.pinned_digest if was_promoted and current.binding == Binding.PIN_DIGEST else ""
    return {"source_type": SourceType.PROMOTE, "promote_from": upstream, "binding": binding, "pinned_digest": digest}


def config_arguments(config: dict | None) -> dict:
    if not config:
        return {}
    values = s.keep_masked(config, ["database_url"])
    if "env" in values:
        values["env"] = [
            {"name": item["name"], "value": item.get("value"), "secret": item.get("secret", False)} for item in values["env"]
        ]
    return values


RESOURCE_ERROR_CODES = {"PATCH": (409, 412, 428), "DELETE": (409, 412, 428)}
ETAG_HEADER = OpenApiResponse(s.ResourceSerializer, description="The resource; its `ETag` header guards the next change.")
ETAG_OUT = OpenApiParameter(
    "ETag", str, OpenApiParameter.HEADER, response=[200, 201, 412],
    description="Version of the resource's name, kind, source and config (not its status); send it back in If-Match.",
)
IF_MATCH = OpenApiParameter(
    "If-Match", str, OpenApiParameter.HEADER, required=True,
    description="The ETag from your last GET (or `*` to overwrite whatever is there). Missing: 428; stale: 412.",
)


@extend_schema(tags=["resources"], parameters=[PROJECT_PARAM, ENVIRONMENT_PARAM])
@extend_schema_view(
    list=extend_schema(responses=s.ResourceSerializer(many=True)),
    create=extend_schema(request=s.ResourceCreateSerializer, responses={201: ETAG_HEADER}, parameters=[ETAG_OUT]),
    retrieve=extend_schema(parameters=[RESOURCE_PARAM, ETAG_OUT], responses=ETAG_HEADER),
    partial_update=extend_schema(
        parameters=[RESOURCE_PARAM, IF_MATCH, ETAG_OUT], request=s.ResourceUpdateSerializer,
        responses={200: ETAG_HEADER, 202: AwaitingApprovalSerializer},
        description="Change config, source, binding or pinned digest. Only what is given changes; `config.env`, when "
        "given, replaces the list (a secret with value null keeps its value). **Requires `If-Match`** with the ETag "
        "of your last GET (or `*`): a mismatch is a 412 naming the current ETag. Changing a pin or binding needs "
        "the maintainer role; anything in a protected environment too. In an environment that requires approvals, "
        "a change of the source is not applied but answered 202 with the change request it became (config changes "
        "in the same call are saved). During a freeze window a change of the source needs `freeze_override`.",
    ),
    destroy=extend_schema(
        parameters=[RESOURCE_PARAM, IF_MATCH], responses={204: None},
        description="Delete the resource. **Requires `If-Match`**. Refused (409) while other resources promote from it.",
    ),
)
class ResourceViewSet(EnvironmentScopedViewSet):
    """Resources of an environment: name, kind, source, config and status."""

    serializer_class = s.ResourceSerializer
    filterset_class = ResourceFilter
    # A resource has no floats: orjson writes DRF's bytes (core.api.renderers), and a page of 500 in a fraction of the time.
    renderer_classes = [JSONRenderer]
    lookup_url_kwarg = "resource"
    queryset = Resource.objects.none()
    extra_error_codes = RESOURCE_ERROR_CODES

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Resource.objects.none()
        return self.resources()

    def _respond(self, resource: Resource, code=status.HTTP_200_OK) -> Response:
        resource = self.resources().get(pk=resource.pk)  # fresh, with what the representation needs
        return Response(s.ResourceSerializer(resource).data, status=code, headers={"ETag": resource_etag(resource)})

    def list(self, request, project, environment):
        rows = self.filter_queryset(reads.resource_list(self.environment))
        page = reads.resources_of(self.paginate_queryset(rows), self.environment, rows.db)
        # What each page's resources need beyond their rows, read once for the page.
        context = reads.page_context(page, reads.ids_of(rows, page))
        return self.get_paginated_response(s.ResourceSerializer(page, many=True, context=context).data)

    def retrieve(self, request, project, environment, resource):
        return self._respond(self.get_resource())

    def create(self, request, project, environment):
        self.require_change(self.environment, "create resources", action="resource.create")
        body = s.ResourceCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        arguments = {
            "environment": self.environment, "name": data["name"], "kind": data["kind"],
            **source_arguments(self.project, data["source"], None), **config_arguments(data.get("config")),
        }
        created = services.resource_create(actor=request.user, **arguments)
        return self._respond(created, status.HTTP_201_CREATED)

    def partial_update(self, request, project, environment, resource):
        current = self.get_resource()
        self.require_change(current.environment, "change resources", action="resource.update", target=current)
        body = s.ResourceUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        body.refuse_changes({"environment": current.environment.slug})
        data = body.validated_data
        changes = {**source_arguments(self.project, data.get("source"), current), **config_arguments(data.get("config"))}
        for field in ("name", "kind"):
            if field in data:
                changes[field] = data[field]
        # If-Match is checked by the service under its row lock, against what is stored then.
        updated = services.resource_update(
            resource=current, actor=request.user, precondition=lambda locked: check_if_match(request, resource_etag(locked)),
            freeze_override=data.get("freeze_override", ""), **changes,
        )
        if updated.change_request is not None:  # what runs waits for approvals; any config change is saved
            return Response(awaiting_body(updated.change_request), status=status.HTTP_202_ACCEPTED,
                            headers={"ETag": resource_etag(updated)})
        return self._respond(updated)

    def destroy(self, request, project, environment, resource):
        current = self.get_resource()
        self.require_change(current.environment, "delete resources", action="resource.delete", target=current)
        try:
            services.resource_delete(
                resource=current, actor=request.user, precondition=lambda locked: check_if_match(request, resource_etag(locked)),
            )
        except DjangoValidationError as exc:
            raise conflict(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
