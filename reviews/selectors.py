from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Case, CharField, Exists, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.lookups import IsNull
from django.utils import timezone

from config.api_errors import Conflict, Forbidden, NotFound
from config.compiled_sql import (
    CompiledFilter,
    CompiledQuery,
    placeholder_datetime,
    placeholder_int,
    placeholder_ints,
    placeholder_uuid,
)
from contracts.models import (
    FINAL_STATUSES,
    RESUME_THREAD_PERM,
    Contract,
    ContractGroupPermission,
    ContractUserPermission,
)
from reviews.models import (
    RESUME_TASK_PERM,
    ReviewKind,
    ReviewComment,
    ReviewStatus,
    ReviewTask,
    ReviewTaskGroupPermission,
    ReviewTaskUserPermission,
    WebhookDelivery,
    WebhookEndpoint,
)
from tenants.models import DECIDING_ROLES, Membership, Role, Tenant, TenantGroup


_FINAL_CONTRACT_STATUSES = [str(status) for status in FINAL_STATUSES]

QUEUE_ORDERINGS = {
    "risk": ["-risk_score", "created_at"],
    "-risk": ["risk_score", "-created_at"],
    "age": ["created_at"],
    "-age": ["-created_at"],
    "deadline": ["due_at", "created_at"],
    "-deadline": ["-due_at", "-created_at"],
    # reviews.policies.task_priority: risk, raised as the due date nears and on escalation.
    "priority": ["-priority", "due_at", "created_at"],
    "-priority": ["priority", "-due_at", "-created_at"],
}


def review_task_list(
    *,
    tenant: Tenant,
    user: AbstractBaseUser | None = None,
    membership: Membership | None = None,
    status: str | None = None,
    kind: str | None = None,
    risk_min: float | None = None,
    risk_max: float | None = None,
    assignee: str | None = None,
    contract: UUID | None = None,
    created_after=None,
    created_before=None,
    updated_after=None,
    updated_before=None,
    due_after=None,
    due_before=None,
    overdue: bool | None = None,
    escalated: bool | None = None,
    actionable: bool = False,
    now=None,
) -> QuerySet[ReviewTask]:
    """The tenant's review queue, filtered. `assignee` is "me", "none" (unclaimed or
    claim expired) or a username; an expired claim counts as no claim at all.
    `overdue`: pending and past its due date (False: everything else)."""
    tasks = (
        ReviewTask.objects.filter(tenant=tenant)
        .select_related("contract", "claimed_by", "decided_by")
        # The list shows the contract's title only; its text and JSON are the bulk of the row.
        .defer("contract__text", "contract__findings", "contract__payments", "contract__decision_history",
               "contract__amended_text", "contract__amendments", "contract__analysis", "contract__thread_metadata")
    )
    if status:
        tasks = tasks.filter(status=status)
    if kind:
        tasks = tasks.filter(kind=kind)
    if risk_min is not None:
        tasks = tasks.filter(risk_score__gte=risk_min)
    if risk_max is not None:
        tasks = tasks.filter(risk_score__lte=risk_max)
    if contract is not None:
        tasks = tasks.filter(contract_id=contract)
    if created_after is not None:
        tasks = tasks.filter(created_at__gte=created_after)
    if created_before is not None:
        tasks = tasks.filter(created_at__lt=created_before)
    if updated_after is not None:
        tasks = tasks.filter(updated_at__gte=updated_after)
    if updated_before is not None:
        tasks = tasks.filter(updated_at__lt=updated_before)
    if due_after is not None:
        tasks = tasks.filter(due_at__gte=due_after)
    if due_before is not None:
        tasks = tasks.filter(due_at__lt=due_before)
    if overdue is not None:
        late = review_task_overdue_q(now=now or timezone.now())
        tasks = tasks.filter(late) if overdue else tasks.exclude(late)
    if escalated is not None:
        tasks = tasks.filter(escalated_at__isnull=not escalated)
    if assignee:
        now = now or timezone.now()
        live = Q(claimed_by__isnull=False, claim_expires_at__gt=now)
        if assignee == "none":
            tasks = tasks.exclude(live)
        else:
            holder = Q(claimed_by=user) if assignee == "me" else Q(claimed_by__username=assignee)
            tasks = tasks.filter(live & holder)
    if actionable and user is not None and membership is not None:
        tasks = tasks & review_task_decidable_now_list(tenant=tenant, user=user, membership=membership, now=now)
    return tasks


