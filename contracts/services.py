from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from contracts.graph import runner
from contracts.graph.runner import RunSnapshot
from contracts.models import FINAL_STATUSES, Contract, ContractStatus
from contracts.tasks import contract_drive_enqueue_on_commit
from reviews import events
from reviews.models import ReviewStatus, ReviewTask
from reviews.services import review_tasks_sync
from tenants.models import Tenant

logger = logging.getLogger(__name__)


def contract_submit(*, tenant: Tenant, submitted_by: AbstractBaseUser | None, title: str, text: str) -> Contract:
    """Save the contract and queue its first run; the request never waits for the graph."""
    contract_id = uuid.uuid4()
    with transaction.atomic():
        contract = Contract.objects.create(
            id=contract_id,
            tenant=tenant,
            title=title,
            text=text,
            thread_id=Contract.thread_id_for(tenant.id, contract_id),
            submitted_by=submitted_by,
        )
        contract_drive_enqueue_on_commit(tenant_id=tenant.id, contract_id=contract.id)
    return contract


# --- Driving a thread ---------------------------------------------------------------


@dataclass(frozen=True)
class _Work:
    contract: Contract
    answers: dict[str, dict]  # interrupt id -> decision, for resolved tasks not yet applied
    answered_task_ids: list[UUID]


def contract_drive(*, tenant_id: UUID, contract_id: UUID) -> None:
    """Advance the contract's thread as far as it can go without a human.

    Safe to call any number of times from any number of workers: a run lease on the
    contract row lets one worker drive a thread at a time, and the others return at
    once. The holder loops until no recorded decision is left unapplied, so a decision
    that arrives mid-run is picked up before the lease is given back. The graph runs
    outside any transaction (no row lock is held across it); each outcome is recorded
    in its own short transaction.
    """
    owner = uuid.uuid4().hex
    if not _run_lease_acquire(tenant_id=tenant_id, contract_id=contract_id, owner=owner):
        return
    first = True
    try:
        while (work := _run_work_next(tenant_id=tenant_id, contract_id=contract_id, owner=owner, first=first)) is not None:
            first = False
            snapshot = _run_graph(work)
            _run_outcome_record(work=work, snapshot=snapshot, owner=owner)
    except Exception as exc:
        logger.exception("contract %s: run failed", contract_id)
        _run_failure_record(tenant_id=tenant_id, contract_id=contract_id, owner=owner, error=exc)
        raise


def _run_lease_acquire(*, tenant_id: UUID, contract_id: UUID, owner: str) -> bool:
    now = timezone.now()
    # One conditional UPDATE: PostgreSQL re-checks the WHERE after waiting for the row
    # lock, so of two racing workers exactly one matches; SQLite serialises writers.
    taken = (
        Contract.objects.filter(tenant_id=tenant_id, pk=contract_id)
        .filter(Q(run_lease_until__isnull=True) | Q(run_lease_until__lt=now))
        .update(run_lease_owner=owner, run_lease_until=now + timedelta(seconds=settings.RUN_LEASE_SECONDS))
    )
    return taken == 1


def _run_work_next(*, tenant_id: UUID, contract_id: UUID, owner: str, first: bool) -> _Work | None:
    """What the lease holder should do next, or None after giving the lease back.

    Runs under the contract's row lock, so "nothing left to do" and "release the lease"
    are one step: a decision committed before it is seen here, and one committed after
    finds the lease free and starts its own drive."""
    with transaction.atomic():
        contract = Contract.objects.select_for_update().get(tenant_id=tenant_id, pk=contract_id)
        if contract.run_lease_owner != owner:
            logger.warning("contract %s: run lease lost to %s", contract_id, contract.run_lease_owner)
            return None
        answered = list(
            ReviewTask.objects.filter(
                tenant_id=tenant_id, contract=contract, status=ReviewStatus.RESOLVED, applied_at__isnull=True
            ).only("id", "interrupt_id", "decision")
        )
        started = contract.status not in (ContractStatus.SUBMITTED, ContractStatus.FAILED)
        # A cancelled contract gets one pass, which ends its LangGraph thread.
        ending = first and contract.status == ContractStatus.CANCELLED
        if (contract.status in FINAL_STATUSES and not ending) or (started and not answered and not first):
            contract.run_lease_owner, contract.run_lease_until = "", None
            contract.save(update_fields=["run_lease_owner", "run_lease_until", "updated_at"])
            return None
        contract.run_lease_until = timezone.now() + timedelta(seconds=settings.RUN_LEASE_SECONDS)
        contract.save(update_fields=["run_lease_until", "updated_at"])
    return _Work(
        contract=contract,
        answers={task.interrupt_id: task.decision for task in answered},
        answered_task_ids=[task.id for task in answered],
    )


