"""JSON shapes of clusters, environments, resources and artifacts (DESIGN "Public contract").

Read and write shapes are separate classes: secrets are written as strings
and read back only as "set"/"not set" (or, for secret env vars, `value:
null` with `"set": true`). Write serializers check JSON types and shape;
every rule is the services'.
"""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from environments import display, freeze, keeps, selectors
from environments.fields import mask
from environments.models import (Artifact, Binding, Cluster, Environment, Follow, Keep, Kind, Phase, RegistryHost,
                                 Resource, SourceType)
from core.api.fields import StrictBooleanField, StrictCharField, StrictIntegerField, StrictSerializer, datetime_writer

MASKS = ("set", "not set")
MASK_HELP = 'Write-only. Reads back as "set" or "not set"; writing "set" or "not set" keeps the stored value, "" or null clears it.'


class MaskedField(serializers.CharField):
    """A write-only secret that reads back as "set"/"not set"."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("help_text", MASK_HELP)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return mask(value)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def keep_masked(values: dict, fields) -> dict:
    """Drop secrets sent back as "set"/"not set" (keep what is stored); null clears."""
    out = dict(values)
    for field in fields:
        if field in out:
            if out[field] in MASKS:
                del out[field]
            elif out[field] is None:
                out[field] = ""
    return out


# --- clusters ---------------------------------------------------------------------------------


@extend_schema_field({"type": "string", "enum": list(MASKS)})
class MaskedReadField(serializers.CharField):
    def to_representation(self, value):
        return mask(value)


class ClusterSerializer(serializers.ModelSerializer):
    token = MaskedReadField(help_text='"set" or "not set"; the token itself is never returned.')
    kubeconfig = MaskedReadField(help_text='"set" or "not set".')
    registry_password = MaskedReadField(help_text='"set" or "not set".')

    class Meta:
        model = Cluster
        fields = ["slug", "name", "api_url", "ca_cert", "registry", "registry_username", "token", "kubeconfig",
                  "registry_password", "created_at"]


class StrictNumberField(serializers.FloatField):
    default_error_messages = {"invalid": "Must be a number."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class RegistrySerializer(serializers.ModelSerializer):
    effective = serializers.SerializerMethodField(help_text="The limits in force: this registry's, else the defaults.")
    watched_tags = serializers.SerializerMethodField(help_text="Tags Hoist watches on this registry.")
    requests_per_min = serializers.SerializerMethodField(help_text="Requests Hoist sent in the last complete minute.")

    class Meta:
        model = RegistryHost
        fields = ["host", "watch_interval_s", "rate_per_s", "concurrency", "protect", "effective", "watched_tags",
                  "requests_per_min", "throttled_until", "last_error", "last_error_at", "created_at"]

    @extend_schema_field({"type": "object", "properties": {
        "watch_interval_s": {"type": "integer"}, "rate_per_s": {"type": "number"},
        "concurrency": {"type": "integer", "description": "0: no limit"}, "protect": {"type": "boolean"}}})
    def get_effective(self, registry: RegistryHost) -> dict:
        return registry.effective()

    def get_watched_tags(self, registry: RegistryHost) -> int:
        return getattr(registry, "watched_tags", 0)

    def get_requests_per_min(self, registry: RegistryHost) -> int:
        return registry.requests_last_minute()


class RegistryUpdateSerializer(StrictSerializer):
    watch_interval_s = StrictIntegerField(required=False, allow_null=True,
                                          help_text="Seconds between checks of each watched tag (5 to 86400); null: the default.")
    rate_per_s = StrictNumberField(required=False, allow_null=True, help_text="Requests per second (0.1 to 10000); null: the default.")
    concurrency = StrictIntegerField(required=False, allow_null=True, help_text="Calls in flight at once (1 to 64); null: the default.")
    protect = StrictBooleanField(required=False, help_text="Push keep tags here (needs push credentials).")


class ClusterWriteSerializer(StrictSerializer):
    slug = StrictCharField(max_length=63)
    name = StrictCharField(max_length=100)
    api_url = StrictCharField(max_length=500)
    ca_cert = StrictCharField(required=False, allow_blank=True, max_length=65536)
    registry = StrictCharField(required=False, allow_blank=True, max_length=300)
    registry_username = StrictCharField(required=False, allow_blank=True, max_length=200)
    token = MaskedField(max_length=65536)
    kubeconfig = MaskedField(max_length=131072)
    registry_password = MaskedField(max_length=4096)
    created_at = serializers.DateTimeField(read_only=True)

    SECRETS = ("token", "kubeconfig", "registry_password")

    def validate_kubeconfig(self, value):
        if value and value not in MASKS:
            import yaml

            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                raise serializers.ValidationError("Not valid YAML.") from None
            if not isinstance(parsed, dict) or not parsed.get("clusters"):
                raise serializers.ValidationError("A kubeconfig needs at least one entry under 'clusters'.")
        return value


class ClusterUpdateSerializer(ClusterWriteSerializer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False


# --- environments -----------------------------------------------------------------------------


class FrozenSerializer(serializers.Serializer):
    since = serializers.DateTimeField(help_text="When this freeze began.")
    until = serializers.DateTimeField(help_text="When it thaws (overlapping and touching windows merged).")
    names = serializers.ListField(child=serializers.CharField(), help_text="The freeze windows that make it.")


class EnvironmentSerializer(serializers.ModelSerializer):
    cluster = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    frozen = serializers.SerializerMethodField(help_text="While a freeze window is on: since when, until when, which "
                                               "windows (see freeze-windows/); null when not frozen.")

    class Meta:
        model = Environment
        fields = ["slug", "name", "cluster", "namespace", "protected", "position", "required_approvals",
                  "approve_automatic", "frozen", "created_at"]

    @extend_schema_field(FrozenSerializer(allow_null=True))
    def get_frozen(self, environment: Environment) -> dict | None:
        found = self.context.get("freezes")  # a list reads the windows once for the page
        frozen = found.get(environment.pk) if found is not None else freeze.current(environment)
        return FrozenSerializer(frozen).data if frozen is not None else None


class EnvironmentCreateSerializer(StrictSerializer):
    slug = StrictCharField(max_length=63)
    name = StrictCharField(max_length=100)
    cluster = StrictCharField(max_length=63, help_text="Slug of a cluster you may see (GET /api/v1/clusters/).")
    namespace = StrictCharField(max_length=63)
    protected = StrictBooleanField(required=False, default=False)
    position = StrictIntegerField(required=False, min_value=0, max_value=2**31 - 1)
    created_at = serializers.DateTimeField(read_only=True)


class EnvironmentUpdateSerializer(StrictSerializer):
    slug = StrictCharField(read_only=True)
    cluster = StrictCharField(read_only=True)
    namespace = StrictCharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    name = StrictCharField(required=False, max_length=100)
    protected = StrictBooleanField(required=False)
    position = StrictIntegerField(required=False, min_value=0, max_value=2**31 - 1)
    required_approvals = StrictIntegerField(required=False, min_value=0, max_value=10,
                                            help_text="Maintainers other than the requester who must approve a "
                                            "person's change of what runs here; 0: none.")
    approve_automatic = StrictBooleanField(required=False, help_text="Automatic track-latest changes need the "
                                           "same approvals.")
    frozen = serializers.JSONField(read_only=True)


# --- resources: reading ---------------------------------------------------------------------


class ImageSourceSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=[SourceType.IMAGE.value])
    image = serializers.CharField(help_text="Image reference, by tag or digest.")


class PromoteSourceSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=[SourceType.PROMOTE.value])
    environment = serializers.CharField(help_text="Slug of the environment promoted from.")
    resource = serializers.CharField(help_text="Name of the resource promoted from.")
    binding = serializers.ChoiceField(choices=Binding.choices)
    digest = serializers.CharField(allow_null=True, help_text="The pinned digest (binding pin_digest), else null.")


SOURCE_SCHEMA = PolymorphicProxySerializer(
    component_name="Source",
    serializers={"image": ImageSourceSerializer, "promote": PromoteSourceSerializer},
    resource_type_field_name="type",
)


class PortSerializer(serializers.Serializer):
    name = serializers.CharField()
    port = serializers.IntegerField()
    protocol = serializers.ChoiceField(choices=["TCP", "UDP", "SCTP"])


class EnvVarSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.CharField(allow_null=True, help_text="null for secret variables: their values are never returned.")
    secret = serializers.BooleanField()
    set = serializers.BooleanField(help_text="Whether the variable has a non-empty value.")


class ConfigSerializer(serializers.Serializer):
    runtime = serializers.CharField()
    ports = PortSerializer(many=True)
    replicas = serializers.IntegerField()
    ingress_host = serializers.CharField()
    database_url = serializers.ChoiceField(choices=list(MASKS), help_text='"set" or "not set"; the URL is never returned.')
    env = EnvVarSerializer(many=True)
    schedule = serializers.CharField()
    follow = serializers.ChoiceField(choices=Follow.choices, help_text="Track latest: follow what the upstream runs healthy, or what it publishes.")
    soak_seconds = serializers.IntegerField(help_text="Track latest: how long an upstream digest must have run healthy first.")
    rollback_on_failure = serializers.BooleanField(help_text="A failed rollout re-applies the last healthy digest.")
    progress_deadline_seconds = serializers.IntegerField(help_text="A rollout not progressing this long has failed.")


class RolloutSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["pending", "rolling_out", "healthy", "failed", "waiting"])
    ready = serializers.IntegerField(help_text="Replicas of the new digest updated and available.")
    total = serializers.IntegerField()
    summary = serializers.CharField(help_text='e.g. "rolling out 2/3", "healthy", "failed: …".')


class TagWatchSerializer(serializers.Serializer):
    tag = serializers.CharField(help_text="registry/repository:tag checked with one HEAD per interval.")
    interval_s = serializers.IntegerField(help_text="Seconds between two checks (the registry's setting).")
    checked_at = serializers.DateTimeField(allow_null=True, help_text="When the tag was last checked.")
    changed_at = serializers.DateTimeField(allow_null=True, help_text="When a check last found it moved.")
    next_check_at = serializers.DateTimeField(allow_null=True)
    digest = serializers.CharField(allow_null=True, help_text="What the tag pointed at when last checked.")
    error = serializers.CharField(allow_null=True, help_text="Why the last check failed, if it did.")


class ProtectionSerializer(serializers.Serializer):
    digest = serializers.CharField()
    roles = serializers.ListField(child=serializers.ChoiceField(choices=[keeps.RUNNING, keeps.PINNED, keeps.ROLLBACK]),
                                  help_text="Why it is kept: the resource runs it, is pinned to it, or may roll back to it.")
    repository = serializers.CharField(help_text="Where it is pulled from (\"\" for a pin not copied there yet).")
    tag = serializers.CharField(help_text="The keep tag that protects it there: hoist-keep-<64 hex>.")
    state = serializers.ChoiceField(choices=Keep.State.choices, help_text="kept: protected from registry clean-up.")
    detail = serializers.CharField(help_text="Why it is not kept, when it is not.")
    kept_at = serializers.DateTimeField(allow_null=True)


class DisplaySerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=display.STATES, help_text=(
        "What the status reads as, decided as the pages decide it: retrying (the last reconcile failed and is "
        "tried again), failed, rolling_out, frozen, awaiting_approval, waiting, healthy or pending."))
    label = serializers.CharField(help_text='The words the pages show, e.g. "Healthy", "rolling out 2/3", "Retrying in 12 s".')
    tone = serializers.ChoiceField(choices=display.TONES, help_text="How it is coloured: ok, info, warn, error or muted.")
    detail = serializers.CharField(help_text="Why, in full (a registry or cluster error, what it waits for); \"\" when the label says it all.")


class StatusSerializer(serializers.Serializer):
    digest = serializers.CharField(allow_null=True, help_text="The digest Hoist applied (desired; it may still be rolling out).")
    image = serializers.CharField(allow_null=True, help_text="The image reference written to the cluster.")
    running_digest = serializers.CharField(allow_null=True, help_text="The last digest the cluster ran healthy.")
    healthy_at = serializers.DateTimeField(allow_null=True, help_text="When that digest became healthy.")
    failed_digest = serializers.CharField(allow_null=True, help_text="A digest whose rollout failed: not applied again by itself.")
    rollout = RolloutSerializer()
    display = DisplaySerializer(help_text="The one status the pipeline, the graph and the resource page show.")
    phase = serializers.ChoiceField(choices=Phase.choices)
    message = serializers.CharField()
    reconciled_at = serializers.DateTimeField(allow_null=True)
    protection = ProtectionSerializer(many=True, help_text="Every digest this resource runs, is pinned to or may "
                                      "roll back to, and whether a keep tag protects it from registry clean-up.")
    watch = TagWatchSerializer(allow_null=True, help_text="Image sources given by tag: how Hoist watches the tag "
                               "for pushes (registries that send no webhooks); null otherwise.")


class ResourceSerializer(serializers.Serializer):
    # A resource as the API reads it (comments, not a docstring: that would enter the OpenAPI schema).
    # The fields declare the contract and the schema; `to_representation` writes the same keys in
    # the same order by hand, because DRF's field by field machinery cost more than everything else
    # of a list page (tests/api/test_list_representation.py holds the two to each other). A list
    # passes in its context what its rows need beyond their own columns, read once for the page
    # (`environments.api.reads.page_context`): `env` (never a secret's value), `watches`,
    # `protection`, `now`. A single resource reads them itself.

    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Kind.choices)
    environment = serializers.CharField(source="environment.slug")
    source = serializers.SerializerMethodField()
    config = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    _shared = None

    def shared(self) -> dict:
        """The context and a datetime writer (writing as the DateTimeFields above), looked up once for
        all the rows of a list."""
        if self._shared is None:
            self._shared = {**self.context, "when": datetime_writer(), "written_watches": {}}
        return self._shared

    def to_representation(self, resource: Resource) -> dict:
        when = self.shared()["when"]
        return {
            "name": resource.name,
            "kind": resource.kind,
            "environment": resource.environment.slug,
            "source": self.get_source(resource),
            "config": self.get_config(resource),
            "status": self.get_status(resource),
            "created_at": when(resource.created_at),
            "updated_at": when(resource.updated_at),
        }

    @extend_schema_field(SOURCE_SCHEMA)
    def get_source(self, resource: Resource) -> dict:
        if resource.source_type == SourceType.IMAGE:
            return {"type": SourceType.IMAGE.value, "image": resource.image}
        upstream = resource.promote_from
        return {
            "type": SourceType.PROMOTE.value,
            "environment": upstream.environment.slug,
            "resource": upstream.name,
            "binding": resource.binding,
            "digest": resource.pinned_digest or None,
        }

    @extend_schema_field(ConfigSerializer)
    def get_config(self, resource: Resource) -> dict:
        listed = self.shared().get("env")  # a list reads them once for the page, secrets' values left in the database
        if listed is not None:
            env = listed.get(resource.pk, [])
        else:
            env = [{"name": var.name, "value": None if var.secret else var.value, "secret": var.secret, "set": bool(var.value)}
                   for var in resource.env_vars.all()]
        # A list reads whether the URL is set, never the URL (reads.resource_list): all mask() needs.
        database_url = resource.database_url_set if "database_url_set" in resource.__dict__ else resource.database_url
        return {
            "runtime": resource.runtime,
            "ports": resource.ports or [],
            "replicas": resource.replicas,
            "ingress_host": resource.ingress_host,
            "database_url": mask(database_url),
            "env": env,
            "schedule": resource.schedule,
            "follow": resource.follow,
            "soak_seconds": resource.soak_seconds,
            "rollback_on_failure": resource.rollback_on_failure,
            "progress_deadline_seconds": resource.progress_deadline_seconds,
        }

    @extend_schema_field(StatusSerializer)
    def get_status(self, resource: Resource) -> dict:
        shared = self.shared()
        when = shared["when"]
        shown = display.display_state(resource, now=shared.get("now"), keyed=False)  # one decision for both fields
        return {
            "digest": resource.current_digest or None,
            "image": resource.current_image or None,
            "running_digest": resource.healthy_digest or None,
            "healthy_at": when(resource.healthy_at) if resource.healthy_at else None,
            "failed_digest": resource.failed_digest or None,
            "rollout": display.rollout_summary(resource, shown),
            "display": shown.as_dict(),
            "phase": resource.phase,
            "message": resource.message,
            "reconciled_at": when(resource.reconciled_at) if resource.reconciled_at else None,
            "watch": self._watch(resource, shared),
            "protection": self._protection(resource, shared),
        }

    @staticmethod
    def _protection(resource: Resource, shared: dict) -> list[dict]:
        found = shared.get("protection")  # a list reads it once for the page
        listed = found.get(resource.pk, []) if found is not None else keeps.protection_of(resource)
        when = shared["when"]
        return [{key: value for key, value in {**entry, "kept_at": when(entry["kept_at"]) if entry["kept_at"] else None}.items()
                 if key != "state_label"} for entry in listed]

    @staticmethod
    def _watch(resource: Resource, shared: dict) -> dict | None:
        watches = shared.get("watches")  # a list reads them once for the page
        if watches is None:
            return ResourceSerializer._write_watch(selectors.tag_watch_of(resource), shared["when"])
        watch = watches.get(resource.pk)
        if watch is None:
            return None
        # Rows watching the same tag share one watch (selectors.tag_watches_for): written once.
        written = shared["written_watches"]
        if id(watch) not in written:
            written[id(watch)] = ResourceSerializer._write_watch(watch, shared["when"])
        return written[id(watch)]

    @staticmethod
    def _write_watch(watch: dict | None, when) -> dict | None:
        if watch is None:
            return None
        return {**watch, **{k: when(watch[k]) if watch[k] else None for k in ("checked_at", "changed_at", "next_check_at")}}


# --- resources: writing ---------------------------------------------------------------------


@extend_schema_field({
    "type": "array",
    "items": {
        "oneOf": [
            {"type": "integer", "description": "A TCP port number."},
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "port": {"type": "integer"},
                    "protocol": {"type": "string", "enum": ["TCP", "UDP", "SCTP"]},
                },
                "required": ["port"],
                "additionalProperties": False,
            },
        ]
    },
})
class PortsField(serializers.Field):
    """A list of ports: numbers or {name, port, protocol}. The service checks each one."""

    default_error_messages = {"invalid": "Ports must be a list (at most 100) of port numbers or objects with port, name and protocol."}

    def to_internal_value(self, data):
        if not isinstance(data, list) or len(data) > 100:
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class EnvVarWriteSerializer(StrictSerializer):
    name = StrictCharField(max_length=255, trim_whitespace=False)
    value = StrictCharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False,
                            max_length=32768, help_text="For a secret: null keeps the stored value.")
    secret = StrictBooleanField(required=False, default=False)
    set = StrictBooleanField(read_only=True)


class ConfigWriteSerializer(StrictSerializer):
    runtime = StrictCharField(required=False, allow_blank=True, max_length=253)
    ports = PortsField(required=False)
    replicas = StrictIntegerField(required=False)
    ingress_host = StrictCharField(required=False, allow_blank=True, max_length=253)
    database_url = MaskedField(max_length=4096, trim_whitespace=False)
    env = EnvVarWriteSerializer(many=True, required=False, max_length=500)
    schedule = StrictCharField(required=False, allow_blank=True, max_length=100)
    follow = serializers.ChoiceField(choices=Follow.choices, required=False)
    soak_seconds = StrictIntegerField(required=False)
    rollback_on_failure = StrictBooleanField(required=False)
    progress_deadline_seconds = StrictIntegerField(required=False)


class SourceWriteSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=SourceType.choices, required=False,
                                   help_text="Required when creating; when changing, defaults to the current type.")
    image = StrictCharField(required=False, max_length=500, help_text="type image: the image reference.")
    environment = StrictCharField(required=False, max_length=63, help_text="type promote: slug of the environment to promote from.")
    resource = StrictCharField(required=False, max_length=63, help_text="type promote: name of the resource to promote from.")
    binding = serializers.ChoiceField(choices=Binding.choices, required=False,
                                      help_text="type promote: defaults to pin_digest when a digest is given, else track_latest (create) or the current binding (change).")
    digest = StrictCharField(required=False, allow_null=True, max_length=200, help_text="type promote, binding pin_digest: the digest to run.")


class ResourceCreateSerializer(StrictSerializer):
    name = StrictCharField(max_length=63)
    kind = serializers.ChoiceField(choices=Kind.choices, required=False, default=Kind.DEPLOYMENT)
    source = SourceWriteSerializer()
    config = ConfigWriteSerializer(required=False)
    environment = StrictCharField(read_only=True)
    status = StatusSerializer(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class ResourceUpdateSerializer(StrictSerializer):
    """Only what is given changes. `name` and `kind` may be sent back but not changed."""

    freeze_override = StrictCharField(required=False, allow_blank=True, max_length=2000, write_only=True,
                                      help_text="During a freeze window: a maintainer's reason to change what runs now.")
    name = StrictCharField(required=False, max_length=63)
    kind = serializers.ChoiceField(choices=Kind.choices, required=False)
    source = SourceWriteSerializer(required=False)
    config = ConfigWriteSerializer(required=False)
    environment = StrictCharField(read_only=True)
    status = StatusSerializer(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


# --- artifacts ------------------------------------------------------------------------------


class ArtifactSerializer(serializers.ModelSerializer):
    reference = serializers.CharField(help_text="repository@digest")
    published_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Artifact
        fields = ["sequence", "digest", "repository", "tag", "reference", "origin", "published_at",
                  "first_published_at", "published_by"]


class PublishSerializer(StrictSerializer):
    digest = StrictCharField(required=False, max_length=200,
                             help_text="sha256:<64 lower-case hex>: what was pushed. Omit it to resolve `tag` through the registry.")
    tag = StrictCharField(required=False, allow_blank=True, max_length=200,
                          help_text="The tag it was pushed under; without `digest`, Hoist resolves it to a digest once.")
    repository = StrictCharField(required=False, allow_blank=True, max_length=500,
                                 help_text="Registry host and path without tag; defaults to the resource's image repository.")
