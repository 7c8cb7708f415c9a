"""Queue events, from this one module.

Each event is written in the same transaction as the change it reports, numbered by a
per-tenant sequence (durable: the catch-up API reads these rows), and broadcast to the
tenant's websocket group only after that transaction commits (live, at-most-once:
Channels may drop it, which the sequence number lets clients notice).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import connection, transaction

from reviews.models import QueueEvent, ReviewTask
from tenants.models import Tenant

logger = logging.getLogger(__name__)

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


def tenant_group_name(tenant_id: UUID | str) -> str:
    # Channels group names: ASCII letters, digits, hyphens, periods; under 100 characters.
    return f"tenant-{tenant_id}.reviews"


def event_public(event: QueueEvent) -> dict[str, Any]:
    """What a subscriber receives: nothing a tenant member could not read over REST."""
    return {"seq": event.seq, "type": event.type, "at": event.created_at.isoformat(), **event.data}


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


def _next_seq(tenant_id: UUID) -> int:
    """The tenant's next event number. The UPDATE holds the tenant row lock until the
    caller commits, so numbers are handed out in commit order: seeing N+1 means N is
    already durable. (Callers emit last in their transaction, to hold it briefly.)"""
    qn, pk, seq = connection.ops.quote_name, Tenant._meta.pk, Tenant._meta.get_field("event_seq").column
    with connection.cursor() as cursor:
        # One round trip: UPDATE ... RETURNING (PostgreSQL, and SQLite since 3.35).
        cursor.execute(
            f"UPDATE {qn(Tenant._meta.db_table)} SET {qn(seq)} = {qn(seq)} + 1"
            f" WHERE {qn(pk.column)} = %s RETURNING {qn(seq)}",
            [pk.get_db_prep_value(tenant_id, connection)],
        )
        row = cursor.fetchone()
    if row is None:
        raise Tenant.DoesNotExist(tenant_id)
    return row[0]


def event_emit(
    *, tenant_id: UUID, type: str, task: ReviewTask | None = None, contract=None, extra: dict[str, Any] | None = None
) -> QueueEvent:
    """Record an event inside the caller's transaction and broadcast it after commit.
    `extra`: what this type of event says besides the task's or contract's fields."""
    assert type in EVENT_TYPES, type
    # No savepoint: nothing here is meant to fail on its own and be caught (two round
    # trips fewer per event); outside a transaction this still opens one.
    with transaction.atomic(savepoint=False):
        seq = _next_seq(tenant_id)
        if task is not None:
            data = _task_data(task)
        else:
            data = {"contract_id": str(contract.pk), "status": contract.status, "risk_score": contract.risk_score}
        if extra:
            data.update(extra)
        event = QueueEvent.objects.create(
            tenant_id=tenant_id, seq=seq, type=type, task=task, contract_id=contract.pk if contract else task.contract_id, data=data
        )
    transaction.on_commit(lambda: _broadcast(tenant_id, event_public(event)))
    return event


# Seconds a committed change waits for its live broadcast before giving up on it.
BROADCAST_TIMEOUT = 5.0

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _broadcast_loop() -> asyncio.AbstractEventLoop:
    """One long-lived event loop per process, in a daemon thread, for broadcasts.

    async_to_sync from a thread with no event loop above it (the task worker) runs each
    call on a new loop, and channels-redis keeps its connections per loop: every
    broadcast would open a Redis connection and close it again."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="queue-event-broadcast", daemon=True).start()
        return _loop


def _broadcast(tenant_id: UUID, payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    group, message = tenant_group_name(tenant_id), {"type": "queue.event", "event": payload}
    try:
        if isinstance(layer, InMemoryChannelLayer):
            # Its queues belong to the event loop of this process's consumers.
            async_to_sync(layer.group_send)(group, message)
        else:
            asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _broadcast_loop()).result(
                timeout=BROADCAST_TIMEOUT
            )
    except Exception:
        # The change is committed and the event is in the catch-up log; a lost live
        # message must not turn a successful request into an error.
        logger.exception("broadcast of event %s for tenant %s failed", payload.get("seq"), tenant_id)