def _initial_state(contract: Contract) -> dict:
    tenant = Tenant.objects.get(pk=contract.tenant_id)
    return {
        "tenant_id": str(tenant.id),
        "contract_id": str(contract.id),
        "title": contract.title,
        "contract_text": contract.text,
        "risk_threshold": tenant.risk_threshold,
        "finance_limit": float(tenant.finance_limit),
        "critical_risk": tenant.critical_risk,
        "history": [],
    }


def _run_graph(work: _Work) -> RunSnapshot:
    thread_id = work.contract.thread_id
    snapshot = runner.thread_snapshot(thread_id)
    if work.contract.status == ContractStatus.CANCELLED:
        return runner.thread_end(thread_id, outcome="cancelled") if snapshot.pending else snapshot
    if not snapshot.exists:
        # The first run. If a previous attempt crashed after checkpointing, the
        # snapshot exists and we only record what it says: the run is never restarted.
        return runner.thread_start(thread_id, _initial_state(work.contract))
    # Answer only interrupts that are still pending. A decision whose interrupt is gone
    # was applied by an earlier run that died before recording it; re-sending a consumed
    # id could answer the *next* interrupt of the same node, so it is never re-sent.
    pending_ids = {item.id for item in snapshot.pending}
    answers = {iid: value for iid, value in work.answers.items() if iid in pending_ids}
    if answers:
        return runner.thread_resume(thread_id, answers)
    return snapshot


def _run_outcome_record(*, work: _Work, snapshot: RunSnapshot, owner: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        contract = Contract.objects.select_for_update().get(tenant_id=work.contract.tenant_id, pk=work.contract.pk)
        if contract.run_lease_owner != owner:
            logger.warning("contract %s: lease lost before recording its outcome", contract.pk)
            return
        if work.answered_task_ids:
            ReviewTask.objects.filter(tenant_id=contract.tenant_id, pk__in=work.answered_task_ids).update(applied_at=now)
        if contract.status == ContractStatus.CANCELLED:
            return  # the cancel recorded everything; this run only ended the thread
        values = snapshot.values
        contract.risk_score = values.get("risk_score", contract.risk_score)
        contract.findings = values.get("findings", contract.findings)
        contract.payments = values.get("payments", contract.payments)
        contract.decision_history = values.get("history", [])
        contract.amendments = values.get("amendments", [])
        contract.amended_text = values.get("amended_text", "")
        contract.last_error = ""
        if snapshot.pending:
            contract.status = ContractStatus.WAITING_FOR_REVIEW
        elif snapshot.finished:
            contract.status = values["human_decision"]
            contract.completed_at = now
        review_tasks_sync(contract=contract, pending=snapshot.pending)
        contract.save()
        if contract.status in FINAL_STATUSES:
            events.event_emit(tenant_id=contract.tenant_id, type=events.CONTRACT_COMPLETED, contract=contract)


def _run_failure_record(*, tenant_id: UUID, contract_id: UUID, owner: str, error: Exception) -> None:
    with transaction.atomic():
        contract = Contract.objects.select_for_update().filter(tenant_id=tenant_id, pk=contract_id).first()
        if contract is None or contract.run_lease_owner != owner:
            return
        if contract.status in (ContractStatus.SUBMITTED, ContractStatus.RUNNING):
            contract.status = ContractStatus.FAILED
        contract.last_error = f"{type(error).__name__}: {error}"[:2000]
        contract.run_lease_owner, contract.run_lease_until = "", None
        contract.save()


# --- Recovery -----------------------------------------------------------------------


def contracts_needing_drive(*, tenant: Tenant | None = None) -> list[tuple[UUID, UUID]]:
    """Contracts whose thread may be ahead of, or behind, what the database says: never
    started, failed, waiting (tasks may be missing), or holding an unapplied decision."""
    contracts = Contract.objects.exclude(status__in=FINAL_STATUSES)
    if tenant is not None:
        contracts = contracts.filter(tenant=tenant)
    return list(contracts.values_list("tenant_id", "id"))


def contracts_reconcile(*, tenant: Tenant | None = None) -> int:
    """Re-drive every contract that may need it (see `contracts_needing_drive`).
    Idempotent: a drive with nothing to do records what the checkpoint already says."""
    pairs = contracts_needing_drive(tenant=tenant)
    for tenant_id, contract_id in pairs:
        contract_drive(tenant_id=tenant_id, contract_id=contract_id)
    return len(pairs)
