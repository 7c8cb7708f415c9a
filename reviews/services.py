from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import pydantic
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from config.api_errors import Conflict, Forbidden, InvalidInput
from contracts.graph.decisions import DECISION_MODELS
from contracts.tasks import contract_drive_enqueue_on_commit
from reviews.models import ReviewKind, ReviewStatus, ReviewTask
from reviews.selectors import review_task_get
from tenants.models import DECIDING_ROLES, Tenant
from tenants.selectors import membership_get

if TYPE_CHECKING:
    from contracts.graph.runner import PendingInterrupt
    from contracts.models import Contract


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
    return new


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
    *, tenant: Tenant, task_id: UUID | str, user: AbstractBaseUser, data: dict[str, Any]
) -> ReviewTask:
    """Record a reviewer's decision exactly once, then queue the graph's resume.

    Lock the task row, refuse unless it is still pending, record, commit. Of any number
    of racing calls only the first sees `pending`; the rest get a Conflict. The graph is
    resumed by a worker after commit (by interrupt id), never under this lock; a
    decision recorded but not yet applied is re-driven by recovery.
    """
    task = review_task_get(tenant=tenant, task_id=task_id)
    membership = membership_get(tenant=tenant, user=user)
    if membership is None or membership.role not in DECIDING_ROLES:
        raise Forbidden("Your role may not decide review tasks.")
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