@dataclass(frozen=True)
class UnappliedDecision:
    task_id: UUID
    interrupt_id: str
    decision: dict


# Read at every pass of every drive, twice: compiled once (config.compiled_sql). In
# the order they were decided: the queue's order (risk, age) would lead the planner to
# the queue's index and through every resolved task of the tenant.
_UNAPPLIED = CompiledQuery(
    lambda tenant_id, contract_id: ReviewTask.objects.filter(
        tenant_id=tenant_id, contract_id=contract_id, status=ReviewStatus.RESOLVED, applied_at__isnull=True
    ).order_by("decided_at").values_list("pk", "interrupt_id", "decision"),
    tenant_id=placeholder_uuid(11), contract_id=placeholder_uuid(12),
)


def review_decisions_unapplied(*, tenant_id: UUID, contract_id: UUID) -> list[UnappliedDecision]:
    """Decisions recorded on the contract's tasks that the graph has not consumed yet:
    what the drive's next pass must answer."""
    rows = _UNAPPLIED.fetch(tenant_id=tenant_id, contract_id=contract_id)
    return [UnappliedDecision(task_id=pk, interrupt_id=iid, decision=decision) for pk, iid, decision in rows]


def review_decisions_unapplied_contracts(*, decided_before) -> QuerySet:
    """Ids of contracts, of every tenant, holding a decision recorded before
    `decided_before` that the graph has not consumed: recovery's view (it re-drives
    them). Served by a partial index that holds only such tasks."""
    return ReviewTask.objects.filter(
        status=ReviewStatus.RESOLVED, applied_at__isnull=True, decided_at__lt=decided_before
    ).values("contract_id")


def review_task_overdue_q(*, now) -> Q:
    """Pending and past its due date: what "overdue" means in the API and the admin."""
    return Q(status=ReviewStatus.PENDING, due_at__lt=now)


def review_task_get(*, tenant: Tenant, task_id: UUID | str) -> ReviewTask:
    task = ReviewTask.objects.filter(tenant=tenant, pk=task_id).select_related("contract").first()
    if task is None:
        raise NotFound()
    return task


def _exists(queryset: QuerySet) -> Q:
    """EXISTS written as "(SELECT pk ... LIMIT 1) IS NOT NULL": PostgreSQL plans an OR of
    plain EXISTS as hashed subplans over every grant the tenant ever had, and this as a
    per-row index probe (measured at 1M tasks: 253 ms -> ~1 ms for a filtered page).
    Unordered: the model's default ordering would sort the matches to keep one."""
    return Q(IsNull(Subquery(queryset.order_by().values("pk")[:1]), False))


def _resume_permission_filter(*, tenant_id: UUID, user_id: int, group_ids: list[int] | None = None) -> Q:
    """Tasks the user may resume through a guardian grant: on the task or on its whole
    thread, to the user or to one of their groups in this tenant. Built from subqueries
    on the direct foreign-key permission tables, each scoped by tenant; never guardian's
    model-level fallback, which would cross tenants.

    `group_ids`: the user's groups in this tenant (_team_group_ids), for a filter over
    many tasks. Without them the groups are a nested subquery, which PostgreSQL joins
    anew for every task it probes: three more joins per row, most of the sparse
    actionable page's buffers at 1M tasks. For one task (the resume's check) it is the
    cheaper form: one statement, compiled once."""
    groups = (Group.objects.filter(user=user_id, tenant_group__tenant_id=tenant_id).values("pk")
              if group_ids is None else group_ids)
    any_groups = group_ids is None or bool(group_ids)  # no team: no team grant to look for
    grants = _exists(ReviewTaskUserPermission.objects.filter(
        tenant_id=tenant_id, content_object=OuterRef("pk"), user_id=user_id, permission__codename=RESUME_TASK_PERM))
    if any_groups:
        grants |= _exists(ReviewTaskGroupPermission.objects.filter(
            tenant_id=tenant_id, content_object=OuterRef("pk"), group__in=groups, permission__codename=RESUME_TASK_PERM))
    grants |= _exists(ContractUserPermission.objects.filter(
        tenant_id=tenant_id, content_object=OuterRef("contract_id"), user_id=user_id,
        permission__codename=RESUME_THREAD_PERM))
    if any_groups:
        grants |= _exists(ContractGroupPermission.objects.filter(
            tenant_id=tenant_id, content_object=OuterRef("contract_id"), group__in=groups,
            permission__codename=RESUME_THREAD_PERM))
    return grants


