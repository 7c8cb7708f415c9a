"""The reviewer's workspace in the Django admin.

- The queue (the ReviewTask changelist) opens on the tasks the reviewer may decide now,
  highest risk and oldest first, and follows the live queue websocket (static
  reviews/queue.js) so new, claimed and resolved tasks show without a reload.
- The task page is made for deciding: title, risk and recommendation first, findings
  highlighted in the contract text, what was already decided on the thread, claim and
  release, and explicit Approve / Reject / Amend buttons.
- Bulk decisions go through a confirmation page; critical-risk and sign-off tasks are
  never decided in bulk.

Every write goes through the services the API uses (reviews.services), with their
permission checks; every read is scoped to the tenants where the user holds a role.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince, timeuntil

from config.api_errors import ApplicationError
from contracts.models import FINAL_STATUSES, Contract, ContractGroupPermission, ContractUserPermission
from reviews.models import ReviewStatus, ReviewTask, ReviewTaskGroupPermission, ReviewTaskUserPermission
from reviews.policies import task_due_status
from reviews.selectors import (
    resume_grant_refusal,
    review_comment_list,
    review_task_bulk_refusal,
    review_task_can_resume,
    review_task_decidable_now_list,
    review_task_first_signature,
    review_task_overdue_q,
    review_task_risk_level,
)
from reviews.services import (
    resume_permission_set,
    review_comment_add,
    review_task_assignee_problem,
    review_task_claim,
    review_task_reassign,
    review_task_release,
    review_task_resume,
)
from tenants.admin import ADMIN_ROLES, PEOPLE_ROLES, TenantScopedAdmin, scoped_groups, scoped_users, tenant_ids_for
from tenants.models import DECIDING_ROLES, Membership, Role, Tenant
from tenants.selectors import membership_get, membership_list

RISK_LABELS = {"critical": "Critical", "high": "High", "normal": "Normal"}


def risk_badge(task: ReviewTask) -> SafeString:
    level = review_task_risk_level(task=task)
    return format_html('<span class="hitl-risk hitl-risk-{}" title="risk score {}">{} {}</span>',
                       level, f"{task.risk_score:.2f}", RISK_LABELS[level], f"{task.risk_score:.2f}")


def live_claim_holder(task: ReviewTask, now=None) -> str | None:
    now = now or timezone.now()
    if task.claimed_by_id and task.claim_expires_at and task.claim_expires_at > now:
        return task.claimed_by.get_username()
    return None


# --- The queue -------------------------------------------------------------------------------


class QueueViewFilter(admin.SimpleListFilter):
    """Which part of the queue: by default the tasks the reviewer may decide now (for
    someone who decides nothing, a viewer or an operator, every pending task)."""

    title = "queue"
    parameter_name = "show"
    MINE, PENDING, RESOLVED, CANCELLED, ALL = "mine", "pending", "resolved", "cancelled", "all"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        decides = bool(tenant_ids_for(request, DECIDING_ROLES))
        self.default = self.MINE if decides else self.PENDING

    def lookups(self, request, model_admin):
        return [
            (self.MINE, "Mine to decide now"),
            (self.PENDING, "All pending"),
            (self.RESOLVED, "Resolved"),
            (self.CANCELLED, "Cancelled"),
            (self.ALL, "Everything"),
        ]

    def value(self) -> str:
        return super().value() or self.default

    def choices(self, changelist):
        # No "All" entry of its own: "Everything" is one of the lookups, and the
        # unfiltered page means the default.
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.MINE:
            return queryset.filter(pk__in=_decidable_now(request))
        if value in (self.PENDING, self.RESOLVED, self.CANCELLED):
            return queryset.filter(status=value)
        return queryset


DUE_LABELS = {"on_time": "on time", "due_soon": "due soon", "overdue": "overdue", "met": "decided in time",
              "missed": "decided late"}


class TimeFilter(admin.SimpleListFilter):
    """Where tasks stand against their due dates and what the clock did to them."""

    title = "time"
    parameter_name = "time"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue"), ("escalated", "Escalated"), ("expired", "Expired")]

    def queryset(self, request, queryset):
        if self.value() == "overdue":
            return queryset.filter(review_task_overdue_q(now=timezone.now()))
        if self.value() == "escalated":
            return queryset.filter(escalated_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(expired_at__isnull=False)
        return queryset


def _decidable_now(request: HttpRequest) -> QuerySet[ReviewTask]:
    """What the reviewer may decide now, over every tenant where they hold a role: the
    API's `actionable=true`, once per membership."""
    memberships = Membership.objects.filter(user_id=request.user.pk, role__in=PEOPLE_ROLES).select_related("tenant")
    tasks = ReviewTask.objects.none()
    for membership in memberships:
        tasks = tasks | review_task_decidable_now_list(tenant=membership.tenant, user=request.user,
                                                       membership=membership)
    return tasks.values("pk")


