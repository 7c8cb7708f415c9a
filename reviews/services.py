from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import pydantic
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from config.api_errors import Conflict, Forbidden, InvalidInput
from contracts.graph.decisions import DECISION_MODELS
from contracts.tasks import contract_drive_enqueue_on_commit
from contracts.models import RESUME_THREAD_PERM, Contract, ContractGroupPermission, ContractUserPermission
from reviews.models import (
    RESUME_TASK_PERM,
    ReviewKind,
    ReviewStatus,
    ReviewTask,
    ReviewTaskGroupPermission,
    ReviewTaskUserPermission,
)
from reviews.selectors import review_task_can_resume, review_task_get
from tenants.models import Tenant
from tenants.routing import review_team_for
from tenants.selectors import membership_get
from tenants.services import audit_record, tenant_group_get

if TYPE_CHECKING:
    from contracts.graph.runner import PendingInterrupt


def review_tasks_sync(*, contract: Contract, pending: list[PendingInterrupt]) -> list[ReviewTask]:
    """One ReviewTask per pending interrupt. Idempotent: the unique constraint on
    (tenant, thread, interrupt id) makes a second sync of the same interrupts a no-op,
    which is what lets recovery re-run it after a crash."""
    if not pending:
        return []
    tasks = [
        ReviewTask(
            tenant_id=contract.tenant_id,
            contract=contract,
            thread_id=contract.thread_id,
            interrupt_id=item.id,
            kind=item.kind,
            payload=item.payload,
            response_schema=item.response_schema,
            risk_score=float(item.payload.get("risk_score") or 0.0),
        )
        for item in pending
    ]
    known = set(
        ReviewTask.objects.filter(
            tenant_id=contract.tenant_id, thread_id=contract.thread_id, interrupt_id__in=[t.interrupt_id for t in tasks]
        ).values_list("interrupt_id", flat=True)
    )
    new = [t for t in tasks if t.interrupt_id not in known]
    # ignore_conflicts covers a concurrent sync of the same interrupt (not expected under
    # the run lease, but the constraint, not the lease, is what guarantees one task).
    ReviewTask.objects.bulk_create(new, ignore_conflicts=True)
    created = list(ReviewTask.objects.filter(tenant_id=contract.tenant_id, pk__in=[t.pk for t in new]))
    _review_tasks_route(tenant=Tenant.objects.get(pk=contract.tenant_id), tasks=created)
    return created


def _review_tasks_route(*, tenant: Tenant, tasks: list[ReviewTask]) -> None:
    """Grant each new task's resume permission to the team its kind is routed to."""
    permission = _permission(ReviewTask, RESUME_TASK_PERM)
    grants = []
    for task in tasks:
        team = review_team_for(tenant=tenant, kind=task.kind)
        if team is not None:
            group = tenant_group_get(tenant=tenant, team=team)
            grants.append(ReviewTaskGroupPermission(tenant=tenant, content_object=task, group=group, permission=permission))
    ReviewTaskGroupPermission.objects.bulk_create(grants, ignore_conflicts=True)


def _permission(model: type, codename: str) -> Permission:
    return Permission.objects.get(content_type=ContentType.objects.get_for_model(model), codename=codename)


