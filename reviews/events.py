"""Queue events, from this one module.

Each event is written in the same transaction as the change it reports, numbered by a
per-tenant sequence that follows commit order. The rows are the live queue's source of
truth: every server process reads them and hands them to its websockets
(reviews.relay), wherever they were committed. On PostgreSQL the writer's transaction
also notifies the readers (a NOTIFY goes out at commit, never before, and never for a
transaction that rolls back), and the notification carries the event itself, so a
reader that is up to date hands it out without reading the log; a reader in this same
process is poked after commit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from config.compiled_writes import CompiledInsert
from reviews.models import QueueEvent, ReviewTask
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# The NOTIFY channel the server processes' relays LISTEN on; the payload is
# "<tenant id> <seq> <the event as subscribers see it, but its seq, in JSON>", the JSON
# left out when it would not fit (see event_notice_parse).
QUEUE_EVENTS_CHANNEL = "hitl_queue_events"
# Sent by database triggers when a right to follow a queue may have ended (reviews.relay).
ACCESS_CHANGED_CHANNEL = "hitl_access_changed"
# PostgreSQL's limit for a payload is 8,000 bytes; the tenant id and seq take under 60.
NOTICE_BODY_MAX_BYTES = 7_900

REVIEW_CREATED = "review.created"
REVIEW_CLAIMED = "review.claimed"
REVIEW_RELEASED = "review.released"
REVIEW_RESOLVED = "review.resolved"
REVIEW_CANCELLED = "review.cancelled"
CONTRACT_COMPLETED = "contract.completed"
CONTRACT_FAILED = "contract.failed"
# Time on the queue (reviews.timers) and the task actions of tenant admins and reviewers.
REVIEW_DUE_SOON = "review.due_soon"
REVIEW_ESCALATED = "review.escalated"
REVIEW_EXPIRED = "review.expired"
REVIEW_REASSIGNED = "review.reassigned"
REVIEW_COMMENTED = "review.commented"
EVENT_TYPES = (
    REVIEW_CREATED, REVIEW_CLAIMED, REVIEW_RELEASED, REVIEW_RESOLVED, REVIEW_CANCELLED, CONTRACT_COMPLETED, CONTRACT_FAILED,
    REVIEW_DUE_SOON, REVIEW_ESCALATED, REVIEW_EXPIRED, REVIEW_REASSIGNED, REVIEW_COMMENTED,
)


def event_public(event: QueueEvent) -> dict[str, Any]:
    """What a subscriber receives: nothing a tenant member could not read over REST."""
    return {"seq": event.seq, **_public_unnumbered(event.type, event.created_at, event.data)}


def _public_unnumbered(type: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": type, "at": at.isoformat(), **data}


@dataclass(frozen=True)
class EventNotice:
    tenant_id: UUID
    # None: a notification that only says the tenant has new events (read the log).
    seq: int | None = None
    # The event as event_public gives it; None when it did not fit in the payload.
    event: dict[str, Any] | None = None


def event_notice_parse(payload: str) -> EventNotice:
    """A notification on QUEUE_EVENTS_CHANNEL. Raises ValueError for one it cannot read."""
    tenant_text, _, rest = payload.partition(" ")
    tenant_id = UUID(tenant_text)
    if not rest:
        return EventNotice(tenant_id)
    seq_text, _, body = rest.partition(" ")
    seq = int(seq_text)
    return EventNotice(tenant_id, seq, {"seq": seq, **json.loads(body)} if body else None)


def _task_data(task: ReviewTask) -> dict[str, Any]:
    return {
        "task_id": str(task.pk),
        "contract_id": str(task.contract_id),
        "kind": task.kind,
        "status": task.status,
        "risk_score": task.risk_score,
        "claimed_by": task.claimed_by.get_username() if task.claimed_by_id else None,
        "claim_expires_at": task.claim_expires_at.isoformat() if task.claim_expires_at else None,
    }


def _next_seq(tenant_id: UUID, *, notice_body: str) -> int:
    """The tenant's next event number. The UPDATE holds the tenant row lock until the
    caller commits, so numbers are handed out in commit order: seeing N+1 means N is
    already durable. (Callers emit last in their transaction, to hold it briefly.)"""
    qn, pk, seq = connection.ops.quote_name, Tenant._meta.pk, Tenant._meta.get_field("event_seq").column
    # On PostgreSQL the same statement queues the NOTIFY that carries the event to the
    # relays, numbered with the seq it takes: sent at commit, so no reader sees it
    # before the row is visible, and with no round trip of its own.
    notify = (f", pg_notify('{QUEUE_EVENTS_CHANNEL}', %s::text || ' ' || {qn(seq)}::text || %s::text)"
              if connection.vendor == "postgresql" else "")
    params = [pk.get_db_prep_value(tenant_id, connection)]
    if notify:
        params += [str(tenant_id), f" {notice_body}" if notice_body else ""]
    with connection.cursor() as cursor:
        # One round trip: UPDATE ... RETURNING (PostgreSQL, and SQLite since 3.35).
        cursor.execute(
            f"UPDATE {qn(Tenant._meta.db_table)} SET {qn(seq)} = {qn(seq)} + 1"
            f" WHERE {qn(pk.column)} = %s RETURNING {qn(seq)}{notify}",
            params,
        )
        row = cursor.fetchone()
    if row is None:
        raise Tenant.DoesNotExist(tenant_id)
    return row[0]


# Three per contract: its SQL rendered once (config.compiled_writes).
_EVENT_INSERT = CompiledInsert(QueueEvent)


def event_emit(
    *, tenant_id: UUID, type: str, task: ReviewTask | None = None, contract=None, extra: dict[str, Any] | None = None
) -> QueueEvent:
    """Record an event inside the caller's transaction; the relays deliver it after commit.
    `extra`: what this type of event says besides the task's or contract's fields."""
    assert type in EVENT_TYPES, type
    if task is not None:
        data = _task_data(task)
    else:
        data = {"contract_id": str(contract.pk), "status": contract.status, "risk_score": contract.risk_score}
    if extra:
        data.update(extra)
    now = timezone.now()
    body = json.dumps(_public_unnumbered(type, now, data), separators=(",", ":"))
    # No savepoint: nothing here is meant to fail on its own and be caught (two round
    # trips fewer per event); outside a transaction this still opens one.
    with transaction.atomic(savepoint=False):
        seq = _next_seq(tenant_id, notice_body=body if len(body.encode()) <= NOTICE_BODY_MAX_BYTES else "")
        event = _EVENT_INSERT.create(
            tenant_id=tenant_id, seq=seq, type=type, task=task, contract_id=contract.pk if contract else task.contract_id,
            data=data, created_at=now,
        )
    if connection.vendor != "postgresql":
        # No NOTIFY here: a relay in this process reads at once, the others at their poll.
        transaction.on_commit(lambda: _relays_poke(tenant_id))
    return event


def _relays_poke(tenant_id: UUID) -> None:
    from reviews.relay import queue_event_relays_poke  # the relay imports this module

    queue_event_relays_poke(tenant_id)
