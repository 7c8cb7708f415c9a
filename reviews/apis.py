from __future__ import annotations

import hashlib
import json

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from config.api_docs import error_responses
from config.api_errors import InvalidInput
from config.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, keyset_page, serialized_rows
from contracts.selectors import contract_get
from contracts.services import contract_cancel
from reviews.models import ReviewKind, ReviewStatus
from reviews.policies import task_due_status
from reviews.selectors import (
    QUEUE_ORDERINGS,
    resume_grants_get,
    review_comment_list,
    review_task_can_resume,
    review_task_get,
    review_task_history,
    review_task_list,
)
from reviews.services import (
    resume_permission_set,
    resume_receipt,
    review_task_claim,
    review_task_release,
    review_task_resume,
    review_comment_add,
    review_task_reassign,
    review_task_resume_idempotent,
    review_tasks_resume_batch,
)
from tenants.apis import ADMIN_ROLES, PEOPLE_ROLES, StrictInputSerializer, TenantAPIView
from tenants.models import DECIDING_ROLES, Team
from tenants.selectors import membership_get_by_username
from tenants.services import tenant_group_get

CONTRACT_EXCERPT_CHARS = 1_000
MAX_BATCH_ITEMS = 100


class ReviewTaskOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    contract = serializers.UUIDField(source="contract_id")
    contract_title = serializers.CharField(source="contract.title")
    thread_id = serializers.CharField()
    interrupt_id = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    risk_score = serializers.FloatField()
    payload = serializers.JSONField()
    payload_digest = serializers.CharField(
        help_text="sha256 of the payload's canonical JSON. Send it back as If-Match on resume: the decision is "
        "refused (409) if the task no longer shows what you saw.")
    response_schema = serializers.JSONField()
    decision = serializers.JSONField()
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)
    decided_at = serializers.DateTimeField(allow_null=True)
    applied_at = serializers.DateTimeField(allow_null=True)
    claimed_by = serializers.SerializerMethodField()
    claim_expires_at = serializers.SerializerMethodField()
    due_at = serializers.DateTimeField(allow_null=True)
    due_status = serializers.SerializerMethodField(
        help_text="Pending: on_time, due_soon (past its reminder time) or overdue; decided: met or missed; else null.")
    due_in_seconds = serializers.SerializerMethodField(help_text="Until the due date; negative once overdue; null once closed.")
    priority = serializers.IntegerField(help_text="0-100, higher first: half from risk, raised when due soon and on escalation.")
    reminded_at = serializers.DateTimeField(allow_null=True)
    escalated_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def _now(self):
        # One clock reading per response, so every row of a page is judged at the same moment.
        from django.utils import timezone

        if "now" not in self.context:
            self.context["now"] = timezone.now()
        return self.context["now"]

    def get_due_status(self, task) -> str | None:
        return task_due_status(task, now=self._now())

    def get_due_in_seconds(self, task) -> int | None:
        if task.due_at is None or task.status != ReviewStatus.PENDING:
            return None
        return int((task.due_at - self._now()).total_seconds())

    def _live_claim(self, task) -> bool:
        from django.utils import timezone

        return task.claimed_by_id is not None and task.claim_expires_at is not None and task.claim_expires_at > timezone.now()

    def get_claimed_by(self, task) -> str | None:
        return task.claimed_by.username if self._live_claim(task) else None

    def get_claim_expires_at(self, task) -> str | None:
        return task.claim_expires_at.isoformat() if self._live_claim(task) else None


class ReviewTaskDetailOutputSerializer(ReviewTaskOutputSerializer):
    findings = serializers.JSONField(source="contract.findings")
    contract_excerpt = serializers.SerializerMethodField()
    contract_status = serializers.CharField(source="contract.status")
    decision_history = serializers.JSONField(source="contract.decision_history")
    history = serializers.SerializerMethodField()
    can_resume = serializers.SerializerMethodField()
    remind_at = serializers.DateTimeField(allow_null=True)
    escalate_at = serializers.DateTimeField(allow_null=True)
    expire_at = serializers.DateTimeField(allow_null=True)
    policy = serializers.JSONField(help_text="The review policy the task was created under, which its timers follow.")
    comments = serializers.SerializerMethodField()

    def get_comments(self, task) -> list[dict]:
        return CommentOutputSerializer(review_comment_list(task=task), many=True).data

    def get_contract_excerpt(self, task) -> str:
        return task.contract.text[:CONTRACT_EXCERPT_CHARS]

    def get_history(self, task) -> list[dict]:
        return review_task_history(task=task)

    def get_can_resume(self, task) -> bool:
        view = self.context["view"]
        return task.status == ReviewStatus.PENDING and review_task_can_resume(task=task, user=view.request.user, membership=view.membership)


class CommentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    author = serializers.CharField(source="author_username")
    body = serializers.CharField()
    created_at = serializers.DateTimeField()


class ReceiptSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    contract = serializers.UUIDField()
    kind = serializers.CharField()
    status = serializers.CharField()
    decision = serializers.JSONField()
    decided_at = serializers.DateTimeField(allow_null=True)


class DecisionInputSerializer(serializers.Serializer):
    """Documentation only: the decision is validated against the task's own schema
    (reviews.services.review_decision_validate), which names the failing field."""

    decision = serializers.ChoiceField(choices=["approve", "reject", "amend"])
    amendments = serializers.ListField(child=serializers.CharField(), required=False)
    comment = serializers.CharField(required=False, allow_blank=True)


class ReviewTaskListApi(TenantAPIView):
    roles = {"GET": PEOPLE_ROLES}

    class ReviewQueueFilterSerializer(StrictInputSerializer):
        status = serializers.ChoiceField(choices=ReviewStatus.choices, required=False)
        kind = serializers.ChoiceField(choices=ReviewKind.choices, required=False)
        risk_min = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
        risk_max = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
        assignee = serializers.CharField(required=False, max_length=150, help_text="'me', 'none' or a username")
        contract = serializers.UUIDField(required=False)
        created_after = serializers.DateTimeField(required=False)
        created_before = serializers.DateTimeField(required=False)
        updated_after = serializers.DateTimeField(required=False)
        updated_before = serializers.DateTimeField(required=False)
        due_after = serializers.DateTimeField(required=False, help_text="Due at or after this time")
        due_before = serializers.DateTimeField(required=False, help_text="Due before this time")
        overdue = serializers.BooleanField(required=False, allow_null=True, default=None,
                                           help_text="true: pending and past due; false: everything else")
        escalated = serializers.BooleanField(required=False, allow_null=True, default=None)
        actionable = serializers.BooleanField(
            required=False,
            help_text="Only pending tasks the caller may decide now: permitted, not claimed by someone else, "
                      "and no sign-off of a contract whose legal approval the caller gave",
        )
        ordering = serializers.ChoiceField(choices=sorted(QUEUE_ORDERINGS), required=False, default="risk")
        cursor = serializers.CharField(required=False, max_length=2000)
        page_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)

    @extend_schema(
        parameters=[ReviewQueueFilterSerializer], operation_id="reviews_list",
        responses={200: inline_serializer("ReviewTaskPage", {"results": ReviewTaskOutputSerializer(many=True), "next_cursor": serializers.CharField(allow_null=True)}), **error_responses(400, 401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str) -> Response:
        filters = self.ReviewQueueFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = dict(filters.validated_data)
        ordering, cursor, size = params.pop("ordering"), params.pop("cursor", None), params.pop("page_size")
        tasks = review_task_list(tenant=self.tenant, user=request.user, membership=self.membership, **params)
        page = keyset_page(tasks, ordering=QUEUE_ORDERINGS[ordering], cursor=cursor, size=size)
        return Response({"results": serialized_rows(ReviewTaskOutputSerializer, page.rows),
                         "next_cursor": page.next_cursor})


class ReviewTaskDetailApi(TenantAPIView):
    roles = {"GET": PEOPLE_ROLES}

    @extend_schema(operation_id="reviews_get", responses={200: ReviewTaskDetailOutputSerializer, **error_responses(401, 403, 404, 429)})
    def get(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        task = review_task_get(tenant=self.tenant, task_id=task_id)
        return Response(ReviewTaskDetailOutputSerializer(task, context={"view": self}).data,
                        headers={"ETag": f'"{task.payload_digest}"'})


def seen_digest(request: Request) -> str | None:
    """The payload digest the client saw, from If-Match ("<digest>", or W/"<digest>");
    None when it sends none (or "*")."""
    value = request.headers.get("If-Match", "").strip()
    if not value or value == "*":
        return None
    return value.removeprefix("W/").strip('"')


def request_fingerprint(request: Request) -> str:
    """What an Idempotency-Key stands for: the method, the path and the body."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


class ReviewTaskResumeApi(TenantAPIView):
    # Viewers and agents get 403 here; reviewers need the object permission (service).
    roles = {"POST": DECIDING_ROLES}

    @extend_schema(
        request=DecisionInputSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                     description="Retries with the same key and body replay the first response."),
                    OpenApiParameter("If-Match", str, OpenApiParameter.HEADER, required=False,
                                     description="The task's payload_digest as you saw it: refused (409) if it "
                                     "shows something else now.")],
        responses={202: ReceiptSerializer, **error_responses(400, 401, 403, 404, 409, 413, 422, 429)},
    )
    def post(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        if not isinstance(request.data, dict):
            raise InvalidInput("The body must be a JSON object.", fields={"non_field_errors": ["Expected an object."]})
        key = request.headers.get("Idempotency-Key")
        if key is None:
            task = review_task_resume(tenant=self.tenant, task_id=task_id, user=request.user, data=request.data, via="api",
                                      seen_digest=seen_digest(request), membership=self.membership)
            # 202: the decision is durably recorded; the graph resumes in a worker.
            return Response(resume_receipt(task), status=status.HTTP_202_ACCEPTED)
        if not 1 <= len(key) <= 200 or not key.isprintable() or not key.isascii():
            raise InvalidInput("Idempotency-Key: 1 to 200 printable ASCII characters.",
                               fields={"Idempotency-Key": ["1 to 200 printable ASCII characters."]})
        receipt, replayed = review_task_resume_idempotent(
            tenant=self.tenant, task_id=task_id, user=request.user, data=request.data,
            key=key, fingerprint=request_fingerprint(request), via="api", seen_digest=seen_digest(request),
            membership=self.membership,
        )
        return Response(receipt, status=status.HTTP_202_ACCEPTED, headers={"Idempotent-Replayed": "true" if replayed else "false"})


class BatchResumeApi(TenantAPIView):
    roles = {"POST": DECIDING_ROLES}

    class BatchResumeInputSerializer(StrictInputSerializer):
        # Items are checked one by one by the service, so one malformed item is an
        # `invalid` outcome for that item, not a 400 for the whole batch.
        items = serializers.ListField(child=serializers.JSONField(allow_null=True), min_length=1, max_length=MAX_BATCH_ITEMS)

    @extend_schema(
        request=inline_serializer("BatchResumeRequest", {"items": serializers.ListField(child=inline_serializer("BatchResumeItem", {"id": serializers.UUIDField(), "decision": serializers.ChoiceField(choices=["approve", "reject", "amend"]), "amendments": serializers.ListField(child=serializers.CharField(), required=False), "comment": serializers.CharField(required=False)}), max_length=MAX_BATCH_ITEMS)}),
        responses={200: inline_serializer("BatchResumeResponse", {"results": serializers.ListField(child=inline_serializer("BatchResumeOutcome", {"id": serializers.CharField(allow_null=True), "outcome": serializers.ChoiceField(choices=["resolved", "conflict", "forbidden", "not_found", "invalid"]), "message": serializers.CharField(required=False), "fields": serializers.JSONField(required=False), "receipt": ReceiptSerializer(required=False)}))}), **error_responses(400, 401, 403, 404, 413, 429)},
    )
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = self.BatchResumeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        items, malformed = [], {}
        for index, item in enumerate(serializer.validated_data["items"]):
            problem = _batch_item_problem(item)
            if problem:
                malformed[index] = problem
            else:
                items.append((index, item))
        outcomes = dict(zip([i for i, _ in items], review_tasks_resume_batch(
            tenant=self.tenant, user=request.user, items=[item for _, item in items], via="api")))
        outcomes.update(malformed)
        return Response({"results": [outcomes[i] for i in sorted(outcomes)]})


def _batch_item_problem(item) -> dict | None:
    if not isinstance(item, dict):
        return {"id": None, "outcome": "invalid", "message": "Each item must be an object.", "fields": {"non_field_errors": ["Expected an object."]}}
    try:
        serializers.UUIDField().to_internal_value(item.get("id"))
    except serializers.ValidationError:
        return {"id": str(item.get("id")), "outcome": "invalid", "message": "id: a task id (UUID) is required.", "fields": {"id": ["A valid UUID is required."]}}
    return None


class ReviewTaskClaimApi(TenantAPIView):
    roles = {"POST": DECIDING_ROLES}

    @extend_schema(request=None, responses={200: ReviewTaskOutputSerializer, **error_responses(401, 403, 404, 409, 429)})
    def post(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        task = review_task_claim(tenant=self.tenant, task_id=task_id, user=request.user, via="api")
        return Response(ReviewTaskOutputSerializer(task).data)


class ReviewTaskReleaseApi(TenantAPIView):
    roles = {"POST": DECIDING_ROLES}

    @extend_schema(request=None, responses={200: ReviewTaskOutputSerializer, **error_responses(401, 403, 404, 409, 429)})
    def post(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        task = review_task_release(tenant=self.tenant, task_id=task_id, user=request.user, via="api")
        return Response(ReviewTaskOutputSerializer(task).data)


class ReviewTaskCancelApi(TenantAPIView):
    roles = {"POST": ADMIN_ROLES}

    @extend_schema(request=None, responses={200: ReviewTaskOutputSerializer, **error_responses(401, 403, 404, 409, 429)})
    def post(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        task = review_task_get(tenant=self.tenant, task_id=task_id)
        contract_cancel(tenant=self.tenant, contract_id=task.contract_id, user=request.user, via="api", task_id=task.pk)
        return Response(ReviewTaskOutputSerializer(review_task_get(tenant=self.tenant, task_id=task.pk)).data)


# --- Grants (tenant admins only) --------------------------------------------------------


GrantsSerializer = inline_serializer(
    "ResumeGrants", {"users": serializers.ListField(child=serializers.CharField()), "teams": serializers.ListField(child=serializers.CharField())}
)


class _ResumeGrantApi(TenantAPIView):
    """Grant or revoke the permission to resume one task, or every task of one thread."""

    roles = {"GET": ADMIN_ROLES, "POST": ADMIN_ROLES}
    grant = True

    class GrantInputSerializer(StrictInputSerializer):
        user = serializers.CharField(required=False, max_length=150)
        team = serializers.ChoiceField(choices=Team.choices, required=False)

        def validate(self, attrs):
            if ("user" in attrs) == ("team" in attrs):
                raise serializers.ValidationError({"user": ["Give exactly one of user or team."]})
            return attrs

    def target_get(self, object_id):
        raise NotImplementedError

    @extend_schema(responses={200: GrantsSerializer, **error_responses(401, 403, 404, 429)})
    def get(self, request: Request, tenant_slug: str, object_id) -> Response:
        return Response(resume_grants_get(tenant=self.tenant, target=self.target_get(object_id)))

    @extend_schema(request=GrantInputSerializer, responses={200: GrantsSerializer, **error_responses(400, 401, 403, 404, 429)})
    def post(self, request: Request, tenant_slug: str, object_id) -> Response:
        target = self.target_get(object_id)
        serializer = self.GrantInputSerializer(data=request.data)
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



# --- Reassign and comment -------------------------------------------------------------


class ReviewTaskReassignApi(TenantAPIView):
    """A tenant admin gives a pending task to a member who may decide it: a personal
    grant and a claim in their name until the task is due (reviews.services)."""

    roles = {"POST": ADMIN_ROLES}

    class ReassignInputSerializer(StrictInputSerializer):
        user = serializers.CharField(max_length=150, help_text="The member's username")

    @extend_schema(request=ReassignInputSerializer,
                   responses={200: ReviewTaskOutputSerializer, **error_responses(400, 401, 403, 404, 409, 429)})
    def post(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        serializer = self.ReassignInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = review_task_reassign(tenant=self.tenant, task_id=task_id, actor=request.user,
                                    username=serializer.validated_data["user"], via="api")
        return Response(ReviewTaskOutputSerializer(review_task_get(tenant=self.tenant, task_id=task.pk), context={}).data)


class ReviewTaskCommentsApi(TenantAPIView):
    """Everyone who may read the queue reads a task's comments; those who may decide the
    task (reviews.services.review_comment_add) write them, while it is pending."""

    roles = {"GET": PEOPLE_ROLES, "POST": DECIDING_ROLES}

    class CommentInputSerializer(StrictInputSerializer):
        body = serializers.CharField(max_length=5_000, trim_whitespace=False)

    @extend_schema(operation_id="review_comments_list",
                   responses={200: inline_serializer("CommentList", {"results": CommentOutputSerializer(many=True)}),
                              **error_responses(401, 403, 404, 429)})
    def get(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        task = review_task_get(tenant=self.tenant, task_id=task_id)
        return Response({"results": CommentOutputSerializer(review_comment_list(task=task), many=True).data})

    @extend_schema(request=CommentInputSerializer,
                   responses={201: CommentOutputSerializer, **error_responses(400, 401, 403, 404, 409, 429)})
    def post(self, request: Request, tenant_slug: str, task_id: str) -> Response:
        serializer = self.CommentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        comment = review_comment_add(tenant=self.tenant, task_id=task_id, user=request.user,
                                     body=serializer.validated_data["body"], via="api")
        return Response(CommentOutputSerializer(comment).data, status=status.HTTP_201_CREATED)
