"""The admin of the queue's time rules, webhooks and comments (imported by
reviews.admin). Scoped like every tenant admin here (tenants.admin.TenantScopedAdmin),
and every write goes through the same service as the REST API, with its checks and its
audit record."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.html import format_html

from config.api_errors import ApplicationError
from reviews.events import EVENT_TYPES
from reviews.models import DeliveryStatus, ReviewComment, ReviewPolicy, ReviewStatus, ReviewTask, WebhookDelivery, WebhookEndpoint
from reviews.policies import POLICY_FIELDS, policy_errors
from reviews.selectors import review_task_can_resume
from reviews.services import review_comment_add, review_policies_set
from reviews.webhook_transport import webhook_url_check
from reviews.webhooks import (
    webhook_delivery_retry,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_update,
    webhook_secret_rotate,
)
from tenants.admin import ADMIN_ROLES, PEOPLE_ROLES, TenantScopedAdmin, tenant_ids_for
from tenants.models import DECIDING_ROLES
from tenants.selectors import membership_get

class ServiceWritesAdmin(TenantScopedAdmin):
    """An admin whose saves and deletes go through a service. A refusal there (a race
    the form could not see, a role the service itself refuses) rolls the write back and
    is the page's one message: never beside Django's "saved", never logged as done."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ApplicationError as exc:
            messages.error(request, f"Not saved: {exc.message}")
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ApplicationError as exc:
            messages.error(request, f"Not deleted: {exc.message}")
            return HttpResponseRedirect(request.get_full_path())

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except ApplicationError as exc:  # an action's write (delete selected, rotate a secret)
            messages.error(request, f"Not done: {exc.message}")
            return HttpResponseRedirect(request.get_full_path())


# --- Review policies --------------------------------------------------------------------


class ReviewPolicyForm(forms.ModelForm):
    class Meta:
        model = ReviewPolicy
        fields = ["tenant", "kind", *POLICY_FIELDS]

    def clean(self):
        cleaned = super().clean()
        tenant = cleaned.get("tenant") or getattr(self.instance, "tenant", None)
        kind = cleaned.get("kind") or self.instance.kind
        if self.instance.pk is None and tenant and kind and ReviewPolicy.objects.filter(tenant=tenant, kind=kind).exists():
            self.add_error("kind", "This tenant has a policy for this kind already: change that one.")
        values = {name: cleaned.get(name) for name in POLICY_FIELDS}
        values["expiry_reason"] = values["expiry_reason"] or ""
        values["escalation_team"] = values["escalation_team"] or ""
        # The same check as the API's, so the form and the API refuse the same policies.
        for name, problems in policy_errors(values).items():
            if name in self.fields and name not in self.errors:
                for problem in problems:
                    self.add_error(name, problem)
        return cleaned


@admin.register(ReviewPolicy)
class ReviewPolicyAdmin(ServiceWritesAdmin):
    view_roles = change_roles = add_roles = delete_roles = ADMIN_ROLES
    form = ReviewPolicyForm
    list_display = ["kind", "tenant", "due_after_seconds", "remind_before_due_seconds", "escalate_after_seconds",
                    "escalation_team", "expire_after_seconds", "expiry_action", "updated_at"]
    list_filter = ["kind", "expiry_action"]
    actions = ["delete_selected"]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant", "kind"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data.get(name, getattr(obj, name)) for name in POLICY_FIELDS}
        values["expiry_reason"] = values["expiry_reason"] or ""
        values["escalation_team"] = values["escalation_team"] or ""
        review_policies_set(tenant=obj.tenant, changes={obj.kind: values}, actor=request.user, via="admin")
        saved = ReviewPolicy.objects.get(tenant=obj.tenant, kind=obj.kind)
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        review_policies_set(tenant=obj.tenant, changes={obj.kind: None}, actor=request.user, via="admin")

    def delete_queryset(self, request, queryset):
        for policy in queryset:
            self.delete_model(request, policy)

    def log_change(self, request, obj, message):
        return None  # the service's audit record is the trail


# --- Comments -------------------------------------------------------------------------


class ReviewCommentForm(forms.ModelForm):
    class Meta:
        model = ReviewComment
        fields = ["task", "body"]

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def clean(self):
        cleaned = super().clean()
        task = cleaned.get("task")
        if task is not None and self.request is not None:
            membership = membership_get(tenant=task.tenant, user=self.request.user)
            if task.status != ReviewStatus.PENDING:
                self.add_error("task", f"This task is already {task.status}; comments are for tasks still to decide.")
            elif not review_task_can_resume(task=task, user=self.request.user, membership=membership):
                self.add_error("task", "Only those who may decide this task may comment on it.")
        return cleaned


