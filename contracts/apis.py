from __future__ import annotations

from django.conf import settings
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from contracts.selectors import contract_get, contract_list
from contracts.services import contract_submit
from reviews.models import ReviewStatus
from tenants.apis import MEMBER_ROLES, StrictInputSerializer, TenantAPIView
from tenants.models import SUBMITTING_ROLES


class ContractOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    thread_id = serializers.CharField()
    status = serializers.CharField()
    run_state = serializers.CharField()
    risk_score = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class ContractDetailOutputSerializer(ContractOutputSerializer):
    text = serializers.CharField()
    findings = serializers.JSONField()
    payments = serializers.JSONField()
    decision_history = serializers.JSONField()
    amendments = serializers.JSONField()
    amended_text = serializers.CharField()
    last_error = serializers.CharField()
    pending_tasks = serializers.SerializerMethodField()

    def get_pending_tasks(self, contract) -> list[dict]:
        return [
            {"id": str(task.id), "kind": task.kind, "interrupt_id": task.interrupt_id}
            for task in contract.review_tasks.filter(status=ReviewStatus.PENDING).order_by("created_at")
        ]


class ContractListCreateApi(TenantAPIView):
    roles = {"GET": MEMBER_ROLES, "POST": SUBMITTING_ROLES}

    class InputSerializer(StrictInputSerializer):
        title = serializers.CharField(max_length=200)
        text = serializers.CharField(max_length=settings.CONTRACT_TEXT_MAX_CHARS, trim_whitespace=False)

    def get(self, request: Request, tenant_slug: str) -> Response:
        contracts = contract_list(tenant=self.tenant)[:100]
        return Response({"results": ContractOutputSerializer(contracts, many=True).data})

    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        contract = contract_submit(tenant=self.tenant, submitted_by=request.user, **serializer.validated_data)
        contract.refresh_from_db()  # the immediate task backend may already have run it
        return Response(ContractOutputSerializer(contract).data, status=status.HTTP_201_CREATED)


class ContractDetailApi(TenantAPIView):
    roles = {"GET": MEMBER_ROLES}

    def get(self, request: Request, tenant_slug: str, contract_id: str) -> Response:
        contract = contract_get(tenant=self.tenant, contract_id=contract_id)
        return Response(ContractDetailOutputSerializer(contract).data)
