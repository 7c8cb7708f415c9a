"""Queue events, from this one module.

Each event is written in the same transaction as the change it reports, numbered by a
per-tenant sequence (durable: the catch-up API reads these rows), and broadcast to the
tenant's websocket group only after that transaction commits (live, at-most-once:
Channels may drop it, which the sequence number lets clients notice).
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F

from reviews.models import QueueEvent, ReviewTask
from tenants.models import Tenant

logger = logging.getLogger(__name__)

REVIEW_CREATED = "review.created"
REVIEW_CLAIMED = "review.claimed"
REVIEW_RELEASED = "review.released"
REVIEW_RESOLVED = "review.resolved"
REVIEW_CANCELLED = "review.cancelled"
CONTRACT_COMPLETED = "contract.completed"
EVENT_TYPES = (REVIEW_CREATED, REVIEW_CLAIMED, REVIEW_RELEASED, REVIEW_RESOLVED, REVIEW_CANCELLED, CONTRACT_COMPLETED)


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


def event_emit(*, tenant_id: UUID, type: str, task: ReviewTask | None = None, contract=None) -> QueueEvent:
    """Record an event inside the caller's transaction and broadcast it after commit."""
    assert type in EVENT_TYPES, type
    with transaction.atomic():
        # The UPDATE holds the tenant row lock until the caller commits, so sequence
        # numbers are handed out in commit order: seeing N+1 means N is already durable.
        Tenant.objects.filter(pk=tenant_id).update(event_seq=F("event_seq") + 1)
        seq = Tenant.objects.filter(pk=tenant_id).values_list("event_seq", flat=True).get()
        if task is not None:
            data = _task_data(task)
        else:
            data = {"contract_id": str(contract.pk), "status": contract.status, "risk_score": contract.risk_score}
        event = QueueEvent.objects.create(
            tenant_id=tenant_id, seq=seq, type=type, task=task, contract_id=contract.pk if contract else task.contract_id, data=data
        )
    transaction.on_commit(lambda: _broadcast(tenant_id, event_public(event)))
    return event


def _broadcast(tenant_id: UUID, payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(tenant_group_name(tenant_id), {"type": "queue.event", "event": payload})
    except Exception:
        # The change is committed and the event is in the catch-up log; a lost live
        # message must not turn a successful request into an error.
        logger.exception("broadcast of event %s for tenant %s failed", payload.get("seq"), tenant_id)