@admin.register(ReviewComment)
class ReviewCommentAdmin(ServiceWritesAdmin):
    """Comments are read by everyone who reads the queue and added by whoever may decide
    the task; never edited or deleted (they are part of the task's record)."""

    view_roles = PEOPLE_ROLES
    add_roles = DECIDING_ROLES
    form = ReviewCommentForm
    list_display = ["task", "author_username", "excerpt", "created_at"]
    search_fields = ["body", "author_username"]
    readonly_fields = ["task", "author_username", "body", "created_at"]

    @admin.display(description="comment")
    def excerpt(self, obj) -> str:
        return obj.body if len(obj.body) <= 80 else obj.body[:79] + "…"

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)

        class RequestForm(form):
            def __init__(self, *args, **inner):
                super().__init__(*args, request=request, **inner)

        return RequestForm

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "task" and not request.user.is_superuser:
            kwargs["queryset"] = ReviewTask.objects.filter(
                tenant_id__in=tenant_ids_for(request, DECIDING_ROLES), status=ReviewStatus.PENDING
            ).select_related("contract")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        task = form.cleaned_data["task"]
        saved = review_comment_add(tenant=task.tenant, task_id=task.pk, user=request.user,
                                   body=form.cleaned_data["body"], via="admin")
        obj.pk, obj.tenant_id = saved.pk, saved.tenant_id

    def log_addition(self, request, obj, message):
        return None


# --- Webhooks -------------------------------------------------------------------------


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    event_types = forms.MultipleChoiceField(choices=[(t, t) for t in EVENT_TYPES], widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ["tenant", "url", "description", "event_types", "is_active"]

    def clean_url(self):
        from django.conf import settings

        url = self.cleaned_data["url"]
        try:
            webhook_url_check(url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE_URLS)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.fields.get("url", [exc.message])) from None
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ServiceWritesAdmin):
    view_roles = change_roles = add_roles = delete_roles = ADMIN_ROLES
    form = WebhookEndpointForm
    list_display = ["url", "tenant", "is_active", "types", "pending", "failed", "events_missed", "created_at"]
    list_filter = ["is_active"]
    readonly_fields = ["secret_prefix", "last_seq", "events_missed", "deliveries_link"]
    actions = ["rotate_secret", "delete_selected"]

    def get_readonly_fields(self, request, obj=None):
        return (["tenant", *self.readonly_fields]) if obj is not None else []

    @admin.display(description="event types")
    def types(self, obj) -> str:
        return ", ".join(obj.event_types)

    @admin.display(description="pending")
    def pending(self, obj) -> int:
        return obj.deliveries.filter(status=DeliveryStatus.PENDING).count()

    @admin.display(description="failed")
    def failed(self, obj) -> int:
        return obj.deliveries.filter(status=DeliveryStatus.FAILED).count()

    @admin.display(description="signing secret")
    def secret_prefix(self, obj) -> str:
        return f"{obj.secret[:10]}… (shown in full on creation and rotation)"

    @admin.display(description="deliveries")
    def deliveries_link(self, obj) -> str:
        return format_html('<a href="../../../webhookdelivery/?endpoint__id__exact={}">delivery log</a>', obj.pk)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            webhook_endpoint_update(
                endpoint=WebhookEndpoint.objects.get(tenant_id=obj.tenant_id, pk=obj.pk),
                changes={k: data[k] for k in ("url", "description", "event_types", "is_active") if k in data},
                actor=request.user, via="admin",
            )
            return
        created = webhook_endpoint_create(tenant=data["tenant"], url=data["url"], event_types=list(data["event_types"]),
                                          description=data.get("description", ""), actor=request.user, via="admin")
        if not data.get("is_active", True):
            webhook_endpoint_update(endpoint=created, changes={"is_active": False}, actor=request.user, via="admin")
        obj.pk, obj.tenant_id = created.pk, created.tenant_id
        messages.warning(request, f"Signing secret of {created.url}: {created.secret} — copy it now; it is not shown again.")

    def delete_model(self, request, obj):
        webhook_endpoint_delete(endpoint=obj, actor=request.user, via="admin")

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            self.delete_model(request, endpoint)

    @admin.action(description="Rotate the signing secret")
    def rotate_secret(self, request, queryset):
        for endpoint in queryset:
            endpoint = webhook_secret_rotate(endpoint=endpoint, actor=request.user, via="admin")
            messages.warning(request, f"New signing secret of {endpoint.url}: {endpoint.secret} — copy it now.")

    def log_addition(self, request, obj, message):
        return None

    def log_change(self, request, obj, message):
        return None


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(TenantScopedAdmin):
    """The delivery log: read-only, with one action, sending failed deliveries again."""

    view_roles = ADMIN_ROLES
    list_display = ["event_type", "seq", "endpoint", "status", "attempts", "last_status_code", "error",
                    "next_attempt_at", "delivered_at", "created_at"]
    list_filter = ["status", "event_type"]
    readonly_fields = ["endpoint", "event_type", "seq", "status", "attempts", "next_attempt_at", "last_attempt_at",
                       "last_status_code", "last_error", "delivered_at", "attempt_log", "body", "created_at"]
    exclude = ["lease_until", "lease_token"]
    actions = ["send_again"]

    @admin.display(description="last error")
    def error(self, obj) -> str:
        return obj.last_error if len(obj.last_error) <= 80 else obj.last_error[:79] + "…"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("endpoint")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Send failed deliveries again")
    def send_again(self, request, queryset):
        done, refused = 0, 0
        for delivery in queryset:
            try:
                webhook_delivery_retry(delivery=delivery, actor=request.user, via="admin")
                done += 1
            except ApplicationError:
                refused += 1
        if done:
            messages.success(request, f"{done} delivery(ies) will be sent again.")
        if refused:
            messages.warning(request, f"{refused} delivery(ies) were not failed and were left as they are.")
