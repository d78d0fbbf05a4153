"""Projects, members, users (staff) and API tokens."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from projects import audit, permissions, services
from projects.authentication import PasswordAuthentication, TokenAuthentication
from projects.models import ApiToken, Membership, Project, Role

from . import serializers as s
from core.api.base import HoistViewSet

from .base import PROJECT_PARAM, ProjectScopedViewSet, require_staff


def _my_projects(user):
    projects = Project.objects.annotate(
        my_role=Subquery(Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1])
    )
    if not user.is_superuser:
        projects = projects.filter(memberships__user=user)
    return projects.order_by("name", "pk")


@extend_schema(tags=["projects"])
class ProjectViewSet(HoistViewSet):
    """Your projects. Staff create projects (and become their maintainer); maintainers rename them."""

    lookup_url_kwarg = "project"
    serializer_class = s.ProjectSerializer
    queryset = Project.objects.none()

    def _get(self) -> Project:
        project = get_object_or_404(_my_projects(self.request.user), slug=self.kwargs["project"])
        if self.request.user.is_superuser:
            project.my_role = Role.MAINTAINER
        return project

    def _serialize(self, project):
        if self.request.user.is_superuser:
            project.my_role = Role.MAINTAINER
        return s.ProjectSerializer(project).data

    def list(self, request):
        page = self.paginate_queryset(_my_projects(request.user))
        return self.get_paginated_response([self._serialize(p) for p in page])

    @extend_schema(request=s.ProjectCreateSerializer, responses={201: s.ProjectSerializer})
    def create(self, request):
        require_staff(request, "create projects", action="project.create")
        body = s.ProjectCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        project = services.project_create(actor=request.user, **body.validated_data)
        project.my_role = Role.MAINTAINER
        return Response(self._serialize(project), status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[PROJECT_PARAM])
    def retrieve(self, request, project):
        return Response(self._serialize(self._get()))

    @extend_schema(parameters=[PROJECT_PARAM], request=s.ProjectUpdateSerializer, responses=s.ProjectSerializer)
    def partial_update(self, request, project):
        instance = self._get()
        if instance.my_role != Role.MAINTAINER:
            with audit.guarding("project.update", actor=request.user, target=instance):
                raise permissions.denied(Role.MAINTAINER, instance.slug, "change the project")
        body = s.ProjectUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        body.refuse_changes({"slug": instance.slug})
        services.project_update(project=instance, actor=request.user, **body.validated_data)
        return Response(self._serialize(instance))


@extend_schema(tags=["projects"], parameters=[PROJECT_PARAM])
@extend_schema_view(
    partial_update=extend_schema(request=s.MemberUpdateSerializer, responses=s.MemberSerializer),
    create=extend_schema(request=s.MemberCreateSerializer, responses={201: s.MemberSerializer}),
)
class MemberViewSet(ProjectScopedViewSet):
    """A project's members and their roles. Everyone in the project reads; maintainers change."""

    serializer_class = s.MemberSerializer
    lookup_url_kwarg = "username"
    queryset = Membership.objects.none()

    def get_queryset(self):
        return self.project.memberships.select_related("user").order_by("user__username")

    def _get(self) -> Membership:
        return get_object_or_404(self.get_queryset(), user__username=self.kwargs["username"])

    def list(self, request, project):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.MemberSerializer(page, many=True).data)

    def retrieve(self, request, project, username):
        return Response(s.MemberSerializer(self._get()).data)

    def create(self, request, project):
        self.require(Role.MAINTAINER, "manage members", action="membership.set")
        body = s.MemberCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        membership = services.membership_set(project=self.project, actor=request.user, **body.validated_data)
        return Response(s.MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, project, username):
        membership = self._get()
        self.require(Role.MAINTAINER, "manage members", action="membership.set", target=membership)
        body = s.MemberUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        body.refuse_changes({"username": membership.user.username})
        membership = services.membership_set(
            project=self.project, username=membership.user.username, role=body.validated_data["role"], actor=request.user
        )
        return Response(s.MemberSerializer(membership).data)

    def destroy(self, request, project, username):
        membership = self._get()
        self.require(Role.MAINTAINER, "manage members", action="membership.remove", target=membership)
        services.membership_remove(membership=membership, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["users"])
@extend_schema_view(create=extend_schema(request=s.UserCreateSerializer, responses={201: s.UserSerializer}))
class UserViewSet(HoistViewSet):
    """Accounts (staff only), so automation can set up members without the admin."""

    serializer_class = s.UserSerializer
    queryset = get_user_model().objects.none()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            require_staff(request, "manage users", action="user.create")
        elif not request.user.is_staff:
            raise PermissionDenied("Only staff operators may manage users.")

    def list(self, request):
        users = get_user_model().objects.order_by("username")
        page = self.paginate_queryset(users)
        return self.get_paginated_response(s.UserSerializer(page, many=True).data)

    def create(self, request):
        body = s.UserCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user = services.user_create(actor=request.user, **body.validated_data)
        return Response(s.UserSerializer(user).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["tokens"])
@extend_schema_view(
    create=extend_schema(
        request=s.TokenCreateSerializer, responses={201: s.TokenCreatedSerializer},
        description="Create a token for yourself. Authenticate with your password (HTTP Basic) or a browser "
        "session, not with another token. The key is in this response only.",
    ),
    destroy=extend_schema(description="Revoke the token (it stays listed as revoked)."),
)
class TokenViewSet(HoistViewSet):
    """Your API tokens."""

    authentication_classes = [TokenAuthentication, PasswordAuthentication, SessionAuthentication]
    serializer_class = s.TokenSerializer
    queryset = ApiToken.objects.none()

    def get_queryset(self):
        return ApiToken.objects.filter(user=self.request.user)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.TokenSerializer(page, many=True).data)

    def retrieve(self, request, pk):
        return Response(s.TokenSerializer(self._get(pk)).data)

    def _get(self, pk) -> ApiToken:
        if not str(pk).isdigit() or len(str(pk)) > 18:
            raise Http404("No such token.")
        return get_object_or_404(self.get_queryset(), pk=int(pk))

    def create(self, request):
        if isinstance(request.auth, ApiToken):
            # A leaked token must not be able to mint longer-lived ones.
            with audit.guarding("token.create", actor=request.user):
                raise PermissionDenied("Create tokens with your password (HTTP Basic) or in the browser, not with a token.")
        body = s.TokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, key = services.token_create(user=request.user, actor=request.user, **body.validated_data)
        return Response(s.TokenCreatedSerializer(token, context={"key": key}).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk):
        token = self._get(pk)
        services.token_revoke(token=token, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
