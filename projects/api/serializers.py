from __future__ import annotations

from rest_framework import serializers

from projects.models import ApiToken, Membership, Project, Role

from core.api.fields import StrictCharField, StrictSerializer


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in the project.")

    class Meta:
        model = Project
        fields = ["slug", "name", "description", "role", "created_at"]

    def get_role(self, project) -> str | None:
        return getattr(project, "my_role", None)


class ProjectCreateSerializer(StrictSerializer):
    slug = StrictCharField(max_length=63)
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True, max_length=10_000)


class ProjectUpdateSerializer(StrictSerializer):
    slug = StrictCharField(read_only=True)
    role = StrictCharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    name = StrictCharField(required=False, max_length=200)
    description = StrictCharField(required=False, allow_blank=True, max_length=10_000)


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "role", "created_at"]


class MemberCreateSerializer(StrictSerializer):
    username = StrictCharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberUpdateSerializer(StrictSerializer):
    username = StrictCharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    role = serializers.ChoiceField(choices=Role.choices)


class UserSerializer(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.CharField()
    is_staff = serializers.BooleanField()
    date_joined = serializers.DateTimeField()


class UserCreateSerializer(StrictSerializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=128, write_only=True, style={"input_type": "password"})
    email = StrictCharField(required=False, allow_blank=True, max_length=254)


class TokenSerializer(serializers.ModelSerializer):
    state = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "state", "created_at", "expires_at", "last_used_at", "revoked_at"]

    def get_state(self, token) -> str:
        return token.state()


class TokenCreatedSerializer(TokenSerializer):
    key = serializers.SerializerMethodField(help_text="The token. Shown this once; Hoist keeps only its hash.")

    class Meta(TokenSerializer.Meta):
        fields = TokenSerializer.Meta.fields + ["key"]

    def get_key(self, token) -> str:
        return self.context["key"]


class TokenCreateSerializer(StrictSerializer):
    name = StrictCharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Empty or null: never expires.")
