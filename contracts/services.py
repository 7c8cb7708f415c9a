"""The orchestrator: submit a contract, drive its thread, cancel, retry, recover.

Direction: this module sits on top. It calls the queue primitives of reviews
(reviews.services, reviews.selectors) for the review side of each step; reviews never
calls back here, it only requests a drive through contracts.tasks.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import psycopg
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from config.api_errors import Conflict, NotFound, is_database_unavailable
from config.compiled_sql import CompiledQuery, placeholder_uuid
from config.compiled_writes import CompiledInsert, CompiledUpdate
from contracts.graph import faults, runner
from contracts.graph.runner import RunSnapshot
from contracts.models import FINAL_STATUSES, Contract, ContractStatus, Run, RunKind
from contracts.selectors import contract_thread_status
from contracts.tasks import contract_drive_enqueue, contract_drives_waiting
from reviews import events
from reviews.selectors import UnappliedDecision, review_decisions_unapplied, review_decisions_unapplied_contracts
from reviews.services import (
    idempotency_remember,
    idempotency_replay,
    review_tasks_cancel_pending,
    review_tasks_mark_applied,
    review_tasks_resume_for_thread,
    review_tasks_sync,
)
from tenants.models import AuditRecord, Tenant
from tenants.selectors import tenant_admin_required
from tenants.services import audit_record

logger = logging.getLogger(__name__)


def contract_submit(*, tenant: Tenant, submitted_by: AbstractBaseUser | None, title: str, text: str) -> Contract:
    """Save the contract and queue its first run; the request never waits for the graph."""
    contract_id = uuid.uuid4()
    with transaction.atomic():
        contract = _CONTRACT_INSERT.create(
            id=contract_id,
            tenant=tenant,
            title=title,
            text=text,
            thread_id=Contract.thread_id_for(tenant.id, contract_id),
            submitted_by=submitted_by,
        )
        contract_drive_enqueue(tenant_id=tenant.id, contract_id=contract.id)
    return contract


# --- Threads before their contract, and runs (the LangGraph-compatible API) ---------


def contract_thread_create(
    *, tenant: Tenant, created_by: AbstractBaseUser, metadata: dict, contract_id: UUID | None = None
) -> Contract:
    """A thread before its contract (threads.create comes before any input): a contract
    in `created`, with no title or text, which nothing drives until a run gives it its
    input (contract_input_submit). `contract_id` is the client's own thread id; one
    taken already, here or in another tenant, is a Conflict, the same for both."""
    contract_id = contract_id or uuid.uuid4()
    try:
        with transaction.atomic():
            return Contract.objects.create(
                id=contract_id,
                tenant=tenant,
                title="",
                text="",
                thread_id=Contract.thread_id_for(tenant.id, contract_id),
                status=ContractStatus.CREATED,
                thread_metadata=metadata,
                submitted_by=created_by,
            )
    except IntegrityError:
        raise Conflict("A thread with this id exists already.", extra={"reason": "thread_exists"}) from None


def contract_input_submit(
    *, tenant: Tenant, contract_id: UUID | str, submitted_by: AbstractBaseUser, title: str, text: str
) -> Contract:
    """Give a `created` thread its contract and queue its first run, as contract_submit
    does for a contract that comes with its text. Once only: a thread that has its
    contract already is a Conflict (its interrupts are answered, not its input replaced)."""
    with transaction.atomic():
        # The row lock makes "still created?" and "now submitted" one step.
        contract = _contract_locked(tenant_id=tenant.pk, contract_id=contract_id)
        if contract is None:
            raise NotFound()
        if contract.status != ContractStatus.CREATED:
            raise Conflict(
                "This thread has its contract already; answer its interrupts with command.resume.",
                extra={"reason": "input_given", "status": contract.status},
            )
        contract.title, contract.text, contract.submitted_by = title, text, submitted_by
        contract.status = ContractStatus.SUBMITTED
        contract.save(update_fields=["title", "text", "submitted_by", "status", "updated_at"])
        contract_drive_enqueue(tenant_id=tenant.id, contract_id=contract.pk)
    return contract


def contract_thread_metadata_update(*, tenant: Tenant, contract_id: UUID | str, metadata: dict) -> Contract:
    """Merge the client's keys into the thread's metadata (threads.update)."""
    with transaction.atomic():
        contract = _contract_locked(tenant_id=tenant.pk, contract_id=contract_id)
        if contract is None:
            raise NotFound()
        contract.thread_metadata = {**contract.thread_metadata, **metadata}
        contract.save(update_fields=["thread_metadata", "updated_at"])
    return contract


def thread_run_create(
    *,
    tenant: Tenant,
    contract_id: UUID | str | None,
    user: AbstractBaseUser,
    via: str,
    create_thread: bool = False,
    input: dict[str, str] | None = None,
    answers: dict[str, dict] | None = None,
    bare: dict | None = None,
    seen_digests: frozenset[str] | None = None,
    metadata: dict | None = None,
    kwargs: dict | None = None,
    multitask_strategy: str = "enqueue",
    idempotency: tuple[str, str] | None = None,
) -> tuple[Run, bool]:
    """A run of the LangGraph-compatible API: a request to advance the thread, and the
    Run row that names it, in one transaction. `input` ({"title", "text"}) submits the
    thread's contract (contract_input_submit); `answers` or `bare` are review decisions
    (reviews.services.review_tasks_resume_for_thread). The graph itself runs in a
    worker, after commit, under the contract's run lease, so a run never starts while
    another of the same thread is in flight: it is queued behind it (the lease holder
    picks it up before giving the lease back), unless the client asked for
    multitask_strategy="reject", which refuses it while the thread is busy.

    `create_thread` (with `input`): a thread that does not exist (`contract_id` None, or
    a client's own id not taken yet) is made for the run, in the run's transaction, after
    the replay check, so a retry makes no second thread.

    `idempotency` (key, request fingerprint): a retry of a request gets its first run
    back (returns (run, True)); a concurrent duplicate loses the race for the task rows
    and then finds the first one's run. Returns (run, replayed)."""
    contract = Contract.objects.filter(tenant=tenant, pk=contract_id).first() if contract_id is not None else None
    if contract is None and not (create_thread and input is not None):
        raise NotFound(f"Thread {contract_id} not found.")
    if contract is not None and multitask_strategy == "reject" and contract_thread_status(contract=contract) == "busy":
        raise Conflict("Thread is already running a task; wait for it to finish or use multitask_strategy='enqueue'.",
                       extra={"reason": "multitask_reject"})
    with transaction.atomic():
        if idempotency is not None:
            replay = _run_replay(tenant=tenant, user=user, idempotency=idempotency)
            if replay is not None:
                return replay, True
        try:
            if contract is None:
                contract = contract_thread_create(tenant=tenant, created_by=user, metadata={}, contract_id=contract_id)
            if input is not None:
                contract_input_submit(tenant=tenant, contract_id=contract.pk, submitted_by=user, **input)
                kind, task_ids = RunKind.INPUT, []
            else:
                tasks = review_tasks_resume_for_thread(
                    tenant=tenant, contract_id=contract.pk, user=user, via=via, answers=answers, bare=bare,
                    seen_digests=seen_digests,
                )
                kind, task_ids = RunKind.RESUME, [str(task.pk) for task in tasks]
        except Conflict:
            # A duplicate of a request that committed while this one waited for its rows.
            replay = _run_replay(tenant=tenant, user=user, idempotency=idempotency) if idempotency else None
            if replay is not None:
                return replay, True
            raise
        run = Run.objects.create(
            tenant=tenant, contract=contract, kind=kind, task_ids=task_ids, metadata=metadata or {},
            kwargs=kwargs or {}, multitask_strategy=multitask_strategy, via=via, created_by=user,
        )
        if idempotency is not None:
            idempotency_remember(tenant=tenant, user=user, key=idempotency[0], fingerprint=idempotency[1],
                                 status=200, body={"run_id": str(run.pk)})
    return run, False


def _run_replay(*, tenant: Tenant, user: AbstractBaseUser, idempotency: tuple[str, str]) -> Run | None:
    body = idempotency_replay(tenant=tenant, user=user, key=idempotency[0], fingerprint=idempotency[1])
    if body is None:
        return None
    return Run.objects.filter(tenant=tenant, pk=body.get("run_id")).first()


# --- The run-state mapping ----------------------------------------------------------


def contract_status_for(snapshot: RunSnapshot) -> str:
    """What the thread's checkpoint says the contract's status is: the one mapping from
    LangGraph's run state to ours."""
    if snapshot.pending:
        return ContractStatus.WAITING_FOR_REVIEW
    if snapshot.finished:
        return snapshot.values["human_decision"]
    if snapshot.exists:
        return ContractStatus.RUNNING
    return ContractStatus.SUBMITTED


# --- Driving a thread ---------------------------------------------------------------

# A drive that has not ended after this many passes is not converging: it stops, says
# why, and counts as a failed attempt (so it is retried later, then marked failed).
MAX_PASSES_PER_DRIVE = 20


@dataclass(frozen=True)
class _Work:
    contract: Contract
    decisions: list[UnappliedDecision]
    passes: int = 0
    # The interrupt ids this drive already answered, for spotting a pass that repeats itself.
    answered: frozenset[str] = field(default_factory=frozenset)


def contract_drive(*, tenant_id: UUID, contract_id: UUID) -> None:
    """Advance the contract's thread as far as it can go without a human, from wherever
    it stands: not started, waiting with decisions to apply, or stopped between two
    steps by a crash (it is continued from its checkpoint, never restarted).

    Safe to call any number of times from any number of workers: a run lease on the
    contract row lets one worker drive a thread at a time, and the others return at
    once. The holder loops until nothing is left to do, so a decision that arrives
    mid-run is picked up before the lease is given back. The graph runs outside any
    transaction (no row lock is held across it); each outcome is recorded, and the next
    pass planned, in one short transaction. A pass that fails is retried later with
    backoff (contract_retry_schedule); a drive never loops on a thread that does not move.
    """
    owner = uuid.uuid4().hex
    work = _run_lease_acquire(tenant_id=tenant_id, contract_id=contract_id, owner=owner)
    try:
        while work is not None:
            before, after = _run_graph(work)
            faults.reached("before-outcome")
            work = _run_outcome_record(work=work, before=before, after=after, owner=owner)
    except Exception as exc:
        # Recorded on the contract and retried by the scheduler: the task itself is done.
        if is_database_unavailable(exc):
            logger.warning("contract %s: run interrupted by the database (%s); it is retried", contract_id, exc)
        else:
            logger.exception("contract %s: run failed", contract_id)
        _run_failure_record(tenant_id=tenant_id, contract_id=contract_id, owner=owner, error=exc)


def _contract_locked(*, tenant_id: UUID, contract_id: UUID) -> Contract | None:
    """The contract row, locked, with its tenant (read, not locked: the tenant's
    settings feed the run, and its row lock is for event numbers).

    FOR NO KEY UPDATE, not FOR UPDATE: a row that references the contract (a queue
    event, a review task) takes a KEY SHARE lock on it in its foreign-key check, which
    FOR UPDATE blocks. A resume holding the tenant's event-number lock and inserting its
    event would then wait for a worker that holds the contract and waits for that same
    tenant lock: a deadlock, seen with two workers."""
    return _CONTRACT_LOCKED.first(tenant_id=tenant_id, contract_id=contract_id)


# Read at every pass of every drive, twice: compiled once (config.compiled_sql).
_CONTRACT_LOCKED = CompiledQuery(
    lambda tenant_id, contract_id: Contract.objects.select_for_update(of=("self",), no_key=True)
    .select_related("tenant").filter(tenant_id=tenant_id, pk=contract_id)[:1],
    tenant_id=placeholder_uuid(1), contract_id=placeholder_uuid(2),
)
# The contract rows every contract writes, as SQL rendered once (config.compiled_writes).
_CONTRACT_INSERT = CompiledInsert(Contract)
_LEASE_SAVE = CompiledUpdate(Contract, ["run_lease_owner", "run_lease_until", "updated_at"])


def _run_lease_acquire(*, tenant_id: UUID, contract_id: UUID, owner: str) -> _Work | None:
    """Take the run lease and the first pass's work, or None when another worker holds
    the lease (it loops until nothing is left, so it will apply ours) or there is
    nothing to do. The row lock makes this a compare-and-set: of racing workers, the
    first takes the lease and the others then see it."""
    with transaction.atomic():
        contract = _contract_locked(tenant_id=tenant_id, contract_id=contract_id)
        if contract is None or (contract.run_lease_until is not None and contract.run_lease_until >= timezone.now()):
            return None
        decisions = review_decisions_unapplied(tenant_id=tenant_id, contract_id=contract_id)
        # Nothing to do for a final contract, nor for a failed one until it is asked to
        # move again: by an admin's retry (which makes it `submitted`) or by a new
        # decision, a fresh reason to try. A `created` thread has no contract text yet:
        # its graph must not start until its first run submits one.
        idle = (
            (contract.status in FINAL_STATUSES and contract.status != ContractStatus.CANCELLED)
            or (contract.status == ContractStatus.FAILED and not decisions)
            or contract.status == ContractStatus.CREATED
        )
        if idle:
            if contract.run_lease_owner:  # a lease left by a worker that died: clear it
                _lease_release(contract)
                _LEASE_SAVE.save(contract)
            return None
        _lease_hold(contract, owner=owner)
        _LEASE_SAVE.save(contract)
    return _Work(contract=contract, decisions=decisions)


def _lease_hold(contract: Contract, *, owner: str) -> None:
    contract.run_lease_owner = owner
    contract.run_lease_until = timezone.now() + timedelta(seconds=settings.RUN_LEASE_SECONDS)


def _lease_release(contract: Contract) -> None:
    contract.run_lease_owner, contract.run_lease_until = "", None


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


def _answers(work: _Work, snapshot: RunSnapshot) -> dict[str, dict]:
    """Decisions to send: only for interrupts still pending, and never one the graph has
    already consumed. Re-sending a consumed id could answer the *next* interrupt of the
    same node (LangGraph matches answers by position), so a decision whose interrupt is
    gone is never sent again."""
    pending_ids = {item.id for item in snapshot.pending}
    applied = snapshot.applied_task_ids
    return {
        d.interrupt_id: d.decision
        for d in work.decisions
        if d.interrupt_id in pending_ids and str(d.task_id) not in applied
    }


def _run_graph(work: _Work) -> tuple[RunSnapshot, RunSnapshot]:
    """One pass: read where the thread stands, do the one thing that moves it on, and
    return (before, after), committed as one (runner.thread_pass)."""
    with runner.thread_pass():
        return _run_graph_steps(work)


def _run_graph_steps(work: _Work) -> tuple[RunSnapshot, RunSnapshot]:
    thread_id = work.contract.thread_id
    before = runner.thread_snapshot(thread_id)
    if work.contract.status == ContractStatus.CANCELLED:
        # The cancel recorded everything; its pass only ends the thread.
        return before, runner.thread_end(thread_id, outcome="cancelled") if before.tasks else before
    if not before.exists:
        return before, runner.thread_start(thread_id, _initial_state(work.contract))
    answers = _answers(work, before)
    if answers:
        return before, runner.thread_resume(thread_id, answers)
    if before.runnable:
        # A run died between two steps (or before the first): carry on from the checkpoint.
        return before, runner.thread_continue(thread_id)
    return before, before


_OUTCOME_SAVE = CompiledUpdate(Contract, [
    "risk_score", "findings", "payments", "analysis", "decision_history", "amendments", "amended_text", "last_error",
    "status", "completed_at", "run_lease_owner", "run_lease_until", "run_attempts", "retry_at", "updated_at",
])


def _run_outcome_record(*, work: _Work, before: RunSnapshot, after: RunSnapshot, owner: str) -> _Work | None:
    """Record what the pass produced and, under the same row lock, plan the next pass
    (None: the lease is given back)."""
    now = timezone.now()
    with transaction.atomic():
        contract = _contract_locked(tenant_id=work.contract.tenant_id, contract_id=work.contract.pk)
        if contract is None:
            raise Contract.DoesNotExist(f"contract {work.contract.pk} is gone")
        if contract.run_lease_owner != owner:
            logger.warning("contract %s: lease lost before recording its outcome", contract.pk)
            return None
        decisions = review_decisions_unapplied(tenant_id=contract.tenant_id, contract_id=contract.pk)
        # A decision counts as applied once the graph has moved past it (it is in the
        # thread's history), never merely because it was sent.
        consumed = [d.task_id for d in decisions if str(d.task_id) in after.applied_task_ids]
        review_tasks_mark_applied(tenant_id=contract.tenant_id, task_ids=consumed, now=now)
        decisions = [d for d in decisions if d.task_id not in set(consumed)]

        recording = contract.status != ContractStatus.CANCELLED
        if recording:
            _outcome_values_copy(contract, after)
            contract.status = contract_status_for(after)
            if contract.status in FINAL_STATUSES:
                contract.completed_at = now
        moved = after.checkpoint_id != before.checkpoint_id or bool(consumed)
        sent = frozenset(_answers(work, before)) if contract.status != ContractStatus.CANCELLED else frozenset()
        work_next, stuck = _work_plan(
            contract, work=work, sent=sent, after=after, decisions=decisions, moved=moved, owner=owner
        )
        if moved and stuck is None:
            # Progress clears the failures counted so far; a drive that moved at every
            # pass and still did not end (stuck) keeps counting, so it fails in the end.
            contract.run_attempts, contract.retry_at = 0, None
            contract.last_error = ""
        if stuck is not None:
            logger.warning("contract %s: drive stopped: %s", contract.pk, stuck)
            contract_retry_schedule(contract, reason=f"DriveStuck: {stuck}", counts=True, now=now)
        # Named fields: a full save would send the contract's text (up to 200,000
        # characters) back with every outcome.
        _OUTCOME_SAVE.save(contract)
        if recording:
            # Events go last: each holds the tenant's row lock until this commits.
            review_tasks_sync(contract=contract, pending=after.pending)
            if contract.status in FINAL_STATUSES:
                events.event_emit(tenant_id=contract.tenant_id, type=events.CONTRACT_COMPLETED, contract=contract)
    return work_next


def _outcome_values_copy(contract: Contract, snapshot: RunSnapshot) -> None:
    values = snapshot.values
    contract.risk_score = values.get("risk_score", contract.risk_score)
    contract.findings = values.get("findings", contract.findings)
    contract.payments = values.get("payments", contract.payments)
    contract.analysis = values.get("analysis", contract.analysis)
    contract.decision_history = values.get("history", [])
    contract.amendments = values.get("amendments", [])
    contract.amended_text = values.get("amended_text", "")


def _work_plan(
    contract: Contract,
    *,
    work: _Work,
    sent: frozenset[str],
    after: RunSnapshot,
    decisions: list[UnappliedDecision],
    moved: bool,
    owner: str,
) -> tuple[_Work | None, str | None]:
    """What the lease holder does next, decided under the contract's row lock, so
    "nothing left to do" and "give the lease back" are one step: a decision committed
    before it is seen here, and one committed after finds the lease free and starts its
    own drive. Returns (the next pass or None, why the drive is stuck or None); sets the
    lease on `contract` (held on, or cleared); the caller saves."""
    next_work = _Work(
        contract=contract,
        decisions=decisions,
        passes=work.passes + 1,
        answered=work.answered | sent,
    )
    if contract.status == ContractStatus.CANCELLED:
        proceed, stuck = bool(after.tasks) and moved, None if not after.tasks or moved else "the cancelled thread did not end"
    elif contract.status in FINAL_STATUSES:
        proceed, stuck = False, None
    else:
        answers = _answers(next_work, after)
        if answers:
            # Answering the same interrupts again after a pass that moved nothing would
            # repeat that pass for ever.
            repeating = not moved and set(answers) <= next_work.answered
            proceed, stuck = not repeating, "its answers did not move the thread" if repeating else None
        elif after.runnable:
            proceed, stuck = moved, None if moved else f"the thread does not move past {', '.join(after.tasks)}"
        else:
            proceed, stuck = False, None
    if proceed and next_work.passes >= MAX_PASSES_PER_DRIVE:
        proceed, stuck = False, f"no end after {MAX_PASSES_PER_DRIVE} passes"
    if not proceed:
        _lease_release(contract)
        return None, stuck
    _lease_hold(contract, owner=owner)
    return next_work, None


# --- Failures and retries -----------------------------------------------------------

def retry_backoff(attempt: int) -> timedelta:
    """Exponential, capped, with jitter so contracts that failed together (an outage)
    do not all come back in the same instant."""
    seconds = min(settings.RUN_RETRY_MAX_SECONDS, settings.RUN_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return timedelta(seconds=seconds * random.uniform(0.8, 1.0))


def contract_retry_schedule(contract: Contract, *, reason: str, counts: bool, now: datetime) -> None:
    """After a failed pass: retry at `retry_at` (the scheduler re-drives it then), or,
    once settings.RUN_RETRY_ATTEMPTS counted failures are used up, mark the contract
    `failed` with its error, announce it and audit it. Sets fields on `contract` inside
    the caller's transaction (which holds its row lock); the caller saves."""
    contract.last_error = reason[:2000]
    if counts:
        contract.run_attempts += 1
    if counts and contract.run_attempts >= settings.RUN_RETRY_ATTEMPTS:
        contract.retry_at = None
        if contract.status in FINAL_STATUSES:
            # Its outcome is decided (a cancel whose thread would not end): it keeps it,
            # and last_error says what was left undone. Not `failed`, which a retry
            # would bring back to life.
            logger.error("contract %s stays %s after %s attempts: %s", contract.pk, contract.status,
                         contract.run_attempts, contract.last_error)
            return
        contract.status = ContractStatus.FAILED
        audit_record(tenant=contract.tenant, actor=None, action="contract.failed", via=AuditRecord.Interface.SYSTEM,
                     target=contract, data={"attempts": contract.run_attempts, "error": contract.last_error})
        events.event_emit(tenant_id=contract.tenant_id, type=events.CONTRACT_FAILED, contract=contract)
        return
    contract.retry_at = now + retry_backoff(max(contract.run_attempts, 1))


def _run_failure_record(*, tenant_id: UUID, contract_id: UUID, owner: str, error: Exception) -> None:
    """Give the lease back and schedule the retry. The failure may be the database
    itself: the connection is dropped first, and when even this cannot be written the
    lease simply runs out and recovery takes the contract over."""
    if connection.in_atomic_block:
        return  # called inside someone's transaction (tests): nothing safe to write here
    connection.close_if_unusable_or_obsolete()
    try:
        with transaction.atomic():
            contract = _contract_locked(tenant_id=tenant_id, contract_id=contract_id)
            if contract is None or contract.run_lease_owner != owner:
                return
            _lease_release(contract)
            # The database failing is not the run's fault: retried without counting, so an
            # outage never fails a contract.
            contract_retry_schedule(contract, reason=f"{type(error).__name__}: {error}",
                                    counts=not is_database_unavailable(error), now=timezone.now())
            contract.save(update_fields=["status", "last_error", "run_attempts", "retry_at", "run_lease_owner",
                                         "run_lease_until", "updated_at"])
    except (DatabaseError, psycopg.Error):
        logger.warning("contract %s: could not record the failure; its lease will expire", contract_id)


# --- Cancel and retry (tenant admins) -----------------------------------------------


def contract_cancel(
    *,
    tenant: Tenant,
    contract_id: UUID | str,
    user: AbstractBaseUser,
    via: str,
    task_id: UUID | str | None = None,
    now: datetime | None = None,
) -> Contract:
    """End the contract's run in a defined state: every pending task cancelled, the
    contract `cancelled`, and then a worker ends the LangGraph thread (it is never left
    waiting on an interrupt). `task_id`: the cancel was asked for through this task,
    which must still be pending."""
    tenant_admin_required(tenant=tenant, user=user, action="cancel a contract")
    now = now or timezone.now()
    with transaction.atomic():
        # Lock order: contract, then its tasks, then (in event_emit) the tenant row; the
        # same order as the drive, so a cancel and a run cannot deadlock.
        contract = _contract_locked(tenant_id=tenant.pk, contract_id=contract_id)
        if contract is None:
            raise NotFound()
        if contract.status in FINAL_STATUSES:
            raise Conflict(f"The contract is already {contract.status}.", extra={"status": contract.status})
        cancelled = review_tasks_cancel_pending(contract=contract, user=user, via=via, through_task_id=task_id, now=now)
        contract.status = ContractStatus.CANCELLED
        contract.completed_at = now
        contract.retry_at = None
        contract.save(update_fields=["status", "completed_at", "retry_at", "updated_at"])
        audit_record(tenant=tenant, actor=user, action="contract.cancelled", via=via, target=contract,
                     data={"task": str(task_id) if task_id else None, "cancelled_tasks": [str(t.pk) for t in cancelled]})
        events.event_emit(tenant_id=tenant.id, type=events.CONTRACT_COMPLETED, contract=contract)
        contract_drive_enqueue(tenant_id=tenant.id, contract_id=contract.pk)
    return contract


def contract_retry(*, tenant: Tenant, contract_id: UUID | str, user: AbstractBaseUser, via: str) -> Contract:
    """Run a `failed` contract again, from its checkpoint, with a fresh set of attempts."""
    tenant_admin_required(tenant=tenant, user=user, action="retry a contract")
    with transaction.atomic():
        contract = _contract_locked(tenant_id=tenant.pk, contract_id=contract_id)
        if contract is None:
            raise NotFound()
        if contract.status != ContractStatus.FAILED:
            raise Conflict(f"Only a failed contract can be retried; this one is {contract.status}.",
                           extra={"status": contract.status})
        # `submitted` until its first pass records what the checkpoint says.
        contract.status = ContractStatus.SUBMITTED
        contract.run_attempts, contract.retry_at = 0, None
        contract.save(update_fields=["status", "run_attempts", "retry_at", "updated_at"])
        audit_record(tenant=tenant, actor=user, action="contract.retried", via=via, target=contract,
                     data={"last_error": contract.last_error})
        contract_drive_enqueue(tenant_id=tenant.id, contract_id=contract.pk)
    return contract


# --- Recovery -----------------------------------------------------------------------

def _stale_after() -> timedelta:
    """A contract in flight this long with nobody driving it has lost its queued drive:
    twice a run lease, so a live drive (which renews its lease at every pass) is never
    taken for a lost one."""
    return timedelta(seconds=2 * settings.RUN_LEASE_SECONDS)


def contracts_recover(*, now: datetime | None = None) -> list[UUID]:
    """Queue a drive for every contract a crash, a lost queue message or a failed pass
    left behind, each at most once per call: an expired run lease (its worker died
    mid-run), a retry that is due, a decision recorded but not applied, a contract in
    flight that nobody drives. The scheduler runs this; each drive is its own task, so
    one stuck contract never holds up another. Returns the contracts queued."""
    now = now or timezone.now()
    stale = now - _stale_after()
    free = Q(run_lease_until__isnull=True) | Q(run_lease_until__lt=now)
    lease_expired = Contract.objects.filter(run_lease_until__lt=now)
    retry_due = Contract.objects.filter(retry_at__lte=now).filter(free)
    in_flight = Contract.objects.filter(
        status__in=[ContractStatus.SUBMITTED, ContractStatus.RUNNING], updated_at__lt=stale, retry_at__isnull=True
    ).filter(free)
    undecided = Contract.objects.filter(
        pk__in=review_decisions_unapplied_contracts(decided_before=stale)
    ).exclude(status__in=[*FINAL_STATUSES, ContractStatus.FAILED]).filter(free, retry_at__isnull=True)
    queued: list[UUID] = []
    # A contract whose drive waits in the queue already gets no second one: when the
    # queue is behind, queuing again at every call would only make it longer.
    seen: set[UUID] = set(contract_drives_waiting())
    for queryset in (lease_expired, retry_due, in_flight, undecided):
        for tenant_id, contract_id in queryset.values_list("tenant_id", "pk")[:1000]:
            if contract_id in seen:
                continue
            seen.add(contract_id)
            with transaction.atomic():
                # Claim the due retry so the next call does not queue it again; the
                # drive's first pass decides what actually happens.
                Contract.objects.filter(tenant_id=tenant_id, pk=contract_id, retry_at__lte=now).update(retry_at=None)
                contract_drive_enqueue(tenant_id=tenant_id, contract_id=contract_id)
            queued.append(contract_id)
    return queued


def contracts_reconcile(*, tenant: Tenant | None = None) -> int:
    """Drive every contract that is not final, now, in this process (the operator's
    `reconcile_reviews`): re-creates missing review tasks, applies decisions recorded
    but not applied, continues runs stopped by a crash. Idempotent; a contract that
    fails is recorded as such and the others go on."""
    contracts = Contract.objects.exclude(status__in=FINAL_STATUSES)
    if tenant is not None:
        contracts = contracts.filter(tenant=tenant)
    pairs = list(contracts.values_list("tenant_id", "id"))
    for tenant_id, contract_id in pairs:
        contract_drive(tenant_id=tenant_id, contract_id=contract_id)
    return len(pairs)