def review_decision_validate(*, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Validate a reviewer's answer against the schema the interrupt declared. Errors
    name the field, e.g. {"decision": ["Input should be 'approve', 'reject' or 'amend'"]}."""
    client_fields = {k: v for k, v in data.items() if k in ("decision", "amendments", "comment")}
    unknown = sorted(set(data) - set(client_fields))
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown field", fields={name: ["Unknown field."] for name in unknown})
    try:
        model = DECISION_MODELS[kind].model_validate(client_fields)
    except pydantic.ValidationError as exc:
        fields: dict[str, list[str]] = {}
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"])
            message = error["msg"]
            if not location and message.startswith("Value error, "):
                location, _, message = message.removeprefix("Value error, ").partition(": ")
            fields.setdefault(location or "non_field_errors", []).append(message)
        first_field, messages = next(iter(fields.items()))
        raise InvalidInput(f"{first_field}: {messages[0]}", fields=fields) from None
    return model.model_dump(include={"decision", "amendments", "comment"})


def review_task_resume(
    *, tenant: Tenant, task_id: UUID | str, user: AbstractBaseUser, data: dict[str, Any], via: str = "api"
) -> ReviewTask:
    """Record a reviewer's decision exactly once, then queue the graph's resume.

    Lock the task row, refuse unless it is still pending, record, commit. Of any number
    of racing calls only the first sees `pending`; the rest get a Conflict. The graph is
    resumed by a worker after commit (by interrupt id), never under this lock; a
    decision recorded but not yet applied is re-driven by recovery.
    """
    task = review_task_get(tenant=tenant, task_id=task_id)
    if not review_task_can_resume(task=task, user=user, membership=membership_get(tenant=tenant, user=user)):
        raise Forbidden("You may not resume this review task.")
    decision = review_decision_validate(kind=task.kind, data=data)

    with transaction.atomic():
        # The row lock serialises racing resumes of this task.
        task = ReviewTask.objects.select_for_update().get(tenant=tenant, pk=task.pk)
        if task.status != ReviewStatus.PENDING:
            raise Conflict(f"This task is already {task.status}.", extra={"status": task.status})
        if task.kind == ReviewKind.SIGNOFF:
            _four_eyes_check(task=task, user=user)
        now = timezone.now()
        task.status = ReviewStatus.RESOLVED
        task.decision = {
            **decision,
            "decided_by": user.pk,
            "decided_by_username": user.get_username(),
            "decided_at": now.isoformat(),
            "task_id": str(task.pk),
        }
        task.decided_by = user
        task.decided_at = now
        task.save(update_fields=["status", "decision", "decided_by", "decided_at", "updated_at"])
        audit_record(tenant=tenant, actor=user, action="review.resolved", via=via, target=task,
                     data={"decision": decision["decision"], "kind": task.kind, "contract": str(task.contract_id)})
        contract_drive_enqueue_on_commit(tenant_id=tenant.id, contract_id=task.contract_id)
    return task


def _four_eyes_check(*, task: ReviewTask, user: AbstractBaseUser) -> None:
    first_signers = ReviewTask.objects.filter(
        tenant_id=task.tenant_id, contract_id=task.contract_id, kind=ReviewKind.LEGAL, status=ReviewStatus.RESOLVED
    ).values_list("decided_by_id", flat=True)
    if user.pk in set(first_signers):
        raise Forbidden(
            "Four eyes: the critical sign-off must come from a different reviewer than the legal approval.",
            extra={"reason": "four_eyes"},
        )


# --- Grants ---------------------------------------------------------------------------

GRANT_MODELS = {
    ReviewTask: (ReviewTaskUserPermission, ReviewTaskGroupPermission, RESUME_TASK_PERM),
    Contract: (ContractUserPermission, ContractGroupPermission, RESUME_THREAD_PERM),
}


def resume_permission_set(
    *,
    tenant: Tenant,
    target: ReviewTask | Contract,
    grant: bool,
    actor: AbstractBaseUser,
    via: str,
    user: AbstractBaseUser | None = None,
    group: Group | None = None,
) -> None:
    """Grant or revoke the permission to resume one task, or every task of one thread
    (a Contract), for one user or one of the tenant's team groups. Idempotent; audited.
    Only tenant admins may call this (checked by the callers' shared permission)."""
    if (user is None) == (group is None):
        raise InvalidInput("Give exactly one of user or group.", fields={"user": ["Give exactly one of user or group."]})
    if target.tenant_id != tenant.id:
        raise InvalidInput("Target is not in this tenant.")  # callers look targets up by tenant; belt and braces
    user_model, group_model, codename = GRANT_MODELS[type(target)]
    permission = _permission(type(target), codename)
    with transaction.atomic():
        if user is not None:
            rows = user_model.objects.filter(tenant=tenant, content_object=target, user=user, permission=permission)
            if grant and not rows.exists():
                user_model.objects.create(tenant=tenant, content_object=target, user=user, permission=permission)
        else:
            rows = group_model.objects.filter(tenant=tenant, content_object=target, group=group, permission=permission)
            if grant and not rows.exists():
                group_model.objects.create(tenant=tenant, content_object=target, group=group, permission=permission)
        if not grant:
            rows.delete()
        audit_record(
            tenant=tenant,
            actor=actor,
            action=f"{'grant' if grant else 'revoke'}.{'thread' if isinstance(target, Contract) else 'task'}",
            via=via,
            target=target,
            data={"user": user.get_username() if user else None, "group": group.name if group else None},
        )
