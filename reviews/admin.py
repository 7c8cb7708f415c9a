"""Reviewers work the queue from the admin too: the change form of a pending task they
may resume carries a decision form, and actions decide several tasks at once. Both go
through reviews.services.review_task_resume, with the API's permission checks."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from config.api_errors import ApplicationError
from contracts.models import Contract, ContractGroupPermission, ContractUserPermission
from reviews.models import ReviewStatus, ReviewTask, ReviewTaskGroupPermission, ReviewTaskUserPermission
from reviews.selectors import review_task_can_resume
from reviews.services import resume_permission_set, review_task_resume
from tenants.admin import ADMIN_ROLES, PEOPLE_ROLES, TenantScopedAdmin, scoped_groups, scoped_users, tenant_ids_for
from tenants.models import Membership
from tenants.selectors import membership_get


def _pretty(value) -> str:
    return format_html("<pre style='white-space:pre-wrap;max-width:60em'>{}</pre>", json.dumps(value, indent=2))


class ReviewDecisionForm(forms.ModelForm):
    decision = forms.ChoiceField(choices=[("approve", "approve"), ("reject", "reject"), ("amend", "amend")])
    amendments = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, help_text="One amendment per line (only with 'amend').")
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    class Meta:
        model = ReviewTask
        fields: list[str] = []

    def decision_data(self) -> dict:
        amendments = [line.strip() for line in self.cleaned_data.get("amendments", "").splitlines() if line.strip()]
        data = {"decision": self.cleaned_data["decision"], "comment": self.cleaned_data.get("comment", "")}
        if amendments:
            data["amendments"] = amendments
        return data


@admin.register(ReviewTask)
class ReviewTaskAdmin(TenantScopedAdmin):
    view_roles = PEOPLE_ROLES
    list_display = ["contract_title", "kind", "status", "risk_score", "decided_by", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["contract__title", "interrupt_id"]
    ordering = ["-risk_score", "created_at"]
    actions = ["approve_selected", "reject_selected"]
    readonly_fields = [
        "contract_title", "tenant", "kind", "status", "risk_score", "contract_preview", "findings_pretty",
        "payload_pretty", "history_pretty", "decision_pretty", "decided_by", "decided_at", "applied_at",
        "thread_id", "interrupt_id", "created_at",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("contract", "decided_by")

    @admin.display(description="contract")
    def contract_title(self, obj):
        return obj.contract.title

    @admin.display(description="contract preview")
    def contract_preview(self, obj):
        return obj.payload.get("contract_preview", "")

    @admin.display(description="findings")
    def findings_pretty(self, obj):
        return _pretty(obj.payload.get("findings") or obj.payload.get("payments") or [])

    @admin.display(description="payload")
    def payload_pretty(self, obj):
        return _pretty(obj.payload)

    @admin.display(description="contract history")
    def history_pretty(self, obj):
        return _pretty(obj.contract.decision_history)

    @admin.display(description="decision")
    def decision_pretty(self, obj):
        return _pretty(obj.decision) if obj.decision else "-"

    def _may_resume(self, request, obj) -> bool:
        membership = membership_get(tenant=obj.tenant, user=request.user)
        return obj.status == ReviewStatus.PENDING and review_task_can_resume(task=obj, user=request.user, membership=membership)

    def has_change_permission(self, request, obj=None):
        # Superusers too go through the object permission: the service checks it anyway.
        if obj is None:
            return bool(tenant_ids_for(request, PEOPLE_ROLES)) or request.user.is_superuser
        return self._may_resume(request, obj)

    def has_add_permission(self, request):
        return False  # tasks come from interrupts only

    def has_delete_permission(self, request, obj=None):
        return False  # a task is closed by a decision or a cancel, never deleted

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None and self._may_resume(request, obj):
            kwargs["form"] = ReviewDecisionForm
        return super().get_form(request, obj, **kwargs)

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": self.readonly_fields})]
        if obj is not None and self._may_resume(request, obj):
            fieldsets.insert(0, ("Decision", {"fields": ["decision", "amendments", "comment"]}))
        return fieldsets

    def save_model(self, request, obj, form, change):
        try:
            review_task_resume(tenant=obj.tenant, task_id=obj.pk, user=request.user, data=form.decision_data(), via="admin")
        except ApplicationError as exc:
            messages.error(request, f"Not recorded: {exc.message} {exc.fields or ''}")
        else:
            messages.success(request, "Decision recorded; the run resumes in the background.")

    def log_change(self, request, obj, message):
        return None  # our own audit trail records decisions

    def _decide_selected(self, request, queryset, decision: str) -> None:
        done, refused = 0, []
        for task in queryset:
            try:
                review_task_resume(tenant=task.tenant, task_id=task.pk, user=request.user, data={"decision": decision}, via="admin")
                done += 1
            except ApplicationError as exc:
                refused.append(f"{task.contract.title} ({task.kind}): {exc.message}")
        if done:
            messages.success(request, f"{decision}: {done} task(s) recorded.")
        for line in refused:
            messages.warning(request, line)

    @admin.action(description="Approve selected tasks")
    def approve_selected(self, request, queryset):
        self._decide_selected(request, queryset, "approve")

    @admin.action(description="Reject selected tasks")
    def reject_selected(self, request, queryset):
        self._decide_selected(request, queryset, "reject")

    def get_actions(self, request):
        actions = super().get_actions(request)
        # The stock bulk delete would skip every rule above.
        actions.pop("delete_selected", None)
        return actions


@admin.register(Contract)
class ContractAdmin(TenantScopedAdmin):
    view_roles = PEOPLE_ROLES
    list_display = ["title", "tenant", "status", "risk_score", "created_at"]
    list_filter = ["status"]
    search_fields = ["title"]
    readonly_fields = [
        "title", "tenant", "thread_id", "status", "risk_score", "text", "findings", "payments",
        "decision_history", "amendments", "amended_text", "created_at", "completed_at", "last_error",
    ]
    exclude = ["run_lease_owner", "run_lease_until", "submitted_by"]

    def has_change_permission(self, request, obj=None):
        return False


class _ResumeGrantAdmin(TenantScopedAdmin):
    """Grants are added or deleted, never edited; both go through the audited service."""

    view_roles = add_roles = delete_roles = ADMIN_ROLES
    target_model: type = ReviewTask
    holder_field = "user"
    fields = ["content_object", "user"]
    list_display = ["content_object", "user", "tenant"]
    actions = ["delete_selected"]

    def get_fields(self, request, obj=None):
        return ["content_object", self.holder_field]

    def has_change_permission(self, request, obj=None):
        return False

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not request.user.is_superuser:
            if db_field.name == "content_object":
                kwargs["queryset"] = self.target_model.objects.filter(tenant_id__in=tenant_ids_for(request, ADMIN_ROLES))
            elif db_field.name == "user":
                kwargs["queryset"] = scoped_users(request, ADMIN_ROLES)
            elif db_field.name == "group":
                kwargs["queryset"] = scoped_groups(request, ADMIN_ROLES)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        holder_field = self.holder_field

        class GrantForm(form):
            def clean(self):
                cleaned = super().clean()
                target, holder = cleaned.get("content_object"), cleaned.get(holder_field)
                if target is None or holder is None:
                    return cleaned
                if holder_field == "user" and not Membership.objects.filter(tenant_id=target.tenant_id, user=holder).exists():
                    self.add_error("user", "Not a member of this object's tenant.")
                if holder_field == "group" and holder.tenant_group.tenant_id != target.tenant_id:
                    self.add_error("group", "Not a team of this object's tenant.")
                return cleaned

        return GrantForm

    def save_model(self, request, obj, form, change):
        target = form.cleaned_data["content_object"]
        resume_permission_set(tenant=target.tenant, target=target, grant=True, actor=request.user, via="admin",
                              **{self.holder_field: form.cleaned_data[self.holder_field]})
        # The service wrote the row; show the admin that row (its log entry reads it).
        saved = type(obj).objects.get(tenant=target.tenant, content_object=target,
                                      **{self.holder_field: form.cleaned_data[self.holder_field]})
        obj.pk, obj.tenant_id, obj.permission_id = saved.pk, saved.tenant_id, saved.permission_id

    def delete_model(self, request, obj):
        resume_permission_set(tenant=obj.tenant, target=obj.content_object, grant=False, actor=request.user,
                              via="admin", **{self.holder_field: getattr(obj, self.holder_field)})

    def delete_queryset(self, request, queryset):
        for grant in queryset:
            self.delete_model(request, grant)


@admin.register(ReviewTaskUserPermission)
class ReviewTaskUserGrantAdmin(_ResumeGrantAdmin):
    pass


@admin.register(ReviewTaskGroupPermission)
class ReviewTaskGroupGrantAdmin(_ResumeGrantAdmin):
    holder_field = "group"
    list_display = ["content_object", "group", "tenant"]


@admin.register(ContractUserPermission)
class ThreadUserGrantAdmin(_ResumeGrantAdmin):
    target_model = Contract


@admin.register(ContractGroupPermission)
class ThreadGroupGrantAdmin(_ResumeGrantAdmin):
    target_model = Contract
    holder_field = "group"
    list_display = ["content_object", "group", "tenant"]


# The queue's time rules, webhooks and comments.
from reviews import admin_extras  # noqa: E402,F401
