"""Retention: the LangGraph checkpoints of threads whose contract finished long ago are
deleted, per tenant, after `Tenant.checkpoint_retention_days` (default 30; empty keeps
them for ever). The checkpointer has no TTL of its own and keeps ~15 rows per contract.

The safety rule. A thread's checkpoints go only when all of these hold, checked in one
transaction that holds the contract's row lock until its checkpoints are gone:
1. our contract row is final (approved, rejected, amended, auto-approved, cancelled:
   none of them ever moves again) and finished more than the tenant's days ago;
2. no worker holds its run lease;
3. the checkpoint itself says the thread has nothing left to run: no pending
   interrupt, no next node. A thread that still waits or runs is never touched,
   whatever our row says; it is reported as skipped instead;
4. this run holds the row lock (FOR NO KEY UPDATE SKIP LOCKED): a second scheduler
   racing, or a command run beside the job, skips it, and a drive, which takes the
   same lock for its lease, cannot start on it meanwhile.

What stays: everything in our own tables — the contract (final status, findings,
analysis, decision history, amendments), its review tasks and their decisions, the
audit trail — so the contract reads the same afterwards; `checkpoints_pruned_at` says
when its thread went. What goes: every checkpoint, blob and pending write of the
thread (LangGraph's get_state then knows no such thread).

A dry run reads the same rows without locking or deleting and reports what would go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from contracts.graph import runner
from contracts.models import FINAL_STATUSES, Contract
from tenants.models import AuditRecord, Tenant
from tenants.services import audit_record

BATCH_SIZE = 100
# A scheduler run stops after this many threads (the next run goes on), so the job
# never holds the scheduler's loop for long; the command has no such cap by default.
JOB_MAX_THREADS = 1_000


@dataclass
class PruneReport:
    dry_run: bool
    threads: int = 0
    rows: int = 0
    rows_by_table: dict[str, int] = field(default_factory=dict)
    # slug -> {"threads", "rows"}
    tenants: dict[str, dict[str, int]] = field(default_factory=dict)
    # The contracts whose threads went (or would go), and those left alone, with why.
    contracts: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def add(self, slug: str, contract_ids: list[str], counts: dict[str, int]) -> None:
        rows = sum(counts.values())
        self.threads += len(contract_ids)
        self.rows += rows
        for table, count in counts.items():
            self.rows_by_table[table] = self.rows_by_table.get(table, 0) + count
        per = self.tenants.setdefault(slug, {"threads": 0, "rows": 0})
        per["threads"] += len(contract_ids)
        per["rows"] += rows
        self.contracts += contract_ids


def prunable_contracts(*, tenant: Tenant, now: datetime):
    """The tenant's contracts that rule 1 and 2 allow pruning now (unordered)."""
    if tenant.checkpoint_retention_days is None:
        return Contract.objects.none()
    cutoff = now - timedelta(days=tenant.checkpoint_retention_days)
    return Contract.objects.filter(
        tenant=tenant, status__in=FINAL_STATUSES, completed_at__lt=cutoff, checkpoints_pruned_at__isnull=True
    ).filter(Q(run_lease_until__isnull=True) | Q(run_lease_until__lt=now))


def checkpoints_prune(
    *,
    tenant: Tenant | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    max_threads: int | None = JOB_MAX_THREADS,
    via: str = AuditRecord.Interface.SYSTEM,
) -> PruneReport:
    """Prune (or, with `dry_run`, list) the checkpoints retention allows, for one tenant
    or every tenant with a retention period. Idempotent; returns the figures. Each
    tenant's run that removed something is one audit record."""
    now = now or timezone.now()
    report = PruneReport(dry_run=dry_run)
    tenants = [tenant] if tenant is not None else list(Tenant.objects.filter(checkpoint_retention_days__isnull=False))
    for current in tenants:
        before = (report.threads, report.rows)
        after_key: tuple[datetime, str] | None = None
        while max_threads is None or report.threads < max_threads:
            size = BATCH_SIZE if max_threads is None else min(BATCH_SIZE, max_threads - report.threads)
            after_key = _batch(tenant=current, now=now, dry_run=dry_run, size=size, after=after_key, report=report)
            if after_key is None:
                break
        threads, rows = report.threads - before[0], report.rows - before[1]
        if threads and not dry_run:
            audit_record(tenant=current, actor=None, action="checkpoints.pruned", via=via, target=current,
                         data={"threads": threads, "rows": rows, "retention_days": current.checkpoint_retention_days})
    return report


def _batch(
    *, tenant: Tenant, now: datetime, dry_run: bool, size: int, after: tuple[datetime, str] | None, report: PruneReport
) -> tuple[datetime, str] | None:
    """One batch, oldest first, after the keyset `after`; returns the last key seen, or
    None when there is nothing left."""
    candidates = prunable_contracts(tenant=tenant, now=now).order_by("completed_at", "pk")
    if after is not None:
        candidates = candidates.filter(Q(completed_at__gt=after[0]) | Q(completed_at=after[0], pk__gt=after[1]))
    with transaction.atomic():
        if not dry_run:
            # Rule 4: these rows stay locked until their checkpoints are gone and they
            # are marked, which is one short database call on the checkpointer's
            # connection (no agent, no network), so holding them across it is cheap.
            candidates = candidates.select_for_update(of=("self",), no_key=True, skip_locked=True)
        rows = list(candidates.only("pk", "thread_id", "completed_at", "status")[:size])
        if not rows:
            return None
        doomed: list[Contract] = []
        for contract in rows:
            snapshot = runner.thread_snapshot(contract.thread_id)
            if snapshot.exists and snapshot.tasks:  # rule 3
                report.skipped.append({"contract": str(contract.pk),
                                       "reason": f"its thread still has work: {', '.join(snapshot.tasks)}"})
                continue
            doomed.append(contract)
        thread_ids = [c.thread_id for c in doomed]
        counts = runner.checkpoint_rows(thread_ids)
        if not dry_run and doomed:
            runner.threads_delete(thread_ids)
            Contract.objects.filter(tenant=tenant, pk__in=[c.pk for c in doomed]).update(checkpoints_pruned_at=now)
        report.add(tenant.slug, [str(c.pk) for c in doomed], counts)
    last = rows[-1]
    return last.completed_at, str(last.pk)
