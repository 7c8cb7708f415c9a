"""The tenant's review policies over REST: one resource holding a policy per kind."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from config.api_docs import error_responses
from reviews.models import ESCALATION_TEAM_CHOICES, ExpiryAction, ReviewKind
from reviews.policies import MAX_SECONDS, MIN_SECONDS, Policy, review_policies_effective
from reviews.services import review_policies_set
from tenants.apis import ADMIN_ROLES, StrictInputSerializer, TenantAPIView


def _seconds(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=MIN_SECONDS, max_value=MAX_SECONDS, **kwargs)


class PolicyOutputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ReviewKind.choices)
    is_default = serializers.BooleanField(help_text="The tenant has set nothing for this kind: the defaults apply.")
    due_after_seconds = _seconds()
    remind_before_due_seconds = _seconds(allow_null=True)
    escalate_after_seconds = _seconds(allow_null=True)
    escalation_team = serializers.ChoiceField(choices=ESCALATION_TEAM_CHOICES, allow_blank=True)
    escalation_keeps_grants = serializers.BooleanField()
    expire_after_seconds = _seconds(allow_null=True)
    expiry_action = serializers.ChoiceField(choices=ExpiryAction.choices)
    expiry_reason = serializers.CharField(allow_blank=True)


class PolicyChangeSerializer(StrictInputSerializer):
    """The fields to change; the rest keep their current values."""

    due_after_seconds = _seconds(required=False, help_text="A new task is due this long after it is created.")
    remind_before_due_seconds = _seconds(required=False, allow_null=True,
                                         help_text="review.due_soon this long before the due date (less than due_after_seconds).")
    escalate_after_seconds = _seconds(required=False, allow_null=True,
                                      help_text="Escalated to escalation_team this long after creation.")
    escalation_team = serializers.ChoiceField(choices=ESCALATION_TEAM_CHOICES, required=False, allow_blank=True,
                                              help_text="Empty: tenant admins only.")
    escalation_keeps_grants = serializers.BooleanField(
        required=False, help_text="false: escalation also removes the task's own grants (routed team, personal).")
    expire_after_seconds = _seconds(required=False, allow_null=True,
                                    help_text="Expired this long after creation (at least due_after_seconds).")
    expiry_action = serializers.ChoiceField(choices=ExpiryAction.choices, required=False,
                                            help_text="What expiry does; it never approves.")
    expiry_reason = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                          help_text="Recorded with an expiry; empty: a reason is worded for you.")


class PoliciesChangeSerializer(StrictInputSerializer):
    legal = PolicyChangeSerializer(required=False, allow_null=True, help_text="null: back to the defaults")
    finance = PolicyChangeSerializer(required=False, allow_null=True, help_text="null: back to the defaults")
    signoff = PolicyChangeSerializer(required=False, allow_null=True, help_text="null: back to the defaults")


PoliciesOutput = inline_serializer("ReviewPolicies", {"results": PolicyOutputSerializer(many=True)})


def _out(policies: dict[str, Policy]) -> dict:
    rows = [{"kind": kind, "is_default": p.is_default, **p.values()} for kind, p in policies.items()]
    return {"results": PolicyOutputSerializer(rows, many=True).data}


class ReviewPoliciesApi(TenantAPIView):
    """GET: the policy in force for every kind. PATCH: change some fields of some kinds
    (checked as a whole: e.g. remind before due < due after, else a 400 naming
    `<kind>.<field>`); a kind set to null goes back to the defaults."""

    roles = {"GET": ADMIN_ROLES, "PATCH": ADMIN_ROLES}

    @extend_schema(operation_id="review_policies_get", responses={200: PoliciesOutput, **error_responses(401, 403, 404, 429)})
    def get(self, request: Request, tenant_slug: str) -> Response:
        return Response(_out(review_policies_effective(tenant=self.tenant)))

    @extend_schema(request=PoliciesChangeSerializer, responses={200: PoliciesOutput, **error_responses(400, 401, 403, 404, 429)})
    def patch(self, request: Request, tenant_slug: str) -> Response:
        serializer = PoliciesChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        policies = review_policies_set(tenant=self.tenant, changes=dict(serializer.validated_data), actor=request.user,
                                       via="api")
        return Response(_out(policies))
