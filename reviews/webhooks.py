"""Webhooks: a tenant's endpoints are told of its queue events, signed, retried, logged.

Where deliveries come from: the durable queue event log (QueueEvent: per tenant, `seq`
gap-free in commit order). Each endpoint keeps a cursor, `last_seq`; the fan-out turns
the events past it into deliveries in the same transaction that moves it, under the
endpoint's row lock, so every event gets one delivery per endpoint whatever crashes,
restarts or changes of scheduler leader happen in between (a unique constraint on
(endpoint, seq) says so too). A new endpoint starts at the tenant's latest event.

How they are sent: the scheduler's `webhooks` job claims due deliveries (a lease,
committed) and hands them to a small pool of sender threads in its own process; the
HTTP happens there, after commit, outside any lock and never in a request or in the
scheduler's loop, which only claims and moves on. One endpoint's deliveries go out one
batch at a time on one thread, so a slow or dead receiver holds at most that thread
(each phase of a request is bounded by WEBHOOK_TIMEOUT_SECONDS) and never another
endpoint's deliveries, nor the queue. When a batch hits a failure the rest of it waits
for the same retry time instead of each spending a timeout on a receiver that is down.

Outcomes: recorded in a second short transaction, by the lease's holder only. A 2xx
succeeds; anything else is retried with exponential backoff (WEBHOOK_RETRY_BASE_SECONDS
doubling up to WEBHOOK_RETRY_MAX_SECONDS, with jitter) until WEBHOOK_MAX_ATTEMPTS, then
the delivery is `failed` (a tenant admin may send it again). Every attempt is logged on
the delivery. At least once: a sender that dies mid-request leaves its lease to run out
and the delivery goes again with the same `webhook-id`, by which receivers drop
duplicates.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from config.api_errors import Conflict, InvalidInput
from reviews.events import EVENT_TYPES, event_public
from reviews.models import DeliveryStatus, QueueEvent, WebhookDelivery, WebhookEndpoint
from reviews.webhook_transport import webhook_post, webhook_secret_new, webhook_url_check
from tenants.models import Tenant
from tenants.services import audit_record

logger = logging.getLogger(__name__)

FAN_OUT_BATCH = 500
# Deliveries one sender thread takes for one endpoint per claim.
SEND_BATCH = 20
# How many endpoints one run of the job starts sending to at most.
ENDPOINTS_PER_RUN = 200


# --- Endpoints (tenant admins) ----------------------------------------------------------


def _event_types_checked(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput("event_types: a non-empty list of event types.",
                           fields={"event_types": ["A non-empty list of event types."]})
    unknown = sorted(set(value) - set(EVENT_TYPES))
    if unknown:
        message = f"Unknown event type {unknown[0]!r}; one of {', '.join(EVENT_TYPES)}."
        raise InvalidInput(f"event_types: {message}", fields={"event_types": [message]})
    return sorted(set(value))


def webhook_endpoint_create(
    *, tenant: Tenant, url: str, event_types: list[str], description: str = "", actor: AbstractBaseUser, via: str
) -> WebhookEndpoint:
    """Register a URL for some of the tenant's events, from the next event on. Its
    signing secret is on the returned row: show it to the admin now."""
    webhook_url_check(url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE_URLS)
    types = _event_types_checked(event_types)
    with transaction.atomic():  # the endpoint, its starting cursor and its audit record together
        # Events committed before this read are history to this endpoint; every later
        # one has a higher seq (numbers follow commit order) and is delivered.
        latest = Tenant.objects.filter(pk=tenant.pk).values_list("event_seq", flat=True).get()
        endpoint = WebhookEndpoint.objects.create(
            tenant=tenant, url=url, description=description, event_types=types, secret=webhook_secret_new(),
            last_seq=latest, created_by=actor,
        )
        audit_record(tenant=tenant, actor=actor, action="webhook.created", via=via, target=endpoint,
                     data={"url": url, "event_types": types})
    return endpoint


def webhook_endpoint_update(
    *, endpoint: WebhookEndpoint, changes: dict[str, Any], actor: AbstractBaseUser, via: str
) -> WebhookEndpoint:
    """Change the URL, event types, description or active flag. A paused endpoint
    (is_active false) keeps collecting deliveries and sends them once active again."""
    fields: dict[str, Any] = {}
    if "url" in changes:
        webhook_url_check(changes["url"], allow_private=settings.WEBHOOK_ALLOW_PRIVATE_URLS)
        fields["url"] = changes["url"]
    if "event_types" in changes:
        fields["event_types"] = _event_types_checked(changes["event_types"])
    for name in ("description", "is_active"):
        if name in changes:
            fields[name] = changes[name]
    # The change and its audit record commit together, or neither does.
    with transaction.atomic():
        WebhookEndpoint.objects.filter(tenant_id=endpoint.tenant_id, pk=endpoint.pk).update(**fields, updated_at=timezone.now())
        endpoint.refresh_from_db()
        audit_record(tenant=endpoint.tenant, actor=actor, action="webhook.changed", via=via, target=endpoint,
                     data={k: v for k, v in fields.items()})
    return endpoint


def webhook_secret_rotate(*, endpoint: WebhookEndpoint, actor: AbstractBaseUser, via: str) -> WebhookEndpoint:
    """A new signing secret, effective for every attempt from now on (retries too)."""
    with transaction.atomic():  # the secret and its audit record together
        endpoint.secret = webhook_secret_new()
        endpoint.save(update_fields=["secret", "updated_at"])
        audit_record(tenant=endpoint.tenant, actor=actor, action="webhook.secret_rotated", via=via, target=endpoint,
                     data={"url": endpoint.url})
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: AbstractBaseUser, via: str) -> None:
    """Remove the endpoint and its delivery log. A request in flight finishes; its
    outcome finds nothing to record."""
    with transaction.atomic():  # the audit record survives the row it describes
        audit_record(tenant=endpoint.tenant, actor=actor, action="webhook.deleted", via=via, target=endpoint,
                     data={"url": endpoint.url, "event_types": endpoint.event_types})
        endpoint.delete()


def webhook_delivery_retry(
    *, delivery: WebhookDelivery, actor: AbstractBaseUser, via: str, now: datetime | None = None
) -> WebhookDelivery:
    """Send a failed delivery again, now, with a fresh set of attempts."""
    now = now or timezone.now()
    with transaction.atomic():
        # A conditional UPDATE: of two admins pressing "send again" at once, one resets it.
        updated = WebhookDelivery.objects.filter(
            tenant_id=delivery.tenant_id, pk=delivery.pk, status=DeliveryStatus.FAILED
        ).update(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, lease_until=None, lease_token="")
        if not updated:
            raise Conflict("Only a failed delivery can be sent again.", extra={"status": delivery.status})
        delivery.refresh_from_db()
        audit_record(tenant=delivery.tenant, actor=actor, action="webhook.delivery_retried", via=via,
                     target=delivery, data={"endpoint": str(delivery.endpoint_id), "seq": delivery.seq})
    return delivery


# --- Fan-out: events -> deliveries ----------------------------------------------------------


def webhook_body(*, tenant_slug: str, event: QueueEvent) -> str:
    """What a receiver gets: Standard Webhooks' {type, timestamp, data}; `data` is the
    event as the live queue and the catch-up API show it, with the tenant's slug."""
    payload = {
        "type": event.type,
        "timestamp": event.created_at.isoformat(),
        "data": {"tenant": tenant_slug, **event_public(event)},
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def webhook_deliveries_fan_out(*, now: datetime | None = None, batch_size: int = FAN_OUT_BATCH) -> int:
    """Turn the events past every endpoint's cursor into deliveries, a paused endpoint's
    too (they wait for it: sending skips it, and the log they come from is pruned after
    QUEUE_EVENT_RETENTION_DAYS). Returns how many deliveries were created."""
    now = now or timezone.now()
    behind = list(
        WebhookEndpoint.objects.filter(last_seq__lt=F("tenant__event_seq")).values_list("tenant_id", "pk")
    )
    created = 0
    for tenant_id, endpoint_id in behind:
        with transaction.atomic():
            # The endpoint's row lock serialises its cursor: a second scheduler racing
            # here waits, then reads the moved cursor and finds nothing left to do.
            endpoint = (
                WebhookEndpoint.objects.select_for_update(of=("self",), no_key=True).select_related("tenant")
                .filter(tenant_id=tenant_id, pk=endpoint_id).first()
            )
            if endpoint is None:
                continue
            # Read the tenant's position first: every event up to it is committed, so
            # what follows is a gap-free run, except where the log was pruned.
            latest = Tenant.objects.filter(pk=tenant_id).values_list("event_seq", flat=True).get()
            events = list(
                QueueEvent.objects.filter(tenant_id=tenant_id, seq__gt=endpoint.last_seq, seq__lte=latest)
                .order_by("seq")[:batch_size]
            )
            first = events[0].seq if events else latest + 1
            missed = first - endpoint.last_seq - 1
            if missed:
                logger.warning("webhook %s: %d events were pruned before they could be delivered", endpoint.pk, missed)
            wanted = set(endpoint.event_types)
            rows = [
                WebhookDelivery(
                    tenant_id=tenant_id, endpoint=endpoint, seq=event.seq, event_type=event.type,
                    body=webhook_body(tenant_slug=endpoint.tenant.slug, event=event), next_attempt_at=now,
                )
                for event in events
                if event.type in wanted
            ]
            WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
            endpoint.last_seq = events[-1].seq if len(events) == batch_size else latest
            endpoint.events_missed += missed
            endpoint.save(update_fields=["last_seq", "events_missed", "updated_at"])
            created += len(rows)
    return created


# --- Sending ----------------------------------------------------------------------------


def webhook_retry_backoff(attempt: int) -> timedelta:
    """After the `attempt`-th failure: base doubling, capped, with jitter so receivers
    that come back are not all hit in the same instant."""
    seconds = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return timedelta(seconds=seconds * random.uniform(0.8, 1.0))


@dataclass(frozen=True)
class _Claimed:
    tenant_id: UUID
    endpoint_id: UUID
    url: str
    secret: str
    token: str
    deliveries: list[tuple[UUID, str, str]]  # (id, webhook-id, body)


class _Senders:
    """The sender threads of this process and the endpoints they are busy with.

    Daemon threads fed by a queue, not a ThreadPoolExecutor: the executor's threads are
    joined at interpreter exit, so a worker stopping while a receiver hangs would wait
    for it. A batch cut short by the exit keeps its lease, which runs out, and is sent
    again (at least once)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.busy: set[UUID] = set()
        self.work: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []

    def submit(self, batch: "_Claimed", now: datetime) -> None:
        with self.lock:
            self.threads = [t for t in self.threads if t.is_alive()]
            while len(self.threads) < settings.WEBHOOK_CONCURRENCY:
                thread = threading.Thread(target=self._run, name=f"webhook-sender-{len(self.threads)}", daemon=True)
                thread.start()
                self.threads.append(thread)
        self.work.put((batch, now))

    def _run(self) -> None:
        while True:
            batch, now = self.work.get()
            _send(batch, now)

    def take(self, endpoint_id: UUID) -> bool:
        with self.lock:
            if endpoint_id in self.busy:
                return False
            self.busy.add(endpoint_id)
            return True

    def give_back(self, endpoint_id: UUID) -> None:
        with self.lock:
            self.busy.discard(endpoint_id)


_senders = _Senders()


def _lease_seconds() -> float:
    # Longer than a whole batch can take, so a live sender never loses its claim.
    return settings.WEBHOOK_TIMEOUT_SECONDS * 4 * SEND_BATCH + 60


def webhook_deliveries_dispatch(*, now: datetime | None = None) -> int:
    """Claim the due deliveries, endpoint by endpoint, and hand each endpoint's batch to
    a sender thread; returns at once with the number claimed. Skips an endpoint this
    process is already sending to, and one whose deliveries another process holds a
    lease on (a change of leader mid-request)."""
    now = now or timezone.now()
    tenant_ids = list(Tenant.objects.values_list("pk", flat=True))
    due = (
        WebhookDelivery.objects.filter(tenant_id__in=tenant_ids, status=DeliveryStatus.PENDING, next_attempt_at__lte=now,
                                       endpoint__is_active=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .values_list("tenant_id", "endpoint_id").distinct()[:ENDPOINTS_PER_RUN]
    )
    claimed = 0
    for tenant_id, endpoint_id in list(due):
        if not _senders.take(endpoint_id):
            continue
        try:
            batch = _claim(tenant_id=tenant_id, endpoint_id=endpoint_id, now=now)
        except Exception:
            _senders.give_back(endpoint_id)
            raise
        if batch is None:
            _senders.give_back(endpoint_id)
            continue
        claimed += len(batch.deliveries)
        _senders.submit(batch, now)
    return claimed


def _claim(*, tenant_id: UUID, endpoint_id: UUID, now: datetime) -> _Claimed | None:
    with transaction.atomic():
        # The endpoint's row lock serialises claims on its deliveries across processes;
        # the lease written here, committed before any request goes out, is what keeps
        # every other sender off them.
        endpoint = (
            WebhookEndpoint.objects.select_for_update(no_key=True)
            .filter(tenant_id=tenant_id, pk=endpoint_id, is_active=True).first()
        )
        if endpoint is None:
            return None
        pending = WebhookDelivery.objects.filter(tenant_id=tenant_id, endpoint_id=endpoint_id, status=DeliveryStatus.PENDING)
        if pending.filter(lease_until__gt=now).exists():
            return None  # another sender is still at it
        rows = list(pending.filter(next_attempt_at__lte=now).order_by("seq").values_list("pk", "body")[:SEND_BATCH])
        if not rows:
            return None
        token = uuid.uuid4().hex
        pending.filter(pk__in=[pk for pk, _ in rows]).update(
            lease_until=now + timedelta(seconds=_lease_seconds()), lease_token=token
        )
    return _Claimed(tenant_id=tenant_id, endpoint_id=endpoint_id, url=endpoint.url, secret=endpoint.secret, token=token,
                    deliveries=[(pk, f"msg_{pk.hex}", body) for pk, body in rows])


def _send(batch: _Claimed, now: datetime) -> None:
    """A sender thread: the batch's requests one after the other, each outcome recorded
    as it comes. Backoff counts from `now`, the claim's time (the scheduler's clock)."""
    try:
        for index, (delivery_id, msg_id, body) in enumerate(batch.deliveries):
            attempt = webhook_post(url=batch.url, secret=batch.secret, msg_id=msg_id, body=body.encode(),
                                   timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
                                   allow_private=settings.WEBHOOK_ALLOW_PRIVATE_URLS)
            retry_at = _record(batch=batch, delivery_id=delivery_id, attempt=attempt, now=now)
            if not attempt.ok:
                # The receiver looks down: the rest of the batch waits for the same time,
                # no attempt counted, rather than each spending a timeout on it now.
                rest = [pk for pk, _, _ in batch.deliveries[index + 1:]]
                if rest:
                    WebhookDelivery.objects.filter(tenant_id=batch.tenant_id, pk__in=rest, lease_token=batch.token).update(
                        lease_until=None, lease_token="", next_attempt_at=retry_at or now
                    )
                break
    except Exception:
        # Whatever is not recorded keeps its lease, which runs out, and is sent again.
        logger.exception("webhook %s: sending failed", batch.endpoint_id)
    finally:
        _senders.give_back(batch.endpoint_id)
        close_old_connections()
        connection.close()


def _record(*, batch: _Claimed, delivery_id: UUID, attempt: Any, now: datetime) -> datetime | None:
    """Write one attempt's outcome, if the lease is still ours. Returns the retry time
    given (None when it succeeded or failed for good)."""
    with transaction.atomic():
        # Locked and re-checked: a sender whose lease ran out and was claimed again
        # must not overwrite the newer sender's outcome.
        delivery = (
            WebhookDelivery.objects.select_for_update(no_key=True)
            .filter(tenant_id=batch.tenant_id, pk=delivery_id, lease_token=batch.token, status=DeliveryStatus.PENDING)
            .first()
        )
        if delivery is None:
            return None
        at = timezone.now()
        delivery.attempts += 1
        delivery.last_attempt_at = at
        delivery.last_status_code = attempt.status_code
        delivery.last_error = attempt.error
        delivery.attempt_log = [*delivery.attempt_log, {
            "at": at.isoformat(), "status_code": attempt.status_code, "error": attempt.error,
            "duration_ms": attempt.duration_ms,
        }][-50:]
        delivery.lease_until, delivery.lease_token = None, ""
        retry_at = None
        if attempt.ok:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.delivered_at = at
            delivery.next_attempt_at = None
        elif delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
        else:
            retry_at = now + webhook_retry_backoff(delivery.attempts)
            delivery.next_attempt_at = retry_at
        delivery.save(update_fields=[
            "attempts", "last_attempt_at", "last_status_code", "last_error", "attempt_log", "lease_until", "lease_token",
            "status", "delivered_at", "next_attempt_at",
        ])
    return retry_at


def webhook_deliveries_run(*, now: datetime | None = None) -> int:
    """The scheduler's job: fan out new events, then start sending what is due."""
    now = now or timezone.now()
    return webhook_deliveries_fan_out(now=now) + webhook_deliveries_dispatch(now=now)


def webhook_deliveries_prune(*, now: datetime | None = None) -> int:
    """Forget deliveries that are done (succeeded or failed) older than
    WEBHOOK_DELIVERY_RETENTION_DAYS. Returns how many were deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS)
    return WebhookDelivery.objects.filter(
        status__in=[DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED], created_at__lt=cutoff
    ).delete()[0]
