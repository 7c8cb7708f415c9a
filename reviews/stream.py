"""The live review-queue stream: who may follow it, where it stands, catch-up, tickets,
retention. Events themselves are recorded by reviews.events and delivered live by
reviews.relay; this module only reads them.

The stream's contract with a client: every event carries the tenant's sequence number
`seq`, gap-free in commit order. A client that holds position N has applied every event
up to N; if it receives N+2 (or a heartbeat saying the stream is at N+2) it lost N+1 to
the live path (an event a failed check could not send) and fetches `events/?after=N` over
REST. If the events after N are no longer retained, it reloads the queue instead.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, QuerySet
from django.utils import timezone
from rest_framework import status

from config.api_errors import ApplicationError
from config.compiled_sql import CompiledQuery, placeholder_int, placeholder_uuid
from reviews.events import event_public
from reviews.models import QueueEvent, WebsocketTicket
from tenants.models import PEOPLE_ROLES
from tenants.models import ApiToken, Membership, Tenant

# Roles that may follow the queue live: exactly those that may read the whole review
# queue of their tenant over REST (people, not agents). Every event of the tenant is
# visible to each of them, so events are never filtered per subscriber, only the
# subscriber as a whole is checked. Were per-task visibility ever narrowed, hidden
# events would have to be sent redacted (seq and type only), never skipped: a skipped
# sequence number is indistinguishable from a lost one.
STREAM_ROLES = PEOPLE_ROLES

TICKET_TTL = timedelta(seconds=30)
# A client further behind than this reloads the queue instead of replaying events.
REPLAY_MAX = 1_000
EVENTS_PAGE_DEFAULT = 100
EVENTS_PAGE_MAX = 1_000
# Read at call time, so tests can override them in settings.


def stream_heartbeat_seconds() -> float:
    return float(settings.QUEUE_STREAM_HEARTBEAT_SECONDS)


def queue_event_retention() -> timedelta:
    return timedelta(days=settings.QUEUE_EVENT_RETENTION_DAYS)


class ResyncRequired(ApplicationError):
    """The events after the client's position are gone (pruned, or the position is
    ahead of the stream, e.g. after a restore): reload the queue, then follow on from
    `latest_seq`."""

    status_code = status.HTTP_410_GONE
    code = "resync_required"


# --- Subscribers ------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSubscriber:
    """One websocket's right to follow one tenant's queue, re-checked on every event."""

    tenant_id: UUID
    tenant_slug: str
    user_id: int
    # The API token behind the ticket, if any: revoking it ends the subscription.
    api_token_id: int | None = None


def stream_position(*, subscriber: StreamSubscriber) -> int | None:
    """The tenant's latest sequence number if the subscriber may still follow its queue,
    None if not (membership removed, role changed to one that may not read the queue,
    user deactivated, API token revoked). Always a fresh read: nothing is cached on the
    connection, because `scope["user"]` was resolved once, at connect."""
    return stream_positions(subscribers=[subscriber])[subscriber]


# The same rules for one subscriber, in one query compiled once (config.compiled_sql):
# with one subscriber per tenant and process (a reviewer's screen) it is what every
# event costs the server.
_MEMBER_POSITION = CompiledQuery(
    lambda tenant_id, user_id: _members_following(tenant_id=tenant_id, user_ids=[user_id]),
    tenant_id=placeholder_uuid(1), user_id=placeholder_int(2),
)
_MEMBER_POSITION_BY_TOKEN = CompiledQuery(
    lambda tenant_id, user_id, token_id: _members_following(tenant_id=tenant_id, user_ids=[user_id]).filter(
        Exists(ApiToken.objects.filter(pk=token_id, user_id=OuterRef("user_id"), revoked_at__isnull=True))
    ),
    tenant_id=placeholder_uuid(1), user_id=placeholder_int(2), token_id=placeholder_int(3),
)


def _members_following(*, tenant_id: UUID, user_ids) -> QuerySet:
    """(user id, the tenant's latest seq) of those of `user_ids` who may follow its queue."""
    return Membership.objects.filter(
        tenant_id=tenant_id, user_id__in=user_ids, user__is_active=True, role__in=STREAM_ROLES,
    ).values_list("user_id", "tenant__event_seq")


def stream_positions(*, subscribers: list[StreamSubscriber]) -> dict[StreamSubscriber, int | None]:
    """stream_position for many subscribers at once, by the same rules: one query per
    tenant among them, plus one for their API tokens. What a server process runs when
    one event reaches its many sockets of a tenant: every subscriber checked fresh, for
    two queries rather than one per socket (one for a single subscriber)."""
    if len(subscribers) == 1:
        [one] = subscribers
        if one.api_token_id is None:
            rows = _MEMBER_POSITION.fetch(tenant_id=one.tenant_id, user_id=one.user_id)
        else:
            rows = _MEMBER_POSITION_BY_TOKEN.fetch(tenant_id=one.tenant_id, user_id=one.user_id, token_id=one.api_token_id)
        return {one: rows[0][1] if rows else None}
    results: dict[StreamSubscriber, int | None] = dict.fromkeys(subscribers)
    by_tenant: dict[UUID, list[StreamSubscriber]] = {}
    for subscriber in subscribers:
        by_tenant.setdefault(subscriber.tenant_id, []).append(subscriber)
    token_ids = {s.api_token_id for s in subscribers if s.api_token_id is not None}
    live_tokens = set(
        ApiToken.objects.filter(pk__in=token_ids, revoked_at__isnull=True).values_list("pk", "user_id")
    ) if token_ids else set()
    for tenant_id, members_of_tenant in by_tenant.items():
        user_ids = {s.user_id for s in members_of_tenant}
        positions = dict(_members_following(tenant_id=tenant_id, user_ids=user_ids))
        for subscriber in members_of_tenant:
            token_ok = subscriber.api_token_id is None or (subscriber.api_token_id, subscriber.user_id) in live_tokens
            if subscriber.user_id in positions and token_ok:
                results[subscriber] = positions[subscriber.user_id]
    return results


def stream_subscriber_for_user(*, tenant_slug: str, user: AbstractBaseUser) -> StreamSubscriber | None:
    """A signed-in browser user (session cookie) as a subscriber of `tenant_slug`."""
    if not user.is_authenticated:
        return None
    tenant_id = Tenant.objects.filter(slug=tenant_slug).values_list("pk", flat=True).first()
    if tenant_id is None:
        return None
    subscriber = StreamSubscriber(tenant_id=tenant_id, tenant_slug=tenant_slug, user_id=user.pk)
    return subscriber if stream_position(subscriber=subscriber) is not None else None


# --- Tickets ----------------------------------------------------------------------------


def _ticket_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def websocket_ticket_create(
    *, tenant: Tenant, user: AbstractBaseUser, api_token: ApiToken | None = None, now: datetime | None = None
) -> tuple[WebsocketTicket, str]:
    """A single-use ticket for one queue websocket of `tenant`, valid for TICKET_TTL.
    Returns the row and the clear key, which is never stored. The caller has checked
    that the user may follow the queue; the consumer checks again at connect."""
    now = now or timezone.now()
    key = secrets.token_urlsafe(32)
    ticket = WebsocketTicket.objects.create(
        tenant=tenant, user=user, api_token=api_token, key_hash=_ticket_hash(key), expires_at=now + TICKET_TTL
    )
    return ticket, key


def websocket_ticket_consume(*, tenant_slug: str, key: str, now: datetime | None = None) -> StreamSubscriber | None:
    """Spend a ticket on a websocket of `tenant_slug`. None if it does not exist, is for
    another tenant, has expired or was used already, or its holder may no longer follow
    the queue. Safe across server processes: see the UPDATE below."""
    now = now or timezone.now()
    tenant_id = Tenant.objects.filter(slug=tenant_slug).values_list("pk", flat=True).first()
    if tenant_id is None or not key or len(key) > 200:
        return None
    key_hash = _ticket_hash(key)
    # One conditional UPDATE is the compare-and-set: of two connects racing with the
    # same ticket (on any processes), PostgreSQL re-checks `used_at IS NULL` on the row
    # after the first commits, so exactly one gets a row count of 1. The conditions are
    # on the ticket's own columns (no join), which is what makes that re-check apply.
    with transaction.atomic():
        spent = WebsocketTicket.objects.filter(
            tenant_id=tenant_id, key_hash=key_hash, used_at__isnull=True, expires_at__gt=now
        ).update(used_at=now)
        if spent != 1:
            return None
        ticket = WebsocketTicket.objects.values("user_id", "api_token_id").get(tenant_id=tenant_id, key_hash=key_hash)
    subscriber = StreamSubscriber(
        tenant_id=tenant_id, tenant_slug=tenant_slug, user_id=ticket["user_id"], api_token_id=ticket["api_token_id"]
    )
    # A ticket is only as good as the membership and token behind it at connect time.
    return subscriber if stream_position(subscriber=subscriber) is not None else None


# --- Catch-up ---------------------------------------------------------------------------


def queue_event_list_after(
    *, tenant_id: UUID, after: int, limit: int, until: int | None = None
) -> tuple[list[dict[str, Any]], bool, int]:
    """The events with `after < seq <= until` (default: up to the latest), oldest first,
    at most `limit`; returns (events as subscribers see them, has_more, latest_seq).

    Raises ResyncRequired when the events right after `after` are no longer retained, or
    `after` is beyond the stream: the caller cannot resynchronise from events and must
    reload the queue."""
    # Read the position first: everything up to it is committed (sequence numbers are
    # handed out in commit order), so the rows read next are a gap-free run.
    latest = Tenant.objects.filter(pk=tenant_id).values_list("event_seq", flat=True).get()
    until = latest if until is None else min(until, latest)
    if after > latest:
        raise ResyncRequired("Your position is ahead of the stream; reload the queue.", extra={"latest_seq": latest})
    rows = list(
        QueueEvent.objects.filter(tenant_id=tenant_id, seq__gt=after, seq__lte=until).order_by("seq")[: limit + 1]
    )
    # Pruning keeps a gap-free suffix (see queue_events_prune), so the run either starts
    # right after `after` or the events in between are gone.
    if after < until and (not rows or rows[0].seq != after + 1):
        raise ResyncRequired("The events after your position are no longer retained; reload the queue.",
                             extra={"latest_seq": latest})
    has_more = len(rows) > limit
    return [event_public(event) for event in rows[:limit]], has_more, latest


@dataclass(frozen=True)
class StreamStart:
    latest_seq: int
    replay: list[dict[str, Any]]
    resync: bool


def stream_start(*, subscriber: StreamSubscriber, after: int | None) -> StreamStart | None:
    """Where a new websocket starts: the latest sequence number, and the events a client
    at `after` missed (or `resync` if they cannot be replayed). None if the subscriber
    may no longer follow the queue. Called after the consumer joined the group, so every
    event past `latest_seq` reaches it live."""
    latest = stream_position(subscriber=subscriber)
    if latest is None:
        return None
    if after is None or after == latest:
        return StreamStart(latest_seq=latest, replay=[], resync=False)
    if after > latest or latest - after > REPLAY_MAX:
        return StreamStart(latest_seq=latest, replay=[], resync=True)
    try:
        replay, _, _ = queue_event_list_after(
            tenant_id=subscriber.tenant_id, after=after, limit=REPLAY_MAX, until=latest
        )
    except ResyncRequired:
        return StreamStart(latest_seq=latest, replay=[], resync=True)
    return StreamStart(latest_seq=latest, replay=replay, resync=False)


# --- Retention --------------------------------------------------------------------------


def queue_events_prune(*, older_than: timedelta, now: datetime | None = None, batch_size: int = 5_000) -> int:
    """Delete queue events older than `older_than`, and spent or expired websocket
    tickets. Returns the number of events deleted.

    Per tenant, everything up to the newest expired event's `seq` goes, so what remains
    is always a gap-free suffix of the stream: a client is either fully served by the
    catch-up API or told to reload, never handed a run with a hole in it. Deletes in
    batches so no transaction holds many row locks for long."""
    now = now or timezone.now()
    cutoff = now - older_than
    boundaries = (
        QueueEvent.objects.filter(created_at__lt=cutoff).values("tenant_id").annotate(boundary=Max("seq"))
    )
    deleted = 0
    for row in boundaries:
        while True:
            batch = list(
                QueueEvent.objects.filter(tenant_id=row["tenant_id"], seq__lte=row["boundary"])
                .order_by("seq")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not batch:
                break
            deleted += QueueEvent.objects.filter(pk__in=batch).delete()[0]
    # A ticket past its expiry is worthless whether it was used or not.
    WebsocketTicket.objects.filter(expires_at__lt=now).delete()
    return deleted