def _followed_tenants(request: HttpRequest) -> list[str]:
    """Slugs of the tenants whose live queue the page follows."""
    return list(Tenant.objects.filter(pk__in=tenant_ids_for(request, PEOPLE_ROLES)).values_list("slug", flat=True))


class BulkConfirmForm(forms.Form):
    comment = forms.CharField(required=False, max_length=5_000, widget=forms.Textarea(attrs={"rows": 2}))


@admin.register(ReviewTask)
class ReviewTaskAdmin(TenantScopedAdmin):
    view_roles = PEOPLE_ROLES
    list_display = ["contract_link", "kind", "risk", "priority", "age", "due", "claimed", "status"]
    list_display_links = None
    list_filter = [QueueViewFilter, TimeFilter, "kind"]
    search_fields = ["contract__title"]
    ordering = ["-risk_score", "created_at"]
    actions = ["approve_selected", "reject_selected"]
    list_per_page = 50
    change_list_template = "admin/reviews/reviewtask/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("contract", "tenant", "claimed_by", "decided_by")

    # --- Columns ---

    @admin.display(description="contract", ordering="contract__title")
    def contract_link(self, obj: ReviewTask) -> SafeString:
        url = reverse("admin:reviews_reviewtask_change", args=[obj.pk])
        return format_html('<a href="{}" class="hitl-task" data-task-id="{}">{}</a>', url, obj.pk, obj.contract.title)

    @admin.display(description="risk", ordering="-risk_score")
    def risk(self, obj: ReviewTask) -> SafeString:
        return risk_badge(obj)

    @admin.display(description="waiting", ordering="created_at")
    def age(self, obj: ReviewTask) -> str:
        return timesince(obj.created_at, depth=1)

    @admin.display(description="priority", ordering="-priority")
    def priority(self, obj: ReviewTask) -> int:
        return obj.priority

    @admin.display(description="due", ordering="due_at")
    def due(self, obj: ReviewTask) -> SafeString | str:
        marks = format_html_join("", ' <span class="hitl-mark">{}</span>',
                                 [(label,) for label, when in (("escalated", obj.escalated_at), ("expired", obj.expired_at))
                                  if when])
        status = task_due_status(obj, now=timezone.now())
        if status is None or obj.due_at is None:
            return marks or "-"
        if status == "overdue":
            return format_html('<span class="hitl-overdue">overdue {}</span>{}', timesince(obj.due_at, depth=1), marks)
        if status in ("on_time", "due_soon"):
            css = "hitl-due-soon" if status == "due_soon" else "hitl-due"
            return format_html('<span class="{}">in {}</span>{}', css, timeuntil(obj.due_at, depth=1), marks)
        return format_html("{}{}", DUE_LABELS[status], marks)

    @admin.display(description="claimed by")
    def claimed(self, obj: ReviewTask) -> str:
        return live_claim_holder(obj) or "-"

    def changelist_view(self, request, extra_context=None):
        extra_context = {"title": "Review queue", **(extra_context or {}), "hitl_tenants": _followed_tenants(request)}
        return super().changelist_view(request, extra_context)

    # --- Permissions ---

    def _may_resume(self, request, obj) -> bool:
        membership = membership_get(tenant=obj.tenant, user=request.user)
        return obj.status == ReviewStatus.PENDING and review_task_can_resume(task=obj, user=request.user,
                                                                             membership=membership)

    def has_change_permission(self, request, obj=None):
        # Superusers too go through the object permission: the service checks it anyway.
        if obj is None:
            return bool(tenant_ids_for(request, PEOPLE_ROLES)) or request.user.is_superuser
        return self._may_resume(request, obj)

    def has_add_permission(self, request):
        return False  # tasks come from interrupts only

    def has_delete_permission(self, request, obj=None):
        return False  # a task is closed by a decision or a cancel, never deleted

    def log_change(self, request, obj, message):
        return None  # our own audit trail records decisions

    # --- The task page ---

    def change_view(self, request, object_id, form_url="", extra_context=None):
        task = self.get_object(request, unquote(object_id))
        if task is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, task):
            raise PermissionDenied
        typed: dict[str, Any] = {"comment": "", "amendments": [], "note": ""}
        if request.method == "POST":
            response, typed = self._task_page_post(request, task)
            if response is not None:
                return response
            task = self.get_object(request, unquote(object_id))
        return TemplateResponse(request, "admin/reviews/reviewtask/decide.html",
                                {**self.admin_site.each_context(request), **self._task_page_context(request, task, typed),
                                 **(extra_context or {})})

    def _task_page_post(self, request, task: ReviewTask) -> tuple[HttpResponse | None, dict[str, Any]]:
        """Claim, release or decide. Success redirects; a refusal re-renders the page with
        one message and with what was typed."""
        amendments = [text.strip() for text in request.POST.getlist("amendments") if text.strip()]
        typed = {"comment": request.POST.get("comment", ""), "amendments": amendments,
                 "note": request.POST.get("note", "")}
        action = request.POST.get("action") or ("decide" if "decision" in request.POST else "")
        try:
            if action == "comment":
                review_comment_add(tenant=task.tenant, task_id=task.pk, user=request.user, body=typed["note"],
                                   via="admin")
                messages.success(request, "Comment added.")
                return HttpResponseRedirect(request.path), typed
            if action == "reassign":
                assignee = request.POST.get("assignee", "")
                review_task_reassign(tenant=task.tenant, task_id=task.pk, actor=request.user, username=assignee,
                                     via="admin")
                messages.success(request, f"Reassigned to {assignee}: it is theirs to decide, claimed in their name.")
                return HttpResponseRedirect(request.path), typed
            if action == "claim":
                review_task_claim(tenant=task.tenant, task_id=task.pk, user=request.user, via="admin")
                messages.success(request, "Claimed: the task is yours for now; others see it as claimed.")
                return HttpResponseRedirect(request.path), typed
            if action == "release":
                review_task_release(tenant=task.tenant, task_id=task.pk, user=request.user, via="admin")
                messages.success(request, "Released: the task is back in the queue.")
                return HttpResponseRedirect(request.path), typed
            if action != "decide":
                messages.error(request, "Choose Approve, Reject or Amend.")
                return None, typed
            if not self._may_resume(request, task) and task.status == ReviewStatus.PENDING:
                raise PermissionDenied
            decision = request.POST.get("decision", "")
            data: dict[str, Any] = {"decision": decision, "comment": typed["comment"]}
            if decision == "amend":  # amendments typed before choosing Approve are not sent
                data["amendments"] = amendments
            review_task_resume(tenant=task.tenant, task_id=task.pk, user=request.user, data=data, via="admin")
        except ApplicationError as exc:
            messages.error(request, _refusal_text(exc))
            return None, typed
        past = {"approve": "Approved", "reject": "Rejected", "amend": "Amended"}.get(decision, "Decided")
        messages.success(request, f"{past}: {task.contract.title} ({task.get_kind_display()}). "
                                  "The run resumes in the background.")
        return HttpResponseRedirect(reverse("admin:reviews_reviewtask_changelist")), typed

    def _task_page_context(self, request, task: ReviewTask, typed: dict[str, Any]) -> dict[str, Any]:
        contract = task.contract
        membership = membership_get(tenant=task.tenant, user=request.user)
        may_decide = self._may_resume(request, task)
        holder = live_claim_holder(task)
        findings = list(contract.findings or task.payload.get("findings") or [])
        options = task.payload.get("options") or ["approve", "reject"]
        others = (ReviewTask.objects.filter(tenant_id=task.tenant_id, contract_id=task.contract_id)
                  .exclude(pk=task.pk).select_related("decided_by", "claimed_by", "tenant").order_by("created_at"))
        now = timezone.now()
        due_status = task_due_status(task, now=now)
        reassign_choices = []
        if task.status == ReviewStatus.PENDING and membership is not None and membership.role == Role.ADMIN:
            reassign_choices = [
                {"username": m.user.get_username(), "role": m.get_role_display(),
                 "problem": review_task_assignee_problem(task=task, membership=m)}
                for m in membership_list(tenant=task.tenant).select_related("tenant")
            ]
        return {
            "title": contract.title,
            "opts": self.opts,
            "task": task,
            "due_status": due_status,
            "due_label": DUE_LABELS.get(due_status or "", ""),
            "timers": [
                {"label": "Reminder", "planned": task.remind_at, "fired": task.reminded_at},
                {"label": "Due", "planned": task.due_at, "fired": task.decided_at},
                {"label": "Escalation", "planned": task.escalate_at, "fired": task.escalated_at},
                {"label": "Expiry", "planned": task.expire_at, "fired": task.expired_at},
            ],
            "comments": list(review_comment_list(task=task)),
            "may_comment": may_decide,
            "reassign_choices": reassign_choices,
            "contract": contract,
            "risk": risk_badge(task),
            "risk_level": review_task_risk_level(task=task),
            "recommendation": task.payload.get("recommendation", ""),
            "findings": [{"n": i + 1, **finding} for i, finding in enumerate(findings)],
            "payments": task.payload.get("payments") or [],
            "highlighted_text": highlighted(contract.text, findings),
            "history": contract.decision_history or [],
            "first_signature": review_task_first_signature(task=task),
            "other_tasks": [(other, risk_badge(other)) for other in others],
            "holder": holder,
            "claimed_by_me": holder == request.user.get_username(),
            "may_decide": may_decide,
            "may_release": bool(holder) and (holder == request.user.get_username()
                                             or (membership is not None and membership.role == Role.ADMIN)),
            "options": options,
            "typed": typed,
            "amendment_rows": typed["amendments"] or [""],
            "tenant_slug": task.tenant.slug,
            "queue_url": reverse("admin:reviews_reviewtask_changelist"),
            "has_view_permission": True,
        }

    # --- Bulk decisions, through a confirmation page ---

    def get_actions(self, request):
        actions = super().get_actions(request)
        # The stock bulk delete would skip every rule above.
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Approve selected tasks…")
    def approve_selected(self, request, queryset):
        return self._decide_selected(request, queryset, "approve")

    @admin.action(description="Reject selected tasks…")
    def reject_selected(self, request, queryset):
        return self._decide_selected(request, queryset, "reject")

    def _decide_selected(self, request, queryset, decision: str):
        rows = []
        for task in queryset.select_related("contract", "tenant"):
            refusal = review_task_bulk_refusal(task=task)
            if refusal is None and not self._may_resume(request, task):
                refusal = "not yours to decide now" if task.status == ReviewStatus.PENDING else f"already {task.status}"
            rows.append({"task": task, "risk": risk_badge(task), "refusal": refusal})
        form = BulkConfirmForm(request.POST if request.POST.get("post") == "yes" else None)
        if request.POST.get("post") != "yes" or not form.is_valid():
            return TemplateResponse(request, "admin/reviews/reviewtask/bulk_confirm.html", {
                **self.admin_site.each_context(request),
                "title": f"{decision.title()} {sum(1 for r in rows if not r['refusal'])} review task(s)?",
                "opts": self.opts, "rows": rows, "decision": decision, "form": form,
                "action": f"{decision}_selected", "eligible": [r for r in rows if not r["refusal"]],
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            })
        done, refused = 0, []
        for row in rows:
            task = row["task"]
            if row["refusal"]:
                refused.append(f"{task.contract.title} ({task.get_kind_display()}): skipped, {row['refusal']}.")
                continue
            try:
                review_task_resume(tenant=task.tenant, task_id=task.pk, user=request.user, via="admin",
                                   data={"decision": decision, "comment": form.cleaned_data["comment"]})
                done += 1
            except ApplicationError as exc:
                refused.append(f"{task.contract.title} ({task.get_kind_display()}): {_refusal_text(exc)}")
        if done:
            messages.success(request, f"{decision.title()}d {done} task(s); their runs resume in the background.")
        for line in refused:
            messages.warning(request, line)
        return None


