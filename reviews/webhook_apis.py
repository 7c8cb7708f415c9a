"""The tenant's webhooks over REST (tenant admins): endpoints, their secrets and their
delivery log. Sending is the scheduler's (reviews.webhooks); nothing here makes a
request to a receiver."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from config.api_docs import error_responses
from config.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, keyset_page
from reviews.events import EVENT_TYPES
from reviews.models import DeliveryStatus
from reviews.selectors import webhook_delivery_get, webhook_delivery_list, webhook_endpoint_get, webhook_endpoint_list
from reviews.webhooks import (
    webhook_delivery_retry,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_update,
    webhook_secret_rotate,
)
from tenants.apis import ADMIN_ROLES, StrictInputSerializer, TenantAPIView

EVENT_TYPE_CHOICES = [(t, t) for t in EVENT_TYPES]


class EndpointOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    description = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    is_active = serializers.BooleanField()
    secret_prefix = serializers.SerializerMethodField(help_text="The start of the signing secret, to tell secrets apart.")
    last_seq = serializers.IntegerField(help_text="Events up to this seq have their deliveries.")
    events_missed = serializers.IntegerField(help_text="Events pruned from the log before they could be delivered.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_secret_prefix(self, endpoint) -> str:
        return endpoint.secret[:10]


class EndpointWithSecretSerializer(EndpointOutputSerializer):
    secret = serializers.CharField(help_text="whsec_<base64>: shown on creation and rotation only. Standard Webhooks signing.")


class DeliveryOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    webhook_id = serializers.CharField(source="message_id", help_text="The webhook-id header: the same on every attempt.")
    seq = serializers.IntegerField()
    event_type = serializers.CharField()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    attempt_log = serializers.ListField(child=serializers.DictField())
    created_at = serializers.DateTimeField()


class WebhookListCreateApi(TenantAPIView):
    roles = {"GET": ADMIN_ROLES, "POST": ADMIN_ROLES}

    class EndpointCreateSerializer(StrictInputSerializer):
        url = serializers.CharField(max_length=2000)
        event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPE_CHOICES), min_length=1,
                                            max_length=len(EVENT_TYPES))
        description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    @extend_schema(operation_id="webhooks_list",
                   responses={200: inline_serializer("WebhookList", {"results": EndpointOutputSerializer(many=True)}),
                              **error_responses(401, 403, 404, 429)})
    def get(self, request: Request, tenant_slug: str) -> Response:
        return Response({"results": EndpointOutputSerializer(webhook_endpoint_list(tenant=self.tenant), many=True).data})

    @extend_schema(request=EndpointCreateSerializer,
                   responses={201: EndpointWithSecretSerializer, **error_responses(400, 401, 403, 404, 429)})
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = self.EndpointCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_create(tenant=self.tenant, actor=request.user, via="api", **serializer.validated_data)
        return Response(EndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookDetailApi(TenantAPIView):
    roles = {"GET": ADMIN_ROLES, "PATCH": ADMIN_ROLES, "DELETE": ADMIN_ROLES}

    class EndpointChangeSerializer(StrictInputSerializer):
        url = serializers.CharField(max_length=2000, required=False)
        event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPE_CHOICES), min_length=1,
                                            max_length=len(EVENT_TYPES), required=False)
        description = serializers.CharField(max_length=200, required=False, allow_blank=True)
        is_active = serializers.BooleanField(required=False, help_text="false pauses sending; deliveries wait.")

    @extend_schema(operation_id="webhooks_get", responses={200: EndpointOutputSerializer, **error_responses(401, 403, 404, 429)})
    def get(self, request: Request, tenant_slug: str, webhook_id: str) -> Response:
        return Response(EndpointOutputSerializer(webhook_endpoint_get(tenant=self.tenant, endpoint_id=webhook_id)).data)

    @extend_schema(request=EndpointChangeSerializer,
                   responses={200: EndpointOutputSerializer, **error_responses(400, 401, 403, 404, 429)})
    def patch(self, request: Request, tenant_slug: str, webhook_id: str) -> Response:
        endpoint = webhook_endpoint_get(tenant=self.tenant, endpoint_id=webhook_id)
        serializer = self.EndpointChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_update(endpoint=endpoint, changes=dict(serializer.validated_data), actor=request.user,
                                           via="api")
        return Response(EndpointOutputSerializer(endpoint).data)

    @extend_schema(responses={204: None, **error_responses(401, 403, 404, 429)})
    def delete(self, request: Request, tenant_slug: str, webhook_id: str) -> Response:
        endpoint = webhook_endpoint_get(tenant=self.tenant, endpoint_id=webhook_id)
        webhook_endpoint_delete(endpoint=endpoint, actor=request.user, via="api")
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateSecretApi(TenantAPIView):
    roles = {"POST": ADMIN_ROLES}

    @extend_schema(request=None, responses={200: EndpointWithSecretSerializer, **error_responses(401, 403, 404, 429)})
    def post(self, request: Request, tenant_slug: str, webhook_id: str) -> Response:
        endpoint = webhook_endpoint_get(tenant=self.tenant, endpoint_id=webhook_id)
        endpoint = webhook_secret_rotate(endpoint=endpoint, actor=request.user, via="api")
        return Response(EndpointWithSecretSerializer(endpoint).data)


class WebhookDeliveryListApi(TenantAPIView):
    roles = {"GET": ADMIN_ROLES}

    class DeliveryFilterSerializer(StrictInputSerializer):
        status = serializers.ChoiceField(choices=DeliveryStatus.choices, required=False)
        cursor = serializers.CharField(required=False, max_length=2000)
        page_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)

    @extend_schema(
        parameters=[DeliveryFilterSerializer], operation_id="webhook_deliveries_list",
        responses={200: inline_serializer("WebhookDeliveryPage", {"results": DeliveryOutputSerializer(many=True),
                                                                  "next_cursor": serializers.CharField(allow_null=True)}),
                   **error_responses(400, 401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str, webhook_id: str) -> Response:
        endpoint = webhook_endpoint_get(tenant=self.tenant, endpoint_id=webhook_id)
        filters = self.DeliveryFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = filters.validated_data
        deliveries = webhook_delivery_list(endpoint=endpoint, status=params.get("status"))
        page = keyset_page(deliveries, ordering=["-created_at", "-seq"], cursor=params.get("cursor"), size=params["page_size"])
        return Response({"results": DeliveryOutputSerializer(page.rows, many=True).data, "next_cursor": page.next_cursor})


class WebhookDeliveryRetryApi(TenantAPIView):
    roles = {"POST": ADMIN_ROLES}

    @extend_schema(request=None, responses={200: DeliveryOutputSerializer, **error_responses(401, 403, 404, 409, 429)})
    def post(self, request: Request, tenant_slug: str, webhook_id: str, delivery_id: str) -> Response:
        endpoint = webhook_endpoint_get(tenant=self.tenant, endpoint_id=webhook_id)
        delivery = webhook_delivery_get(endpoint=endpoint, delivery_id=delivery_id)
        delivery = webhook_delivery_retry(delivery=delivery, actor=request.user, via="api")
        return Response(DeliveryOutputSerializer(delivery).data)
