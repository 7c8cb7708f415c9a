from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from contracts.graph import runner
from contracts.graph.runner import RunSnapshot
from contracts.models import FINAL_STATUSES, Contract, ContractStatus
from contracts.tasks import contract_drive_enqueue
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
        contract_drive_enqueue(tenant_id=tenant.id, contract_id=contract.id)
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
    outside any transaction (no row lock is held across it); each outcome is recorded,
    and the next pass planned, in one short transaction.
    """
    owner = uuid.uuid4().hex
    work = _run_lease_acquire(tenant_id=tenant_id, contract_id=contract_id, owner=owner)
    try:
        while work is not None:
            snapshot = _run_graph(work)
            work = _run_outcome_record(work=work, snapshot=snapshot, owner=owner)
    except Exception as exc:
        logger.exception("contract %s: run failed", contract_id)
        _run_failure_record(tenant_id=tenant_id, contract_id=contract_id, owner=owner, error=exc)
        raise


def _contract_locked():
    """The contract row, locked, with its tenant (read, not locked: the tenant's
    settings feed the run, and its row lock is for event numbers).

    FOR NO KEY UPDATE, not FOR UPDATE: a row that references the contract (a queue
    event, a review task) takes a KEY SHARE lock on it in its foreign-key check, which
    FOR UPDATE blocks. A resume holding the tenant's event-number lock and inserting its
    event would then wait for a worker that holds the contract and waits for that same
    tenant lock: a deadlock, seen with two workers."""
    return Contract.objects.select_for_update(of=("self",), no_key=True).select_related("tenant")


def _run_lease_acquire(*, tenant_id: UUID, contract_id: UUID, owner: str) -> _Work | None:
    """Take the run lease and the first pass's work, or None when another worker holds
    the lease (it loops until no decision is left, so it will apply ours) or there is
    nothing to do. The row lock makes this a compare-and-set: of racing workers, the
    first takes the lease and the others then see it."""
    with transaction.atomic():
        contract = _contract_locked().filter(tenant_id=tenant_id, pk=contract_id).first()
        if contract is None or (contract.run_lease_until is not None and contract.run_lease_until >= timezone.now()):
            return None
        work = _work_plan(contract, owner=owner, first=True)
        if work is not None:
            contract.save(update_fields=["run_lease_owner", "run_lease_until", "updated_at"])
    return work


def _work_plan(contract: Contract, *, owner: str, first: bool, thread_waiting: bool = True) -> _Work | None:
    """What the lease holder should do next, decided under the contract's row lock, so
    "nothing left to do" and "give the lease back" are one step: a decision committed
    before it is seen here, and one committed after finds the lease free and starts its
    own drive. Sets the lease on `contract` (held on, or cleared); the caller saves.

    The first pass always runs (recovery relies on it to re-record what the checkpoint
    says); later ones only to apply a decision, or to end the thread of a contract
    cancelled while its graph still waits (`thread_waiting`)."""
    answered = list(
        ReviewTask.objects.filter(
            tenant_id=contract.tenant_id, contract=contract, status=ReviewStatus.RESOLVED, applied_at__isnull=True
        ).only("id", "interrupt_id", "decision")
    )
    if contract.status == ContractStatus.CANCELLED:
        proceed = thread_waiting
    elif contract.status in FINAL_STATUSES:
        proceed = False
    else:
        started = contract.status not in (ContractStatus.SUBMITTED, ContractStatus.FAILED)
        proceed = first or not started or bool(answered)
    if not proceed:
        contract.run_lease_owner, contract.run_lease_until = "", None
        return None
    contract.run_lease_owner = owner
    contract.run_lease_until = timezone.now() + timedelta(seconds=settings.RUN_LEASE_SECONDS)
    return _Work(
        contract=contract,
        answers={task.interrupt_id: task.decision for task in answered},
        answered_task_ids=[task.id for task in answered],
    )


def _initial_state(contract: Contract) -> dict:
    tenant = contract.tenant
    return {
        "tenant_id": str(tenant.id),
        "contract_id": str(contract.id),
        "title": contract.title,
        "contract_text": contract.text,
        "risk_threshold": tenant.risk_threshold,
        "finance_limit": float(tenant.finance_limit),
        "critical_risk": tenant.critical_risk,
        "review_when_unsure": tenant.review_when_unsure,
        "review_any_clause_finding": tenant.review_any_clause_finding,
        "risk_analyzer": settings.RISK_ANALYZER,
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


_OUTCOME_FIELDS = [
    "risk_score", "findings", "payments", "analysis", "decision_history", "amendments", "amended_text", "last_error", "status",
    "completed_at", "run_lease_owner", "run_lease_until", "updated_at",
]


def _run_outcome_record(*, work: _Work, snapshot: RunSnapshot, owner: str) -> _Work | None:
    """Record what the run produced and, under the same row lock, plan the next pass
    (None: the lease is given back)."""
    now = timezone.now()
    with transaction.atomic():
        contract = _contract_locked().get(tenant_id=work.contract.tenant_id, pk=work.contract.pk)
        if contract.run_lease_owner != owner:
            logger.warning("contract %s: lease lost before recording its outcome", contract.pk)
            return None
        if work.answered_task_ids:
            ReviewTask.objects.filter(tenant_id=contract.tenant_id, pk__in=work.answered_task_ids).update(applied_at=now)
        # A cancel recorded everything itself; its run only ended the thread.
        recording = contract.status != ContractStatus.CANCELLED
        if recording:
            values = snapshot.values
            contract.risk_score = values.get("risk_score", contract.risk_score)
            contract.findings = values.get("findings", contract.findings)
            contract.payments = values.get("payments", contract.payments)
            contract.analysis = values.get("analysis", contract.analysis)
            contract.decision_history = values.get("history", [])
            contract.amendments = values.get("amendments", [])
            contract.amended_text = values.get("amended_text", "")
            contract.last_error = ""
            if snapshot.pending:
                contract.status = ContractStatus.WAITING_FOR_REVIEW
            elif snapshot.finished:
                contract.status = values["human_decision"]
                contract.completed_at = now
        next_work = _work_plan(contract, owner=owner, first=False, thread_waiting=bool(snapshot.pending))
        # Named fields: a full save would send the contract's text (up to 200,000
        # characters) back with every outcome.
        contract.save(update_fields=_OUTCOME_FIELDS)
        if recording:
            # Events go last: each holds the tenant's row lock until this commits.
            review_tasks_sync(contract=contract, pending=snapshot.pending)
            if contract.status in FINAL_STATUSES:
                events.event_emit(tenant_id=contract.tenant_id, type=events.CONTRACT_COMPLETED, contract=contract)
    return next_work


def _run_failure_record(*, tenant_id: UUID, contract_id: UUID, owner: str, error: Exception) -> None:
    with transaction.atomic():
        contract = _contract_locked().filter(tenant_id=tenant_id, pk=contract_id).first()
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
