"""REST side of the live queue: tickets for websockets, and catch-up on missed events."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_docs import error_responses
from config.api_errors import Forbidden
from reviews.stream import (
    EVENTS_PAGE_DEFAULT,
    EVENTS_PAGE_MAX,
    STREAM_ROLES,
    queue_event_list_after,
    websocket_ticket_create,
)
from tenants.apis import StrictInputSerializer, TenantAPIView
from tenants.models import ApiToken
from tenants.selectors import tenant_get_for_member

QueueEventSerializer = inline_serializer(
    "QueueEvent",
    {
        "seq": serializers.IntegerField(),
        "type": serializers.CharField(),
        "at": serializers.DateTimeField(),
        "task_id": serializers.UUIDField(required=False),
        "contract_id": serializers.UUIDField(),
        "kind": serializers.CharField(required=False),
        "status": serializers.CharField(),
        "risk_score": serializers.FloatField(allow_null=True),
        "claimed_by": serializers.CharField(required=False, allow_null=True),
        "claim_expires_at": serializers.DateTimeField(required=False, allow_null=True),
    },
)


class QueueEventListApi(TenantAPIView):
    """Every queue event after a sequence number, oldest first: how a client that lost
    live messages (a gap in `seq`, or a heartbeat ahead of it) resynchronises. Events
    are kept for a bounded time; past it the answer is 410 `resync_required`: reload
    the queue and follow on from `latest_seq`."""

    roles = {"GET": STREAM_ROLES}

    class FilterSerializer(StrictInputSerializer):
        after = serializers.IntegerField(min_value=0, help_text="The last sequence number the client has applied.")
        limit = serializers.IntegerField(
            min_value=1, max_value=EVENTS_PAGE_MAX, required=False, default=EVENTS_PAGE_DEFAULT
        )

    @extend_schema(
        parameters=[FilterSerializer],
        responses={
            200: inline_serializer("QueueEventPage", {
                "results": serializers.ListField(child=QueueEventSerializer),
                "has_more": serializers.BooleanField(),
                "latest_seq": serializers.IntegerField(),
            }),
            410: inline_serializer("ResyncRequired", {"error": inline_serializer("ResyncRequiredDetail", {
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "latest_seq": serializers.IntegerField(),
            })}),
            **error_responses(400, 401, 403, 404, 429),
        },
    )
    def get(self, request: Request, tenant_slug: str) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        events, has_more, latest = queue_event_list_after(
            tenant_id=self.tenant.id, after=filters.validated_data["after"], limit=filters.validated_data["limit"]
        )
        return Response({"results": events, "has_more": has_more, "latest_seq": latest})


class WebsocketTicketApi(APIView):
    """A single-use ticket, valid for 30 seconds, to open the queue websocket of one
    tenant: `wss://<host>/ws/v1/tenants/<slug>/reviews/?ticket=<ticket>`. Clients with an
    API token use this instead of putting the token in a URL."""

    class InputSerializer(StrictInputSerializer):
        tenant = serializers.SlugField(max_length=50)

    @extend_schema(
        request=InputSerializer,
        responses={
            201: inline_serializer("WebsocketTicket", {
                "ticket": serializers.CharField(),
                "expires_at": serializers.DateTimeField(),
                "url": serializers.CharField(),
            }),
            **error_responses(400, 401, 403, 404, 429),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # The same order of refusals as every tenant API: 404 for a tenant the caller
        # does not belong to (as for one that does not exist), then 403 for the role.
        tenant, membership = tenant_get_for_member(slug=serializer.validated_data["tenant"], user=request.user)
        if membership.role not in STREAM_ROLES:
            raise Forbidden("Your role may not follow the review queue.")
        api_token = request.auth if isinstance(request.auth, ApiToken) else None
        ticket, key = websocket_ticket_create(tenant=tenant, user=request.user, api_token=api_token)
        url = f"/ws/v1/tenants/{tenant.slug}/reviews/?ticket={key}"
        return Response({"ticket": key, "expires_at": ticket.expires_at, "url": url}, status=status.HTTP_201_CREATED)
