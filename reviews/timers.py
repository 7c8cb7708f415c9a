"""The queue's clock: reminders, escalations and expiries, each a scheduler job
(contracts.scheduler) that fires every timer of every tenant exactly once.

A job finds the tasks whose time has come through a partial index that holds only the
pending tasks whose timer has not fired yet (ReviewTask.Meta.indexes), then handles
them one by one, each in its own short transaction that first locks the task's row and
re-checks it. Two schedulers racing (a change of leader) both find a task; the second
waits for the first's lock, then finds the timer fired (or the task decided) and moves
on. An expiry and a reviewer's decision lock the same row: whichever comes second sees
the other's outcome, so exactly one decision is recorded and reaches the graph.

Lock order, as everywhere a task changes: the task row, then (in event_emit) the
tenant's row for the event number.

Every timer follows the policy the task was created under (its `policy` copy; see
reviews.policies). The system acts with no user: audit records say `system`, decisions
have `decided_by` None and their reason in the comment. An expiry never approves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from reviews import events
from reviews.models import (
    RESUME_TASK_PERM,
    ExpiryAction,
    ReviewStatus,
    ReviewTask,
    ReviewTaskGroupPermission,
    ReviewTaskUserPermission,
)
from reviews.policies import task_priority
from reviews.selectors import review_task_can_resume
from reviews.services import review_decision_validate, review_task_decision_record
from tenants.models import AuditRecord, Tenant
from tenants.selectors import membership_get
from tenants.services import audit_record, tenant_group_get

SYSTEM = AuditRecord.Interface.SYSTEM


def _tenant_ids() -> list[UUID]:
    """Every tenant's id, so a scan asks `tenant_id IN (...)`: PostgreSQL then reads each
    tenant's slice of the (tenant, time) partial index up to `now`, instead of the whole
    index to filter on its second column."""
    return list(Tenant.objects.values_list("pk", flat=True))


def _due(timer: str, fired: str, *, now: datetime, batch_size: int) -> list[tuple[UUID, UUID]]:
    """(tenant id, task id) of pending tasks whose `timer` has come and not fired, oldest first."""
    condition = Q(status=ReviewStatus.PENDING, **{f"{timer}__isnull": False, f"{fired}__isnull": True,
                                                  f"{timer}__lte": now})
    return list(ReviewTask.objects.filter(condition, tenant_id__in=_tenant_ids()).order_by(timer)
                .values_list("tenant_id", "pk")[:batch_size])


def _locked(tenant_id: UUID, task_id: UUID, **unfired: Any) -> ReviewTask | None:
    """The task's row, locked until the caller's transaction ends, if it is still pending
    with the given timer unfired. The WHERE is evaluated again on the row a concurrent
    transaction committed, so the second of two racers gets None."""
    return (
        ReviewTask.objects.select_for_update(of=("self",), no_key=True)
        .select_related("tenant", "claimed_by")
        .filter(tenant_id=tenant_id, pk=task_id, status=ReviewStatus.PENDING, **unfired)
        .first()
    )


def _timing(task: ReviewTask) -> dict[str, Any]:
    return {
        "due_at": task.due_at.isoformat() if task.due_at else None,
        "priority": task.priority,
    }


# --- Reminders ----------------------------------------------------------------------


def review_reminders_send(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Announce (review.due_soon) every pending task whose reminder time has come, once,
    and raise its priority. Returns how many were sent."""
    now = now or timezone.now()
    sent = 0
    for tenant_id, task_id in _due("remind_at", "reminded_at", now=now, batch_size=batch_size):
        # One task, one short transaction: its row and the tenant's event number are
        # held only while this one task changes.
        with transaction.atomic():
            task = _locked(tenant_id, task_id, reminded_at__isnull=True)
            if task is None:
                continue  # decided meanwhile, or reminded by another scheduler
            task.reminded_at = now
            task.priority = task_priority(risk_score=task.risk_score, due_soon=True, escalated=task.escalated_at is not None)
            task.save(update_fields=["reminded_at", "priority", "updated_at"])
            audit_record(tenant=task.tenant, actor=None, action="review.due_soon", via=SYSTEM, target=task,
                         data=_timing(task))
            events.event_emit(tenant_id=tenant_id, type=events.REVIEW_DUE_SOON, task=task, extra=_timing(task))
            sent += 1
    return sent


# --- Escalations --------------------------------------------------------------------


