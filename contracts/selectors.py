from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.db.models import Case, CharField, OuterRef, Q, QuerySet, Value, When
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from config.api_errors import NotFound
from contracts.models import FINAL_STATUSES, Contract, ContractStatus, Run, RunKind
from reviews.selectors import review_decisions_unapplied_exist, review_tasks_pending_exist
from tenants.models import Tenant


def contract_list(
    *, tenant: Tenant, status: str | None = None, run_state: str | None = None, created_after=None, created_before=None
) -> QuerySet[Contract]:
    contracts = Contract.objects.filter(tenant=tenant)
    if status:
        contracts = contracts.filter(status=status)
    if run_state:
        contracts = contracts.filter(status__in=_RUN_STATE_STATUSES[run_state])
    if created_after is not None:
        contracts = contracts.filter(created_at__gte=created_after)
    if created_before is not None:
        contracts = contracts.filter(created_at__lt=created_before)
    return contracts


# The inverse of Contract.run_state.
_RUN_STATE_STATUSES = {
    "created": [ContractStatus.CREATED],
    "completed": list(FINAL_STATUSES),
    "waiting_for_review": [ContractStatus.WAITING_FOR_REVIEW],
    "failed": [ContractStatus.FAILED],
    "running": [ContractStatus.SUBMITTED, ContractStatus.RUNNING],
}


def contract_get(*, tenant: Tenant, contract_id: UUID | str) -> Contract:
    contract = contract_list(tenant=tenant).filter(pk=contract_id).first()
    if contract is None:
        raise NotFound()
    return contract


# --- Threads and runs (the LangGraph-compatible API) ----------------------------------

THREAD_STATUSES = ("idle", "busy", "interrupted", "error")
_IN_FLIGHT = [ContractStatus.SUBMITTED, ContractStatus.RUNNING]
_RESTING = [*FINAL_STATUSES, ContractStatus.FAILED]


def _thread_status(now: datetime) -> Case:
    """The LangGraph thread status of a contract, from our rows: `busy` while a drive is
    queued or holds the run lease (its first run, or a retry, is due; a worker drives
    it; a decision waits to be applied), `error` when it failed, `interrupted` while a
    review task waits for a human, else `idle` (not started yet, or finished)."""
    busy = (
        Q(status__in=_IN_FLIGHT)
        | Q(run_lease_until__gte=now)
        | (review_decisions_unapplied_exist(contract_ref=OuterRef("pk")) & ~Q(status__in=_RESTING))
    )
    return Case(
        When(busy, then=Value("busy")),
        When(status=ContractStatus.FAILED, then=Value("error")),
        When(review_tasks_pending_exist(contract_ref=OuterRef("pk")), then=Value("interrupted")),
        default=Value("idle"),
        output_field=CharField(),
    )


def contract_thread_list(
    *,
    tenant: Tenant,
    status: str | None = None,
    ids: list[UUID] | None = None,
    metadata: dict | None = None,
    ordering: list[str] | None = None,
    now: datetime | None = None,
) -> QuerySet[Contract]:
    """The tenant's contracts as threads, each with its `thread_status`. `metadata`
    matches the stored thread metadata key by key (each given key equal)."""
    threads = contract_list(tenant=tenant).annotate(thread_status=_thread_status(now or timezone.now()))
    if status:
        threads = threads.filter(thread_status=status)
    if ids is not None:
        threads = threads.filter(pk__in=ids)
    for key, value in (metadata or {}).items():
        # KeyTransform, not a `__` lookup: a key may contain "__" or be any string.
        alias = f"_meta_{len(threads.query.annotations)}"
        threads = threads.alias(**{alias: KeyTransform(key, "thread_metadata")}).filter(**{alias: value})
    return threads.order_by(*(ordering or ["-created_at", "-pk"]))


def contract_thread_get(*, tenant: Tenant, contract_id: UUID | str) -> Contract:
    contract = contract_thread_list(tenant=tenant).filter(pk=contract_id).first()
    if contract is None:
        raise NotFound()
    return contract


def contract_thread_status(*, contract: Contract) -> str:
    return contract_thread_get(tenant=contract.tenant, contract_id=contract.pk).thread_status


def run_status(*, run: Run, contract: Contract, tasks: list, now: datetime | None = None) -> str:
    """A run's status, derived from the rows it advanced, never stored: `success` once
    its work is done (an input run: the contract's first pass recorded its analysis; a
    resume run: the graph consumed every decision it carried), `interrupted` if the
    contract was cancelled first, `error` if it failed first (a tenant admin's retry or
    a new decision makes it pending again), `running` while a worker holds the thread's
    run lease, else `pending` (queued). A run that stops on the next interrupt has
    succeeded, as on LangGraph Platform."""
    now = now or timezone.now()
    if run.kind == RunKind.INPUT:
        done = contract.risk_score is not None
    else:
        done = bool(tasks) and all(task.applied_at is not None for task in tasks)
    if done:
        return "success"
    if contract.status == ContractStatus.CANCELLED:
        return "interrupted"
    if contract.status == ContractStatus.FAILED:
        return "error"
    if contract.run_lease_until is not None and contract.run_lease_until >= now:
        return "running"
    return "pending"


def run_list(*, tenant: Tenant, contract_id: UUID | str) -> QuerySet[Run]:
    return Run.objects.filter(tenant=tenant, contract_id=contract_id).order_by("-created_at", "-pk")


def run_get(*, tenant: Tenant, contract_id: UUID | str, run_id: UUID | str) -> Run:
    run = run_list(tenant=tenant, contract_id=contract_id).filter(pk=run_id).first()
    if run is None:
        raise NotFound()
    return run