def _team_group_ids(*, tenant_id: UUID, user_id: int) -> list[int]:
    """The auth groups of the user's teams in this tenant."""
    return list(TenantGroup.objects.filter(tenant_id=tenant_id, group__user=user_id).values_list("group_id", flat=True))


# The one-task form of the same rule, compiled once (config.compiled_sql): it runs on
# every resume, claim and comment.
_TASK_RESUMABLE = CompiledQuery(
    lambda tenant_id, user_id, task_id: ReviewTask.objects.filter(tenant_id=tenant_id, pk=task_id)
    .filter(_resume_permission_filter(tenant_id=tenant_id, user_id=user_id)).values("pk")[:1],
    tenant_id=placeholder_uuid(1), user_id=placeholder_int(1), task_id=placeholder_uuid(2),
)


# The rule's list form, rendered once per database and per number of teams
# (config.compiled_sql): Django took longer to build and compile its four subqueries
# than PostgreSQL took to run them, about 4 ms of every actionable page.
_RESUMABLE_BY_GRANT = CompiledFilter(
    ReviewTask, lambda tenant_id, user_id, group_ids: _resume_permission_filter(
        tenant_id=tenant_id, user_id=user_id, group_ids=group_ids),
    tenant_id=placeholder_uuid(21), user_id=placeholder_int(21), group_ids=placeholder_ints(21),
)


def review_task_actionable_list(*, tenant: Tenant, user: AbstractBaseUser, membership: Membership) -> QuerySet[ReviewTask]:
    """The tasks this member may resume. Tenant admins may resume any task of their
    tenant; viewers and agents none; reviewers those granted to them or their teams."""
    tasks = ReviewTask.objects.filter(tenant=tenant)
    if membership.role == Role.ADMIN:
        return tasks
    if membership.role not in DECIDING_ROLES:
        return tasks.none()
    group_ids = _team_group_ids(tenant_id=tenant.pk, user_id=user.pk)
    return tasks.filter(_RESUMABLE_BY_GRANT.q(tenant_id=tenant.pk, user_id=user.pk, group_ids=group_ids))


def _decidable_now(*, user_id: int, now) -> Q:
    """Pending, not under someone else's live claim, and no sign-off of a contract whose
    legal approval the user gave (four eyes)."""
    others_claim = Q(claimed_by__isnull=False, claim_expires_at__gt=now) & ~Q(claimed_by_id=user_id)
    return Q(status=ReviewStatus.PENDING) & ~others_claim & ~_four_eyes_blocked(user_id)


_DECIDABLE_NOW = CompiledFilter(
    ReviewTask, lambda user_id, now: _decidable_now(user_id=user_id, now=now),
    user_id=placeholder_int(22), now=placeholder_datetime(22),
)


def review_task_decidable_now_list(
    *, tenant: Tenant, user: AbstractBaseUser, membership: Membership, now=None
) -> QuerySet[ReviewTask]:
    """The tasks this member could decide right now, as the resume would accept them:
    theirs to resume (review_task_actionable_list) and decidable now (_decidable_now).
    What `?actionable=true` and the reviewer's queue in the admin show."""
    return review_task_actionable_list(tenant=tenant, user=user, membership=membership).filter(
        _DECIDABLE_NOW.q(user_id=user.pk, now=now or timezone.now())
    )


def _four_eyes_blocked(user_id: int) -> Q:
    """The four-eyes rule: a sign-off of a contract whose legal approval the user gave."""
    first_signature = ReviewTask.objects.filter(
        tenant_id=OuterRef("tenant_id"), contract_id=OuterRef("contract_id"), kind=ReviewKind.LEGAL,
        status=ReviewStatus.RESOLVED, decided_by_id=user_id,
    )
    return Q(kind=ReviewKind.SIGNOFF) & _exists(first_signature)