def _refusal_text(exc: ApplicationError) -> str:
    """One sentence a reviewer can act on, whatever the refusal."""
    if getattr(exc, "extra", {}).get("reason") == "four_eyes":
        return ("Four eyes: you gave the legal approval of this contract, so the sign-off must come from "
                "another reviewer.")
    message = exc.message
    for field, problems in (exc.fields or {}).items():
        if field == "amendments" and problems and "at least one" in problems[0]:
            return "Amend needs at least one amendment: write what should change."
        if problems and field not in message:
            message = f"{message} ({field}: {problems[0]})"
    return message


def finding_span(text: str, finding: dict) -> tuple[int, int] | None:
    """Where a finding sits in the text: `start`..`end` when the finding carries both.
    Without `end`: the excerpt (the sentence around the match, whitespace folded) found
    in the text around `start`, or else `start` plus the excerpt's length."""
    start, end = finding.get("start"), finding.get("end")
    if not isinstance(start, int) or not 0 <= start < len(text):
        return None  # a missing clause (start -1) has nothing to mark
    if isinstance(end, int) and end > start:
        return start, min(end, len(text))
    excerpt = finding.get("excerpt") or ""
    words = excerpt.split()
    if words:
        sentence = re.compile(r"\s+".join(re.escape(word) for word in words))
        for match in sentence.finditer(text, max(0, start - len(excerpt) - 100)):
            if match.start() <= start < match.end():
                return match.span()
            if match.start() > start:
                break
    return start, min(start + max(len(excerpt), 1), len(text))


