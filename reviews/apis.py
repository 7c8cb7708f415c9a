from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from config.api_errors import InvalidInput
from reviews.models import ReviewStatus
from reviews.selectors import review_task_get, review_task_list
from reviews.services import review_task_resume
from tenants.apis import TenantAPIView


class ReviewTaskOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    contract = serializers.UUIDField(source="contract_id")
    thread_id = serializers.CharField()
    interrupt_id = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    risk_score = serializers.FloatField()
    payload = serializers.JSONField()
    response_schema = serializers.JSONField()
    decision = serializers.JSONField()
    decided_by = serializers.IntegerField(source="decided_by_id", allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    applied_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class ReviewTaskListApi(TenantAPIView):
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=ReviewStatus.choices, required=False)

    def get(self, request: Request, tenant_slug: str) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        tasks = review_task_list(tenant=self.tenant, **filters.validated_data)[:100]
        return Response({"results": ReviewTaskOutputSerializer(tasks, many=True).data})


class ReviewTaskDetailApi(TenantAPIView):
    def get(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        task = review_task_get(tenant=self.tenant, task_id=task_id)
        return Response(ReviewTaskOutputSerializer(task).data)


class ReviewTaskResumeApi(TenantAPIView):
    def post(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        if not isinstance(request.data, dict):
            raise InvalidInput("The body must be a JSON object.", fields={"non_field_errors": ["Expected an object."]})
        task = review_task_resume(tenant=self.tenant, task_id=task_id, user=request.user, data=request.data)
        # 202: the decision is durably recorded; the graph resumes in a worker.
        return Response(ReviewTaskOutputSerializer(task).data, status=status.HTTP_202_ACCEPTED)