def review_task_four_eyes_blocks(*, task: ReviewTask, user: AbstractBaseUser) -> bool:
    """Whether the four-eyes rule keeps `user` from deciding `task` (the resume's check)."""
    return ReviewTask.objects.filter(tenant_id=task.tenant_id, pk=task.pk).filter(_four_eyes_blocked(user.pk)).exists()


def review_task_can_resume(*, task: ReviewTask, user: AbstractBaseUser, membership: Membership | None) -> bool:
    """review_task_actionable_list, for one task."""
    if membership is None or membership.tenant_id != task.tenant_id or membership.user_id != user.pk:
        return False
    if membership.role == Role.ADMIN:
        return True
    if membership.role not in DECIDING_ROLES:
        return False
    return bool(_TASK_RESUMABLE.fetch(tenant_id=task.tenant_id, user_id=user.pk, task_id=task.pk))


# Per target model: its user grants, its team grants, the permission they carry.
GRANT_MODELS = {
    ReviewTask: (ReviewTaskUserPermission, ReviewTaskGroupPermission, RESUME_TASK_PERM),
    Contract: (ContractUserPermission, ContractGroupPermission, RESUME_THREAD_PERM),
}


def resume_grants_get(*, tenant: Tenant, target) -> dict[str, list[str]]:
    """Who holds the resume permission on one task or one thread (Contract) directly."""
    user_model, group_model, _ = GRANT_MODELS[type(target)]
    users = user_model.objects.filter(tenant=tenant, content_object=target).values_list("user__username", flat=True)
    teams = group_model.objects.filter(tenant=tenant, content_object=target).values_list(
        "group__tenant_group__team", flat=True
    )
    return {"users": sorted(users), "teams": sorted(t for t in teams if t)}


def review_task_history(*, task: ReviewTask) -> list[dict]:
    """Everything that happened to the task, oldest first, from the audit trail."""
    from tenants.models import AuditRecord

    records = AuditRecord.objects.filter(tenant_id=task.tenant_id, target_type="reviewtask", target_id=str(task.pk)).order_by("created_at", "id")
    return [
        {"at": r.created_at.isoformat(), "actor": r.actor_username, "action": r.action, "interface": r.interface, "data": r.data}
        for r in records
    ]


# --- A thread's interrupts, as the LangGraph-compatible API shows them -----------------

# The order in which a thread's interrupts are listed (and a bare answer is matched):
# the graph's own order of reviews (legal and finance fan out in one step, the sign-off
# follows), then age, then interrupt id. The same rows give the same order every time.
_KIND_RANK = Case(
    When(kind=ReviewKind.LEGAL, then=Value(0)),
    When(kind=ReviewKind.FINANCE, then=Value(1)),
    When(kind=ReviewKind.SIGNOFF, then=Value(2)),
    default=Value(3),
)
THREAD_INTERRUPT_ORDER = ["_kind_rank", "created_at", "interrupt_id"]


def review_tasks_pending_for_threads(*, tenant: Tenant, contract_ids: list[UUID]) -> dict[UUID, list[ReviewTask]]:
    """The pending tasks of each of these threads, in THREAD_INTERRUPT_ORDER: what each
    thread is waiting on a human for. One query for a page of threads."""
    tasks = (
        ReviewTask.objects.filter(tenant=tenant, contract_id__in=contract_ids, status=ReviewStatus.PENDING)
        .annotate(_kind_rank=_KIND_RANK)
        .order_by(*THREAD_INTERRUPT_ORDER)
    )
    by_thread: dict[UUID, list[ReviewTask]] = {contract_id: [] for contract_id in contract_ids}
    for task in tasks:
        by_thread.setdefault(task.contract_id, []).append(task)
    return by_thread


def review_tasks_pending_for_thread(*, tenant: Tenant, contract_id: UUID) -> list[ReviewTask]:
    return review_tasks_pending_for_threads(tenant=tenant, contract_ids=[contract_id])[contract_id]


def review_tasks_of_thread(*, tenant: Tenant, contract_id: UUID) -> list[ReviewTask]:
    """Every task of the thread, pending or not (resolving interrupt ids a client sends)."""
    return list(ReviewTask.objects.filter(tenant=tenant, contract_id=contract_id).select_related("contract"))


def review_tasks_get_many(*, tenant: Tenant, task_ids: list[UUID | str]) -> list[ReviewTask]:
    return list(ReviewTask.objects.filter(tenant=tenant, pk__in=task_ids))