def highlighted(text: str, findings: list[dict]) -> SafeString:
    """The contract text, escaped, with each finding's span marked (finding_span).
    Overlapping findings split the text into segments marked with all of them."""
    spans = []
    for number, finding in enumerate(findings, start=1):
        span = finding_span(text, finding)
        if span is not None:
            spans.append((*span, number))
    bounds = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    parts = []
    for left, right in zip(bounds, bounds[1:]):
        covering = [n for s, e, n in spans if s <= left and right <= e]
        chunk = escape(text[left:right])
        if covering:
            ids = " ".join(str(n) for n in covering)
            parts.append(f'<mark class="hitl-finding" data-findings="{ids}" title="finding {ids}">{chunk}</mark>')
        else:
            parts.append(str(chunk))
    return mark_safe("".join(parts))  # every piece of text above was escaped


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


# --- Grants (tenant admins) ---------------------------------------------------------------------


class TaskChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: ReviewTask) -> str:
        return f"{obj.contract.title} — {obj.get_kind_display()} review (risk {obj.risk_score:.2f})"


class ContractChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Contract) -> str:
        return f"{obj.title} ({obj.get_status_display().lower()})"


class TeamChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return team_label(obj)


def team_label(group) -> str:
    tenant_group = getattr(group, "tenant_group", None)
    if tenant_group is None:
        return group.name
    return f"{tenant_group.tenant.slug}: {tenant_group.get_team_display()}"