def review_escalations_run(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Escalate every pending task whose escalation time has come, once. Returns how many."""
    now = now or timezone.now()
    escalated = 0
    for tenant_id, task_id in _due("escalate_at", "escalated_at", now=now, batch_size=batch_size):
        with transaction.atomic():  # one task at a time, as above
            task = _locked(tenant_id, task_id, escalated_at__isnull=True)
            if task is None:
                continue
            _escalate_locked(task, now=now, because="escalate_after")
            escalated += 1
    return escalated


def _escalate_locked(task: ReviewTask, *, now: datetime, because: str) -> None:
    """Re-route the task to its policy's escalation team through the same permission
    routing as a new task (a guardian grant to the team's group), inside the caller's
    transaction, which holds the task's row lock.

    Grants: with `escalation_keeps_grants` (the default) the task's existing grants stay
    and the escalation team is added; without it the task's own grants (its routed
    team's, personal ones) are removed first, so who may decide changes to the
    escalation team alone. Thread-wide grants (on the contract) and tenant admins are
    untouched either way: they were given for every task of the thread, or are not
    grants at all. A claim whose holder may no longer decide is dropped. The audit
    record lists every grant added and removed."""
    tenant = task.tenant
    policy = task.policy or {}
    team = policy.get("escalation_team") or ""
    keeps = policy.get("escalation_keeps_grants", True)
    permission = Permission.objects.get(content_type=ContentType.objects.get_for_model(ReviewTask), codename=RESUME_TASK_PERM)
    group = tenant_group_get(tenant=tenant, team=team) if team else None
    removed: dict[str, list[str]] = {"teams": [], "users": []}
    if not keeps:
        team_grants = ReviewTaskGroupPermission.objects.filter(tenant=tenant, content_object=task)
        if group is not None:
            team_grants = team_grants.exclude(group=group)
        removed["teams"] = sorted(t or "" for t in team_grants.values_list("group__tenant_group__team", flat=True))
        team_grants.delete()
        user_grants = ReviewTaskUserPermission.objects.filter(tenant=tenant, content_object=task)
        removed["users"] = sorted(user_grants.values_list("user__username", flat=True))
        user_grants.delete()
    added = False
    if group is not None:
        _, added = ReviewTaskGroupPermission.objects.get_or_create(
            tenant=tenant, content_object=task, group=group, permission=permission
        )
    claim_dropped = None
    if task.claimed_by_id is not None and task.claim_expires_at is not None and task.claim_expires_at > now:
        holder = task.claimed_by
        if not review_task_can_resume(task=task, user=holder, membership=membership_get(tenant=tenant, user=holder)):
            claim_dropped = holder.get_username()
            task.claimed_by, task.claim_expires_at = None, None
    task.escalated_at = now
    task.priority = task_priority(risk_score=task.risk_score, due_soon=task.reminded_at is not None, escalated=True)
    task.save(update_fields=["escalated_at", "priority", "claimed_by", "claim_expires_at", "updated_at"])
    audit_record(tenant=tenant, actor=None, action="review.escalated", via=SYSTEM, target=task, data={
        "because": because,
        "to_team": team or None,
        "team_grant_added": added,
        "kept_grants": keeps,
        "removed_grants": removed,
        "claim_dropped": claim_dropped,
    })
    events.event_emit(tenant_id=tenant.id, type=events.REVIEW_ESCALATED, task=task,
                      extra={**_timing(task), "escalated_to": team or "admins", "kept_grants": keeps})


# --- Expiries -----------------------------------------------------------------------


def review_expiries_run(*, now: datetime | None = None, batch_size: int = 200) -> int:
    """Expire every pending task whose expiry time has come, once, doing what its policy
    says: nothing more (the task stays open, marked expired), escalate it (if not yet
    escalated), or reject it with the recorded reason through the same decision path as
    a reviewer's. Returns how many expired."""
    now = now or timezone.now()
    expired = 0
    for tenant_id, task_id in _due("expire_at", "expired_at", now=now, batch_size=batch_size):
        if review_task_expire(tenant_id=tenant_id, task_id=task_id, now=now):
            expired += 1
    return expired


def review_task_expire(*, tenant_id: UUID, task_id: UUID, now: datetime) -> bool:
    """Expire one task if it is still pending and unexpired; False if a decision (or
    another scheduler) got there first. Under the task's row lock, so it is ordered
    against a reviewer's resume of the same task: of the two, exactly one decides."""
    with transaction.atomic():
        task = _locked(tenant_id, task_id, expired_at__isnull=True)
        if task is None:
            return False
        tenant = task.tenant
        policy = task.policy or {}
        action = policy.get("expiry_action") or ExpiryAction.NOTHING
        # The reason was worded when the task was created (reviews.policies.Policy.snapshot).
        reason = policy.get("expiry_reason") or "No decision in time: expired by the review policy."
        task.expired_at = now
        task.save(update_fields=["expired_at", "updated_at"])
        audit_record(tenant=tenant, actor=None, action="review.expired", via=SYSTEM, target=task,
                     data={"action": action, "reason": reason})
        events.event_emit(tenant_id=tenant.id, type=events.REVIEW_EXPIRED, task=task,
                          extra={**_timing(task), "action": action, "reason": reason})
        if action == ExpiryAction.ESCALATE and task.escalated_at is None:
            _escalate_locked(task, now=now, because="expiry")
        elif action == ExpiryAction.REJECT:
            decision = review_decision_validate(kind=task.kind, data={"decision": "reject", "comment": reason})
            review_task_decision_record(tenant=tenant, task=task, decision=decision, user=None, via=SYSTEM, now=now,
                                        audit_data={"by": "expiry", "reason": reason})
    return True