def review_task_for_bare_answer(
    *, tenant: Tenant, contract_id: UUID, user: AbstractBaseUser, membership: Membership | None
) -> ReviewTask:
    """The one pending interrupt of the thread that a bare answer (a resume value not
    keyed by interrupt id) can mean: the only one the caller may decide. Nothing
    pending, or several the caller may decide, is a Conflict listing the pending ids (the
    client answers by id then); pending ones of which none is the caller's, Forbidden."""
    pending = review_tasks_pending_for_thread(tenant=tenant, contract_id=contract_id)
    pending_ids = [task.interrupt_id for task in pending]
    if not pending:
        raise Conflict("The thread has no pending interrupt to answer.",
                       extra={"reason": "no_pending_interrupt", "pending_ids": []})
    mine = [task for task in pending if review_task_can_resume(task=task, user=user, membership=membership)]
    if not mine:
        raise Forbidden("You may not decide any interrupt pending on this thread.", extra={"pending_ids": pending_ids})
    if len(mine) > 1:
        raise Conflict(
            "Several pending interrupts are yours to decide: answer them by id, {\"<interrupt id>\": <answer>}.",
            extra={"reason": "ambiguous", "pending_ids": pending_ids},
        )
    return mine[0]


def review_tasks_pending_exist(*, contract_ref: OuterRef) -> Exists:
    """True for a thread (contract) that has a task waiting for a human."""
    return Exists(ReviewTask.objects.filter(
        tenant_id=OuterRef("tenant_id"), contract_id=contract_ref, status=ReviewStatus.PENDING))


def review_decisions_unapplied_exist(*, contract_ref: OuterRef) -> Exists:
    """True for a thread (contract) holding a decision the graph has not consumed yet:
    a resume is queued or running."""
    return Exists(ReviewTask.objects.filter(
        tenant_id=OuterRef("tenant_id"), contract_id=contract_ref, status=ReviewStatus.RESOLVED, applied_at__isnull=True))


# --- Review tasks as threads of their own (the Agent Inbox prefix) ---------------------

def review_task_thread_status() -> Case:
    """The status of a review task shown as a thread of its own: `interrupted` while it
    waits for a decision (whatever its contract's other tasks are doing: each is
    answerable on its own), `busy` from its decision until the graph has consumed it,
    `error` if its contract failed before that, else `idle`."""
    unapplied = Q(status=ReviewStatus.RESOLVED, applied_at__isnull=True)
    return Case(
        When(status=ReviewStatus.PENDING, then=Value("interrupted")),
        When(unapplied & Q(contract__status="failed"), then=Value("error")),
        When(unapplied & ~Q(contract__status__in=_FINAL_CONTRACT_STATUSES), then=Value("busy")),
        default=Value("idle"),
        output_field=CharField(),
    )


def review_task_thread_list(
    *, tenant: Tenant, user: AbstractBaseUser, membership: Membership, status: str | None = None,
    kind: str | None = None, contract_id: UUID | None = None,
) -> QuerySet[ReviewTask]:
    """The caller's inbox, newest first, each task with its `thread_status`: the tasks
    they may resume (review_task_actionable_list), of which those still pending only if
    they could decide them right now (review_task_decidable_now_list: not under
    another's claim, four eyes), as the reviewer's queue shows them."""
    decidable = review_task_decidable_now_list(tenant=tenant, user=user, membership=membership)
    tasks = (
        review_task_actionable_list(tenant=tenant, user=user, membership=membership)
        .exclude(Q(status=ReviewStatus.PENDING) & ~Q(pk__in=decidable.values("pk")))
        .select_related("contract", "decided_by", "claimed_by")
        .annotate(thread_status=review_task_thread_status())
        .order_by("-created_at", "-pk")
    )
    if status:
        tasks = tasks.filter(thread_status=status)
    if kind:
        tasks = tasks.filter(kind=kind)
    if contract_id is not None:
        tasks = tasks.filter(contract_id=contract_id)
    return tasks


