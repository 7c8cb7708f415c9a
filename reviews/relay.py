"""Live delivery of queue events to a server process's websockets, from the event log.

The log (reviews.models.QueueEvent, numbered per tenant without gaps in commit order,
written by reviews.events in the writer's own transaction) is the source of truth.
Each server process runs one reader (one per event loop, not one per socket) that
reads, for every tenant some socket of this process follows, the events committed
after the last one it handed out, in `seq` order, and hands each to those sockets.
Wherever an event was committed (this process, another server, a worker), the reader
finds it the same way, so the embedded default (SQLite, no Redis) and PostgreSQL work
alike:

- On PostgreSQL the writer's transaction also sends `NOTIFY hitl_queue_events` with the
  tenant, the event's seq and the event itself (delivered by the server at commit,
  never before, in commit order); the reader LISTENs on its own connection. The next
  event of a followed tenant is handed out straight from the notification; anything
  else (a seq past the next one, an event too large for a payload) makes it read that
  tenant's log at once. It also reads every followed tenant when
  `QUEUE_STREAM_POLL_MS` × 10 pass with no notification, and polls as on SQLite while
  its listening connection is down, so a lost notification costs delay, never an
  event.
- On SQLite (no notifications) it reads every `QUEUE_STREAM_POLL_MS`; an event
  committed by this same process wakes it at once (reviews.events pokes it on commit).

The reader knows nothing about subscribers: each socket re-checks its own right to
follow the tenant before it sends an event (reviews.consumers), and a tenant's events
only ever reach the sockets that followed that tenant's id.

Access changes. On PostgreSQL, triggers on the tables a subscriber's right rests on (API
tokens, memberships, users: migration reviews 0010) send `NOTIFY hitl_access_changed`
from the changing transaction, and the reader LISTENs on the same connection. One
connection receives notifications in the order their transactions committed, so by the
time an event's notification has been handled, every access change committed before that
event has been counted in `access_epoch`. A socket may therefore trust a check it made
at the current epoch instead of reading again for every event (reviews.consumers): the
revocation committed before an event is still always seen. Only events handed out
straight from their notification carry the epoch: an event read from the log (a
safety-net read may run while a dead connection has not been noticed yet) and every
event while the reader does not listen (connecting, reconnecting, SQLite) are checked
afresh.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any, Protocol
from uuid import UUID

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.db.models import Q

from config.compiled_sql import CompiledQuery, placeholder_int, placeholder_uuid
from config.postgresql.params import psycopg_params
from reviews.events import ACCESS_CHANGED_CHANNEL, QUEUE_EVENTS_CHANNEL, EventNotice, event_notice_parse, event_public
from reviews.models import QueueEvent
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# Events read per query; a tenant further behind is read again straight away.
READ_BATCH = 500
# After its listening connection fails, the reader tries again this often.
LISTEN_RETRY_SECONDS = 1.0


class Follower(Protocol):
    # access_epoch: the reader's at the event's notification; None for an event read
    # from the log. See the module docstring.
    async def deliver(self, event: dict[str, Any], access_epoch: int | None = None) -> None: ...


def _positions_read(tenant_ids: list[UUID]) -> dict[UUID, int]:
    return dict(Tenant.objects.filter(pk__in=tenant_ids).values_list("pk", "event_seq"))


# The read for one followed tenant, compiled once (config.compiled_sql): a server
# whose sockets follow one tenant runs it at every wake-up.
_ONE_TENANT_EVENTS = CompiledQuery(
    lambda tenant_id, position: QueueEvent.objects.filter(tenant_id=tenant_id, seq__gt=position)
    .order_by("tenant_id", "seq")[:READ_BATCH],
    tenant_id=placeholder_uuid(1), position=placeholder_int(1),
)


def _events_read(positions: dict[UUID, int], limit: int) -> list[QueueEvent]:
    """Events after each tenant's position, oldest first per tenant. One query for all:
    each tenant's part is a range scan of the (tenant, seq) unique index. Positions are
    committed numbers and numbers follow commit order, so what comes back is a gap-free
    run for each tenant (a transaction still open holds every number after it)."""
    if len(positions) == 1 and limit == READ_BATCH:
        [(tenant_id, position)] = positions.items()
        return _ONE_TENANT_EVENTS.fetch(tenant_id=tenant_id, position=position)
    condition = Q()
    for tenant_id, position in positions.items():
        condition |= Q(tenant_id=tenant_id, seq__gt=position)
    return list(QueueEvent.objects.filter(condition).order_by("tenant_id", "seq")[:limit])


# Not thread-sensitive: any worker thread with a pooled connection will do, and the
# reader never queues behind the sockets' own checks on the one shared thread.
_positions = database_sync_to_async(_positions_read, thread_sensitive=False)
_events = database_sync_to_async(_events_read, thread_sensitive=False)


class _Followed:
    def __init__(self, position: int) -> None:
        # Every event up to here was handed to this tenant's sockets (or predates them).
        self.position = position
        self.sockets: set[Follower] = set()


class QueueEventRelay:
    """This process's reader of the event log (see the module docstring)."""

    def __init__(self) -> None:
        self.followed: dict[UUID, _Followed] = {}
        self._wake = asyncio.Event()
        self._due: set[UUID] = set()  # tenants known to have new events
        self._all_due = False
        self._reader: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None
        self._listening = False
        # Counts the access changes seen, and every start and loss of the LISTEN
        # connection (notifications may have been missed around either).
        self._access_changes = 0
        # Deliveries in flight: the event loop keeps only weak references to tasks.
        self._deliveries: set[asyncio.Task] = set()

    # --- Sockets ------------------------------------------------------------------------

    async def follow(self, tenant_id: UUID, socket: Follower) -> None:
        """Hand `socket` every event of the tenant committed from now on. Returns once
        that holds: a socket that reads the tenant's position after this misses nothing."""
        followed = self.followed.get(tenant_id)
        if followed is None:
            position = (await _positions([tenant_id])).get(tenant_id, 0)
            # Another socket of the tenant may have started following meanwhile; the
            # lower position is the safe one (sockets drop what they already have).
            followed = self.followed.get(tenant_id)
            if followed is None:
                followed = self.followed[tenant_id] = _Followed(position)
            else:
                followed.position = min(followed.position, position)
        followed.sockets.add(socket)
        self._start()

    def unfollow(self, tenant_id: UUID, socket: Follower) -> None:
        followed = self.followed.get(tenant_id)
        if followed is not None:
            followed.sockets.discard(socket)
            if not followed.sockets:
                del self.followed[tenant_id]
        if not self.followed:
            # Nobody left to hand events to: stop reading and give the LISTEN connection
            # back; the next socket starts both again.
            for task in (self._reader, self._listener):
                if task is not None:
                    task.cancel()
            self._reader = self._listener = None
            self._listening = False
            self._access_changed()

    @property
    def access_epoch(self) -> int | None:
        """Changes with every access change committed since the reader began to listen;
        None while it does not listen (see the module docstring)."""
        return self._access_changes if self._listening else None

    def _access_changed(self) -> None:
        self._access_changes += 1

    def poke(self, tenant_id: UUID | None = None) -> None:
        """New events were committed (for `tenant_id`, or for anyone): read now."""
        if tenant_id is None:
            self._all_due = True
        else:
            self._due.add(tenant_id)
        self._wake.set()

    def notified(self, notice: EventNotice) -> None:
        """A notification from the channel: the tenant's next event is handed out from
        it; for anything else the tenant's log is read."""
        followed = self.followed.get(notice.tenant_id)
        if followed is None:
            return
        if notice.seq is not None and notice.seq <= followed.position:
            return  # already handed out by a read
        if notice.event is not None and notice.seq == followed.position + 1:
            followed.position = notice.seq
            self._hand_out(followed, notice.event, access_epoch=self.access_epoch)
            return
        self.poke(notice.tenant_id)

    # --- The reader -----------------------------------------------------------------------

    def _start(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_loop(), name="queue-event-relay")
        if _on_postgresql() and (self._listener is None or self._listener.done()):
            self._listener = asyncio.create_task(self._listen_loop(), name="queue-event-listen")

    def _poll_seconds(self) -> float:
        poll = settings.QUEUE_STREAM_POLL_MS / 1000
        # Woken by NOTIFY, PostgreSQL only needs a slow safety-net read.
        return poll * 10 if self._listening else poll

    async def _read_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds())
            except TimeoutError:
                self._all_due = True
            self._wake.clear()
            if self._all_due or not self._listening:
                due = set(self.followed)
            else:
                due = self._due & set(self.followed)
            self._due.clear()
            self._all_due = False
            try:
                await self._read(due)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database is unreachable: nothing was handed out, so the same
                # events are read on a later pass.
                logger.exception("queue event relay could not read the event log")
                self._all_due = True
                await asyncio.sleep(self._poll_seconds())

    async def _read(self, tenant_ids: Iterable[UUID]) -> None:
        positions = {t: self.followed[t].position for t in tenant_ids if t in self.followed}
        while positions:
            rows = await _events(positions, READ_BATCH)
            for row in rows:
                followed = self.followed.get(row.tenant_id)
                if followed is None or row.seq <= followed.position:
                    continue  # unfollowed meanwhile, or handed out by a concurrent pass
                followed.position = row.seq
                self._hand_out(followed, event_public(row))
            if len(rows) < READ_BATCH:
                return
            positions = {t: self.followed[t].position for t in positions if t in self.followed}

    def _hand_out(self, followed: _Followed, event: dict[str, Any], access_epoch: int | None = None) -> None:
        for socket in list(followed.sockets):
            # A task per socket: a slow socket holds up only itself. Each socket takes
            # its own send lock in the order its tasks were made, so it sends in order.
            delivery = asyncio.create_task(socket.deliver(event, access_epoch))
            self._deliveries.add(delivery)
            delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Task) -> None:
        self._deliveries.discard(delivery)
        if not delivery.cancelled() and delivery.exception() is not None:
            logger.error("queue event delivery failed", exc_info=delivery.exception())

    # --- LISTEN (PostgreSQL) --------------------------------------------------------------

    async def _listen_loop(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(**psycopg_params(), autocommit=True) as listener:
                    await listener.execute(f"LISTEN {ACCESS_CHANGED_CHANNEL}")
                    await listener.execute(f"LISTEN {QUEUE_EVENTS_CHANNEL}")
                    self._access_changed()  # whatever changed while nobody listened
                    self._listening = True
                    # Anything committed while nobody listened is read now.
                    self.poke()
                    async for notification in listener.notifies():
                        if notification.channel == ACCESS_CHANGED_CHANNEL:
                            self._access_changed()
                            continue
                        try:
                            notice = event_notice_parse(notification.payload)
                        except ValueError:
                            self.poke()
                        else:
                            self.notified(notice)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("queue event relay lost its LISTEN connection; polling until it is back",
                               exc_info=True)
            self._listening = False
            self._access_changed()
            await asyncio.sleep(LISTEN_RETRY_SECONDS)


def _on_postgresql() -> bool:
    return connection.vendor == "postgresql"


# --- One relay per event loop ------------------------------------------------------------------

_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, QueueEventRelay] = weakref.WeakKeyDictionary()
_relays_lock = threading.Lock()


def queue_event_relay() -> QueueEventRelay:
    """The running event loop's relay: futures and tasks belong to one loop, so a
    process serving from one loop (uvicorn) has exactly one."""
    loop = asyncio.get_running_loop()
    with _relays_lock:
        relay = _relays.get(loop)
        if relay is None:
            relay = _relays[loop] = QueueEventRelay()
    return relay


def queue_event_relays_poke(tenant_id: UUID) -> None:
    """From any thread of this process: events of `tenant_id` were just committed here."""
    with _relays_lock:
        relays = [(loop, relay) for loop, relay in _relays.items() if not loop.is_closed()]
    for loop, relay in relays:
        if tenant_id in relay.followed:
            loop.call_soon_threadsafe(relay.poke, tenant_id)
