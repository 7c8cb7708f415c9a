from __future__ import annotations

from django.conf import settings
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer

from config.api_docs import error_responses
from config.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, keyset_page
from contracts.models import RUN_STATES, ContractStatus
from contracts.retention import prunable_contracts
from contracts.models import Contract
from contracts.selectors import contract_get, contract_list
from contracts.services import contract_retry, contract_submit
from contracts.tasks import drives_queued_in_transaction
from reviews.models import ReviewStatus
from tenants.apis import ADMIN_ROLES, MEMBER_ROLES, StrictInputSerializer, TenantAPIView
from tenants.models import SUBMITTING_ROLES
from tenants.services import tenant_retention_set


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
    last_error = serializers.CharField()
    run_attempts = serializers.IntegerField(help_text="Failed runs in a row; reset when a run moves the thread.")
    retry_at = serializers.DateTimeField(allow_null=True, help_text="When the next automatic retry is due.")


class ContractDetailOutputSerializer(ContractOutputSerializer):
    text = serializers.CharField()
    findings = serializers.JSONField()
    payments = serializers.JSONField()
    analysis = serializers.JSONField()
    decision_history = serializers.JSONField()
    amendments = serializers.JSONField()
    amended_text = serializers.CharField()
    checkpoints_pruned_at = serializers.DateTimeField(
        allow_null=True, help_text="When retention deleted the thread's LangGraph checkpoints; everything here is kept.")
    pending_tasks = serializers.SerializerMethodField()

    def get_pending_tasks(self, contract) -> list[dict]:
        return [
            {"id": str(task.id), "kind": task.kind, "interrupt_id": task.interrupt_id}
            for task in contract.review_tasks.filter(status=ReviewStatus.PENDING).order_by("created_at")
        ]


class ContractListCreateApi(TenantAPIView):
    roles = {"GET": MEMBER_ROLES, "POST": SUBMITTING_ROLES}

    class ContractSubmitInputSerializer(StrictInputSerializer):
        title = serializers.CharField(max_length=200)
        text = serializers.CharField(max_length=settings.CONTRACT_TEXT_MAX_CHARS, trim_whitespace=False)

    class ContractFilterSerializer(StrictInputSerializer):
        status = serializers.ChoiceField(choices=ContractStatus.choices, required=False)
        run_state = serializers.ChoiceField(choices=RUN_STATES, required=False)
        created_after = serializers.DateTimeField(required=False)
        created_before = serializers.DateTimeField(required=False)
        cursor = serializers.CharField(required=False, max_length=2000)
        page_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)

    @extend_schema(
        parameters=[ContractFilterSerializer], operation_id="contracts_list",
        responses={200: inline_serializer("ContractPage", {"results": ContractOutputSerializer(many=True), "next_cursor": serializers.CharField(allow_null=True)}), **error_responses(400, 401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str) -> Response:
        filters = self.ContractFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = dict(filters.validated_data)
        cursor, size = params.pop("cursor", None), params.pop("page_size")
        page = keyset_page(contract_list(tenant=self.tenant, **params), ordering=["-created_at"], cursor=cursor, size=size)
        return Response({"results": ContractOutputSerializer(page.rows, many=True).data, "next_cursor": page.next_cursor})

    @extend_schema(operation_id="contracts_submit", request=ContractSubmitInputSerializer, responses={202: ContractOutputSerializer, **error_responses(400, 401, 403, 404, 413, 429)})
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = self.ContractSubmitInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        contract = contract_submit(tenant=self.tenant, submitted_by=request.user, **serializer.validated_data)
        if not drives_queued_in_transaction():  # then the run may be over already: show where it is
            contract.refresh_from_db()
        # 202: saved, and its run is queued; follow Location for the run's progress.
        location = reverse("contract-detail", kwargs={"tenant_slug": self.tenant.slug, "contract_id": contract.pk})
        return Response(ContractOutputSerializer(contract).data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


class ContractDetailApi(TenantAPIView):
    roles = {"GET": MEMBER_ROLES}

    @extend_schema(operation_id="contracts_get", responses={200: ContractDetailOutputSerializer, **error_responses(401, 403, 404, 429)})
    def get(self, request: Request, tenant_slug: str, contract_id: str) -> Response:
        contract = contract_get(tenant=self.tenant, contract_id=contract_id)
        return Response(ContractDetailOutputSerializer(contract).data)


class ContractRetryApi(TenantAPIView):
    """Run a `failed` contract again from its checkpoint (tenant admins)."""

    roles = {"POST": ADMIN_ROLES}

    @extend_schema(operation_id="contracts_retry", request=None,
                   responses={202: ContractOutputSerializer, **error_responses(401, 403, 404, 409, 429)})
    def post(self, request: Request, tenant_slug: str, contract_id: str) -> Response:
        contract = contract_retry(tenant=self.tenant, contract_id=contract_id, user=request.user, via="api")
        if not drives_queued_in_transaction():  # then the run may be over already: show where it is
            contract.refresh_from_db()
        return Response(ContractOutputSerializer(contract).data, status=status.HTTP_202_ACCEPTED)


# --- Retention (tenant admins) ---------------------------------------------------------


class RetentionApi(TenantAPIView):
    """How long the tenant's finished threads keep their LangGraph checkpoints
    (contracts.retention; `manage.py prune_checkpoints --dry-run` lists rows too)."""

    roles = {"GET": ADMIN_ROLES, "PATCH": ADMIN_ROLES}

    class RetentionInputSerializer(StrictInputSerializer):
        checkpoint_retention_days = serializers.IntegerField(
            min_value=1, max_value=3650, allow_null=True, help_text="null: keep checkpoints for ever")

    Output = inline_serializer("Retention", {
        "checkpoint_retention_days": serializers.IntegerField(allow_null=True),
        "prunable_threads": serializers.IntegerField(help_text="Finished threads the next run would look at."),
        "pruned_threads": serializers.IntegerField(help_text="Threads whose checkpoints were deleted so far."),
    })

    def _out(self) -> dict:
        from django.utils import timezone

        return {
            "checkpoint_retention_days": self.tenant.checkpoint_retention_days,
            "prunable_threads": prunable_contracts(tenant=self.tenant, now=timezone.now()).count(),
            "pruned_threads": Contract.objects.filter(tenant=self.tenant, checkpoints_pruned_at__isnull=False).count(),
        }

    @extend_schema(operation_id="retention_get", responses={200: Output, **error_responses(401, 403, 404, 429)})
    def get(self, request: Request, tenant_slug: str) -> Response:
        return Response(self._out())

    @extend_schema(request=RetentionInputSerializer, responses={200: Output, **error_responses(400, 401, 403, 404, 429)})
    def patch(self, request: Request, tenant_slug: str) -> Response:
        serializer = self.RetentionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tenant_retention_set(tenant=self.tenant, days=serializer.validated_data["checkpoint_retention_days"],
                             actor=request.user, via="api")
        return Response(self._out())