def review_task_thread_get(*, tenant: Tenant, task_id: UUID | str) -> ReviewTask:
    """One task as a thread, for any member who may see the review queue."""
    task = (
        ReviewTask.objects.filter(tenant=tenant, pk=task_id)
        .select_related("contract", "decided_by", "claimed_by")
        .annotate(thread_status=review_task_thread_status())
        .first()
    )
    if task is None:
        raise NotFound()
    return task


# --- What the reviewer's workspace shows and allows ---------------------------------------


def review_task_risk_level(*, task: ReviewTask) -> str:
    """"critical" at or above the tenant's critical risk (the graph then asks for an
    independent sign-off), "high" above its review threshold, "normal" below it (a task
    that is there for a payment alone)."""
    tenant = task.tenant
    if task.risk_score >= tenant.critical_risk:
        return "critical"
    if task.risk_score > tenant.risk_threshold:
        return "high"
    return "normal"


def review_task_bulk_refusal(*, task: ReviewTask) -> str | None:
    """Why the task may not be decided in bulk (None: it may). A critical-risk contract
    and a four-eyes sign-off each need a person to look at that one task."""
    if task.kind == ReviewKind.SIGNOFF:
        return "a sign-off is never decided in bulk"
    if review_task_risk_level(task=task) == "critical":
        return "critical risk is never decided in bulk"
    return None


def resume_grant_refusal(*, tenant: Tenant, user: AbstractBaseUser, target: Any = None) -> str | None:
    """Why a resume grant to `user` (on `target`, when known) would be refused (None: it
    may be given): a member whose role never decides (a viewer, an agent) would hold a
    grant that does nothing, which reads as if they could act; a critical sign-off goes
    only to the tenant's sign-off role or an admin, as a reassign does."""
    membership = Membership.objects.select_related("tenant").filter(tenant=tenant, user=user).first()
    if membership is None:
        return "not a member of this tenant"
    if membership.role not in DECIDING_ROLES:
        return (f"{user.get_username()} is a {membership.get_role_display().lower()}: that role never decides "
                "review tasks, so the grant would do nothing; change the role first")
    if isinstance(target, ReviewTask):
        return signoff_role_refusal(task=target, membership=membership)
    return None


def signoff_role_refusal(*, task: ReviewTask, membership: Membership) -> str | None:
    """A critical sign-off is decided by the tenant's sign-off role or an admin, whoever
    is given it (a grant, a reassign)."""
    if task.kind == ReviewKind.SIGNOFF and membership.role not in {Role.ADMIN, membership.tenant.signoff_role}:
        return "a critical sign-off goes only to the tenant's sign-off role or an admin"
    return None


def review_task_first_signature(*, task: ReviewTask) -> ReviewTask | None:
    """For a sign-off: the legal approval it must come on top of (who gave it, when)."""
    if task.kind != ReviewKind.SIGNOFF:
        return None
    return (
        ReviewTask.objects.filter(tenant_id=task.tenant_id, contract_id=task.contract_id, kind=ReviewKind.LEGAL,
                                  status=ReviewStatus.RESOLVED)
        .select_related("decided_by").order_by("-decided_at").first()
    )
def review_comment_list(*, task: ReviewTask) -> QuerySet[ReviewComment]:
    """The task's comments, oldest first."""
    return ReviewComment.objects.filter(tenant_id=task.tenant_id, task=task).order_by("created_at", "id")


# --- Webhooks -----------------------------------------------------------------------


def webhook_endpoint_list(*, tenant: Tenant) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(tenant=tenant).order_by("created_at")


def webhook_endpoint_get(*, tenant: Tenant, endpoint_id: UUID | str) -> WebhookEndpoint:
    endpoint = webhook_endpoint_list(tenant=tenant).filter(pk=endpoint_id).select_related("tenant").first()
    if endpoint is None:
        raise NotFound()
    return endpoint


def webhook_delivery_list(*, endpoint: WebhookEndpoint, status: str | None = None) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries, newest first."""
    deliveries = WebhookDelivery.objects.filter(tenant_id=endpoint.tenant_id, endpoint=endpoint)
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries.order_by("-created_at", "-seq")


def webhook_delivery_get(*, endpoint: WebhookEndpoint, delivery_id: UUID | str) -> WebhookDelivery:
    delivery = webhook_delivery_list(endpoint=endpoint).filter(pk=delivery_id).select_related("tenant").first()
    if delivery is None:
        raise NotFound()
    return delivery
