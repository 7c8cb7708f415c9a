from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from config.api_errors import InvalidInput
from reviews.models import ReviewStatus
from contracts.selectors import contract_get
from reviews.selectors import resume_grants_get, review_task_get, review_task_list
from reviews.services import resume_permission_set, review_task_resume
from tenants.apis import ADMIN_ROLES, PEOPLE_ROLES, StrictInputSerializer, TenantAPIView
from tenants.models import DECIDING_ROLES, Team
from tenants.selectors import membership_get_by_username
from tenants.services import tenant_group_get


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
    roles = {"GET": PEOPLE_ROLES}

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=ReviewStatus.choices, required=False)

    def get(self, request: Request, tenant_slug: str) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        tasks = review_task_list(tenant=self.tenant, **filters.validated_data)[:100]
        return Response({"results": ReviewTaskOutputSerializer(tasks, many=True).data})


class ReviewTaskDetailApi(TenantAPIView):
    roles = {"GET": PEOPLE_ROLES}

    def get(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        task = review_task_get(tenant=self.tenant, task_id=task_id)
        return Response(ReviewTaskOutputSerializer(task).data)


class ReviewTaskResumeApi(TenantAPIView):
    # Viewers and agents get 403 here; reviewers need the object permission (service).
    roles = {"POST": DECIDING_ROLES}

    def post(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        if not isinstance(request.data, dict):
            raise InvalidInput("The body must be a JSON object.", fields={"non_field_errors": ["Expected an object."]})
        task = review_task_resume(tenant=self.tenant, task_id=task_id, user=request.user, data=request.data, via="api")
        # 202: the decision is durably recorded; the graph resumes in a worker.
        return Response(ReviewTaskOutputSerializer(task).data, status=status.HTTP_202_ACCEPTED)


# --- Grants (tenant admins only) --------------------------------------------------------


class _ResumeGrantApi(TenantAPIView):
    """Grant or revoke the permission to resume one task, or every task of one thread."""

    roles = {"GET": ADMIN_ROLES, "POST": ADMIN_ROLES}
    grant = True

    class InputSerializer(StrictInputSerializer):
        user = serializers.CharField(required=False, max_length=150)
        team = serializers.ChoiceField(choices=Team.choices, required=False)

        def validate(self, attrs):
            if ("user" in attrs) == ("team" in attrs):
                raise serializers.ValidationError({"user": ["Give exactly one of user or team."]})
            return attrs

    def target_get(self, object_id):
        raise NotImplementedError

    def get(self, request: Request, tenant_slug: str, object_id) -> Response:
        return Response(resume_grants_get(tenant=self.tenant, target=self.target_get(object_id)))

    def post(self, request: Request, tenant_slug: str, object_id) -> Response:
        target = self.target_get(object_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = group = None
        if "user" in serializer.validated_data:
            membership = membership_get_by_username(tenant=self.tenant, username=serializer.validated_data["user"])
            if membership is None:
                raise InvalidInput("user: not a member of this tenant.", fields={"user": ["Not a member of this tenant."]})
            user = membership.user
        else:
            group = tenant_group_get(tenant=self.tenant, team=serializer.validated_data["team"])
        resume_permission_set(
            tenant=self.tenant, target=target, grant=self.grant, actor=request.user, via="api", user=user, group=group
        )
        return Response(resume_grants_get(tenant=self.tenant, target=target))


class ReviewTaskGrantApi(_ResumeGrantApi):
    def target_get(self, object_id):
        return review_task_get(tenant=self.tenant, task_id=object_id)


class ReviewTaskRevokeApi(ReviewTaskGrantApi):
    http_method_names = ["post", "options"]
    grant = False


class ContractGrantApi(_ResumeGrantApi):
    def target_get(self, object_id):
        return contract_get(tenant=self.tenant, contract_id=object_id)


class ContractRevokeApi(ContractGrantApi):
    http_method_names = ["post", "options"]
    grant = False
