"""The base every tenant API view stands on: the tenant comes from the URL and is
resolved once, against the caller's memberships, before any handler runs."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_docs import error_responses
from config.api_errors import Forbidden
from tenants.models import PEOPLE_ROLES, Membership, Role, Tenant
from tenants.selectors import (
    agent_token_get,
    agent_token_list,
    audit_list,
    membership_get_by_id,
    membership_list,
    tenant_get_for_member,
)
from tenants.services import agent_token_issue, agent_token_revoke, member_add, member_change, member_remove


class StrictInputSerializer(serializers.Serializer):
    """Rejects fields it does not declare, so `{"status": "approved"}` or `{"tenant": ...}`
    in a request body is a 400 naming the field, never silently ignored or applied."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


MEMBER_ROLES = frozenset(Role.values)
ADMIN_ROLES = frozenset({Role.ADMIN})


class TenantAPIView(APIView):
    """Order of refusals: 401 (no credentials), 404 (not a member of this tenant, the same
    as a tenant that does not exist), 403 (a member whose role may not use this method)."""

    tenant: Tenant
    membership: Membership
    # HTTP method -> roles allowed; a method missing here is refused for every role.
    roles: dict[str, frozenset[str]] = {}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        slug = kwargs["tenant_slug"]
        # Read with the API token when there is one (tenants.authentication).
        known = getattr(request.auth, "membership_here", None)
        if known is not None and known.tenant.slug == slug and known.user_id == request.user.pk:
            self.tenant, self.membership = known.tenant, known
        else:
            self.tenant, self.membership = tenant_get_for_member(slug=slug, user=request.user)
        method = request.method.lower()
        handled = method in self.http_method_names and hasattr(self, method) and method != "options"
        # A method with no handler falls through to DRF's 405.
        # Django serves HEAD with the GET handler, so HEAD is allowed to whoever may GET.
        roles = self.roles.get("GET" if request.method == "HEAD" else request.method, frozenset())
        if handled and self.membership.role not in roles:
            raise Forbidden("Your role may not do this.")


# --- Members (tenant admins only) -------------------------------------------------------


class MembershipOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()
    finance_approver = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class MemberListCreateApi(TenantAPIView):
    roles = {"GET": ADMIN_ROLES, "POST": ADMIN_ROLES}

    class MemberAddInputSerializer(StrictInputSerializer):
        username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
        role = serializers.ChoiceField(choices=Role.choices)
        finance_approver = serializers.BooleanField(required=False, default=False)

    @extend_schema(operation_id="members_list", responses={200: inline_serializer("MemberList", {"results": MembershipOutputSerializer(many=True)}), **error_responses(401, 403, 404, 429)})
    def get(self, request: Request, tenant_slug: str) -> Response:
        members = membership_list(tenant=self.tenant)
        return Response({"results": MembershipOutputSerializer(members, many=True).data})

    @extend_schema(request=MemberAddInputSerializer, responses={201: MembershipOutputSerializer, **error_responses(400, 401, 403, 404, 409, 429)})
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = self.MemberAddInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = member_add(tenant=self.tenant, actor=request.user, via="api", **serializer.validated_data)
        return Response(MembershipOutputSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(TenantAPIView):
    roles = {"GET": ADMIN_ROLES, "PATCH": ADMIN_ROLES, "DELETE": ADMIN_ROLES}

    class MemberChangeInputSerializer(StrictInputSerializer):
        role = serializers.ChoiceField(choices=Role.choices, required=False)
        finance_approver = serializers.BooleanField(required=False)

    @extend_schema(operation_id="members_get", responses={200: MembershipOutputSerializer, **error_responses(401, 403, 404, 429)})
    def get(self, request: Request, tenant_slug: str, member_id: int) -> Response:
        return Response(MembershipOutputSerializer(membership_get_by_id(tenant=self.tenant, member_id=member_id)).data)

    @extend_schema(request=MemberChangeInputSerializer, responses={200: MembershipOutputSerializer, **error_responses(400, 401, 403, 404, 409, 429)})
    def patch(self, request: Request, tenant_slug: str, member_id: int) -> Response:
        membership = membership_get_by_id(tenant=self.tenant, member_id=member_id)
        serializer = self.MemberChangeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        membership = member_change(
            membership=membership,
            role=data.get("role", membership.role),
            finance_approver=data.get("finance_approver", membership.finance_approver),
            actor=request.user,
            via="api",
        )
        return Response(MembershipOutputSerializer(membership).data)

    @extend_schema(responses={204: None, **error_responses(401, 403, 404, 409, 429)})
    def delete(self, request: Request, tenant_slug: str, member_id: int) -> Response:
        membership = membership_get_by_id(tenant=self.tenant, member_id=member_id)
        member_remove(membership=membership, actor=request.user, via="api")
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditRecordOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_username")
    action = serializers.CharField()
    interface = serializers.CharField()
    target_type = serializers.CharField()
    target_id = serializers.CharField()
    data = serializers.JSONField()


class AuditListApi(TenantAPIView):
    roles = {"GET": ADMIN_ROLES}

    @extend_schema(responses={200: inline_serializer("AuditList", {"results": AuditRecordOutputSerializer(many=True)}), **error_responses(401, 403, 404, 429)})
    def get(self, request: Request, tenant_slug: str) -> Response:
        records = audit_list(tenant=self.tenant)[:200]
        return Response({"results": AuditRecordOutputSerializer(records, many=True).data})


# --- Agent tokens (tenant admins only) ----------------------------------------------------


class TokenOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)


class AgentTokenListCreateApi(TenantAPIView):
    roles = {"GET": ADMIN_ROLES, "POST": ADMIN_ROLES}

    class TokenIssueInputSerializer(StrictInputSerializer):
        name = serializers.CharField(max_length=100, default="default")

    @extend_schema(operation_id="member_tokens_list", responses={200: inline_serializer("TokenList", {"results": TokenOutputSerializer(many=True)}), **error_responses(401, 403, 404, 409, 429)})
    def get(self, request: Request, tenant_slug: str, member_id: int) -> Response:
        membership = membership_get_by_id(tenant=self.tenant, member_id=member_id)
        return Response({"results": TokenOutputSerializer(agent_token_list(membership=membership), many=True).data})

    @extend_schema(
        request=TokenIssueInputSerializer,
        responses={201: inline_serializer("IssuedToken", {"id": serializers.IntegerField(), "name": serializers.CharField(), "prefix": serializers.CharField(), "key": serializers.CharField()}), **error_responses(400, 401, 403, 404, 409, 429)},
    )
    def post(self, request: Request, tenant_slug: str, member_id: int) -> Response:
        membership = membership_get_by_id(tenant=self.tenant, member_id=member_id)
        serializer = self.TokenIssueInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, key = agent_token_issue(membership=membership, name=serializer.validated_data["name"], actor=request.user, via="api")
        # The clear key is shown this once; only its hash is stored.
        return Response({"id": token.pk, "name": token.name, "prefix": token.prefix, "key": key}, status=status.HTTP_201_CREATED)


class AgentTokenRevokeApi(TenantAPIView):
    roles = {"POST": ADMIN_ROLES}

    @extend_schema(request=None, responses={200: TokenOutputSerializer, **error_responses(401, 403, 404, 409, 429)})
    def post(self, request: Request, tenant_slug: str, member_id: int, token_id: int) -> Response:
        membership = membership_get_by_id(tenant=self.tenant, member_id=member_id)
        token = agent_token_get(membership=membership, token_id=token_id)
        agent_token_revoke(membership=membership, token=token, actor=request.user, via="api")
        return Response(TokenOutputSerializer(token).data)