class _ResumeGrantAdmin(TenantScopedAdmin):
    """Grants are added or deleted, never edited; both go through the audited service.
    The picker offers pending tasks by contract title and kind (open contracts for a
    thread grant), and teams by readable name."""

    view_roles = add_roles = delete_roles = ADMIN_ROLES
    target_model: type = ReviewTask
    holder_field = "user"
    list_display = ["target", "holder", "tenant"]
    actions = ["delete_selected"]

    def get_fields(self, request, obj=None):
        return ["content_object", self.holder_field]

    def get_queryset(self, request):
        related = ["content_object", "tenant", self.holder_field]
        if self.target_model is ReviewTask:
            related.append("content_object__contract")
        if self.holder_field == "group":
            related.append("group__tenant_group__tenant")
        return super().get_queryset(request).select_related(*related)

    @admin.display(description="task or thread")
    def target(self, obj) -> str:
        target = obj.content_object
        if isinstance(target, ReviewTask):
            return f"{target.contract.title} — {target.get_kind_display()} review"
        return f"{target.title} (every task of the thread)"

    @admin.display(description="granted to")
    def holder(self, obj) -> str:
        if self.holder_field == "group":
            return team_label(obj.group)
        return obj.user.get_username()

    def has_change_permission(self, request, obj=None):
        return False

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        tenants = None if request.user.is_superuser else tenant_ids_for(request, ADMIN_ROLES)
        if db_field.name == "content_object":
            if self.target_model is ReviewTask:
                targets = ReviewTask.objects.filter(status=ReviewStatus.PENDING).select_related("contract")
                targets = targets.order_by("contract__title", "kind")
                kwargs["form_class"] = TaskChoiceField
                kwargs["label"] = "Task (pending)"
            else:
                targets = Contract.objects.exclude(status__in=FINAL_STATUSES).order_by("title")
                kwargs["form_class"] = ContractChoiceField
                kwargs["label"] = "Contract (every task of its thread)"
            kwargs["queryset"] = targets if tenants is None else targets.filter(tenant_id__in=tenants)
        elif db_field.name == "user" and tenants is not None:
            kwargs["queryset"] = scoped_users(request, ADMIN_ROLES)
        elif db_field.name == "group":
            groups = scoped_groups(request, ADMIN_ROLES).select_related("tenant_group__tenant")
            kwargs["queryset"] = groups.order_by("tenant_group__tenant__slug", "tenant_group__team")
            kwargs["form_class"] = TeamChoiceField
            kwargs["label"] = "Team"
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
                if holder_field == "user":
                    refusal = resume_grant_refusal(tenant=target.tenant, user=holder, target=target)
                    if refusal:
                        self.add_error("user", f"{refusal}.")
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


@admin.register(ContractUserPermission)
class ThreadUserGrantAdmin(_ResumeGrantAdmin):
    target_model = Contract


@admin.register(ContractGroupPermission)
class ThreadGroupGrantAdmin(_ResumeGrantAdmin):
    target_model = Contract
    holder_field = "group"


# The queue's time rules, webhooks and comments.
from reviews import admin_extras  # noqa: E402,F401
