"""The review queue, live: /ws/v1/tenants/<slug>/reviews/.

Protocol (server to client, JSON text frames):
  {"type": "hello", "latest_seq": S}       first; the stream continues with seq > S
  {"seq": N, "type": "review.created", ...} one per queue event (see reviews.events)
  {"type": "resync", "latest_seq": S}      the events after `?after=` cannot be replayed:
                                           reload the queue over REST, follow on from S
  {"type": "heartbeat", "latest_seq": S}   about every 25 s; S beyond the client's
                                           position means events were lost: catch up
  {"type": "pong", "latest_seq": S}        answer to a client's {"type": "ping"}
Events arrive in `seq` order, each once: the process's relay (reviews.relay) reads them
from the event log in order, wherever they were committed. A client that still sees a
gap (events that could not be checked or read while the database was unreachable), or
a heartbeat ahead of its position, fetches GET /api/v1/tenants/<slug>/events/?after=<last>.

Credentials: `?ticket=` (single-use, from POST /api/v1/ws-ticket/) or the session
cookie, which counts only on a handshake from one of our own origins (config.ws_origin).
Every refusal happens before accept (the client sees HTTP 403), with no reason given:
the same for a tenant that does not exist and one the user does not belong to.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import weakref
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from reviews import stream
from reviews.relay import queue_event_relay
from reviews.stream import StreamStart, StreamSubscriber

logger = logging.getLogger(__name__)

# Close codes after accept (application range 4000-4999).
CLOSE_REVOKED = 4403
MAX_CLIENT_FRAME = 1_000

# ORM calls run in worker threads. Not thread-sensitive: on the default single shared
# thread every socket's calls queue behind one another (measured before the checks were
# batched: p50 commit -> client 2.6 s instead of 0.14 s at 200 clients). The helpers
# keep no connection state between calls, so any thread, with a pooled connection, will do.
_ticket_consume = database_sync_to_async(stream.websocket_ticket_consume, thread_sensitive=False)
_subscriber_for_user = database_sync_to_async(stream.stream_subscriber_for_user, thread_sensitive=False)
_positions = database_sync_to_async(stream.stream_positions, thread_sensitive=False)
_start = database_sync_to_async(stream.stream_start, thread_sensitive=False)

MAX_CHECK_BATCH = 500
# Subscribers remembered as checked at the current access epoch (reviews.relay).
CHECKED_KEPT = 10_000


class _PositionChecks:
    """Coalesces the subscriber checks of one process's sockets. One event reaches every
    socket of its tenant in this process at about the same time, and each must re-check
    its subscriber before forwarding it; the checks filed while a query is in flight go
    together into the next one (stream.stream_positions), so an event costs a couple of
    queries per process instead of one per socket. Each check reads after its event
    arrived, or relies on one that did at the relay's current access epoch: either way a
    revocation committed before the event is seen."""

    def __init__(self) -> None:
        self._waiting: dict[StreamSubscriber, list[asyncio.Future]] = {}
        self._flush_task: asyncio.Task | None = None
        # Subscribers found allowed by a check that began and ended at this access
        # epoch of the relay: no access change was committed in between.
        self._checked_epoch: int | None = None
        self._checked: set[StreamSubscriber] = set()

    async def allowed(self, subscriber: StreamSubscriber, access_epoch: int | None) -> bool:
        """Whether the subscriber may still receive an event handed out at `access_epoch`
        (reviews.relay): without a query if it was found allowed at that same epoch,
        which no access change committed before the event can have passed."""
        if access_epoch is not None and access_epoch == self._checked_epoch and subscriber in self._checked:
            return True
        return await self.position(subscriber) is not None

    def remember(self, allowed: list[StreamSubscriber], epoch: int | None) -> None:
        """Subscribers a check found allowed, the relay's access epoch read before it."""
        if epoch is None or epoch != queue_event_relay().access_epoch:
            return  # an access change arrived while the check ran: it proves nothing now
        if epoch != self._checked_epoch or len(self._checked) >= CHECKED_KEPT:
            self._checked_epoch, self._checked = epoch, set()
        self._checked.update(allowed)

    async def position(self, subscriber: StreamSubscriber) -> int | None:
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(subscriber, []).append(future)
        if self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let the sockets woken with this one file their checks
            while self._waiting:
                batch = dict(itertools.islice(self._waiting.items(), MAX_CHECK_BATCH))
                for subscriber in batch:
                    del self._waiting[subscriber]
                epoch = queue_event_relay().access_epoch  # before the query reads anything
                try:
                    positions = await _positions(subscribers=list(batch))
                except Exception as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                self.remember([s for s in batch if positions[s] is not None], epoch)
                for subscriber, futures in batch.items():
                    for future in futures:
                        if not future.done():  # a socket that closed meanwhile cancelled its own
                            future.set_result(positions[subscriber])
        finally:
            self._flush_task = None


ENCODED_EVENTS_KEPT = 256


class _ProcessState:
    """What the sockets of one server process share. Futures belong to one event loop,
    so there is one of these per loop."""

    def __init__(self) -> None:
        self.checks = _PositionChecks()
        # One event reaches every socket of its tenant here: encode its JSON once.
        self.encoded: OrderedDict[tuple[UUID, int], str] = OrderedDict()


_process_states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ProcessState] = weakref.WeakKeyDictionary()


def _process_state() -> _ProcessState:
    loop = asyncio.get_running_loop()
    state = _process_states.get(loop)
    if state is None:
        state = _process_states[loop] = _ProcessState()
    return state


async def _position(subscriber: StreamSubscriber) -> int | None:
    return await _process_state().checks.position(subscriber)


async def _allowed(subscriber: StreamSubscriber, access_epoch: int | None) -> bool:
    return await _process_state().checks.allowed(subscriber, access_epoch)


def _encoded(tenant_id: UUID, event: dict[str, Any]) -> str:
    cache = _process_state().encoded
    key = (tenant_id, event["seq"])
    text = cache.get(key)
    if text is None:
        text = cache[key] = json.dumps(event)  # as AsyncJsonWebsocketConsumer.encode_json
        if len(cache) > ENCODED_EVENTS_KEPT:
            cache.popitem(last=False)
    return text


class ReviewQueueConsumer(AsyncJsonWebsocketConsumer):
    # No channel-layer channel: events come from the process's relay (reviews.relay).
    channel_layer_alias = None
    subscriber: StreamSubscriber | None = None
    # Every event up to here was sent in order (or covered at connect by the client's
    # REST state); later copies of them are not sent again.
    sent: int = 0
    # Set once the socket is refused or closed by us: events still on their way to it
    # are then dropped instead of handled.
    closed: bool = False
    following: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Orders what the heartbeat task sends with what the deliveries send.
        self._send_lock = asyncio.Lock()
        self._heartbeat: asyncio.Task | None = None

    async def connect(self) -> None:
        params = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        try:
            after = _position_param(params.get("after", [None])[-1])
        except ValueError:
            await self._refuse()
            return
        subscriber = await self._authenticate(params)
        if subscriber is None:
            await self._refuse()
            return
        self.subscriber = subscriber
        # The send lock first: a delivery that arrives from here on waits until the
        # hello and the replay are out, so nothing overtakes them.
        async with self._send_lock:
            # Follow before reading the position: every event committed after that read
            # is then handed to this socket by the relay.
            await queue_event_relay().follow(subscriber.tenant_id, self)
            self.following = True
            epoch = queue_event_relay().access_epoch
            start: StreamStart | None = await _start(subscriber=subscriber, after=after)
            if start is None:  # revoked in the instant since authentication
                self._unfollow()
                await self._refuse()
                return
            # The start re-checked the subscriber: the first events need no query either.
            _process_state().checks.remember([subscriber], epoch)
            await self.accept()
            self.sent = start.latest_seq
            await self.send_json({"type": "hello", "latest_seq": start.latest_seq})
            if start.resync:
                await self.send_json({"type": "resync", "latest_seq": start.latest_seq})
            for event in start.replay:
                await self.send_json(event)
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())

    async def _authenticate(self, params: dict[str, list[str]]) -> StreamSubscriber | None:
        slug = self.scope["url_route"]["kwargs"]["tenant_slug"]
        tickets = params.get("ticket")
        if tickets:
            # An explicit credential decides alone: a bad ticket is not rescued by a cookie.
            return await _ticket_consume(tenant_slug=slug, key=tickets[-1])
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            return await _subscriber_for_user(tenant_slug=slug, user=user)
        return None

    async def _refuse(self) -> None:
        self.closed = True
        await self.close()  # before accept: the handshake is refused with HTTP 403

    async def disconnect(self, code: int) -> None:
        self.closed = True  # events still on their way to this socket are dropped
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self._unfollow()

    def _unfollow(self) -> None:
        if self.following:
            self.following = False
            queue_event_relay().unfollow(self.subscriber.tenant_id, self)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # As Channels' own, without its close_old_connections() before every message: a
        # hop to the one shared sync thread for every frame of every socket. This
        # consumer reaches the database only through database_sync_to_async, which
        # closes stale connections itself, in the thread that uses them.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- From the process's relay, in seq order -----------------------------------------

    async def deliver(self, event: dict[str, Any], access_epoch: int | None = None) -> None:
        if self.closed or event["seq"] <= self.sent:
            return
        async with self._send_lock:
            if self.closed or event["seq"] <= self.sent:
                return
            if event["seq"] > self.sent + 1:
                # An earlier event was not sent (its check failed while the database was
                # unreachable): read what is missing from the log, re-checking the
                # subscriber as every delivery does, and send it first.
                await self._send_missing(before=event["seq"])
                if self.closed or event["seq"] <= self.sent:
                    return
            # Checked per event: a membership revoked since connect stops delivery here,
            # at the next event, and ends the socket. A fresh read, unless the relay
            # vouches that no access change reached it since this subscriber's last one.
            try:
                allowed = await _allowed(self.subscriber, access_epoch)
            except Exception:
                # Fail closed but keep the socket: the next event finds this one missing
                # and reads it from the log once the database answers again (and a
                # heartbeat ahead of the client's position tells it to catch up).
                logger.exception("queue stream could not check %s; event %s not sent", self.subscriber, event["seq"])
                return
            if not allowed:
                await self._close_revoked()
                return
            await self.send(text_data=_encoded(self.subscriber.tenant_id, event))
            self.sent = event["seq"]

    async def _send_missing(self, *, before: int) -> None:
        try:
            start = await _start(subscriber=self.subscriber, after=self.sent)
        except Exception:
            logger.exception("queue stream could not read the events after %s for %s", self.sent, self.subscriber)
            return
        if start is None:
            await self._close_revoked()
            return
        if start.resync:
            await self.send_json({"type": "resync", "latest_seq": start.latest_seq})
            self.sent = start.latest_seq
            return
        for missing in start.replay:
            if missing["seq"] >= before:
                break
            await self.send(text_data=_encoded(self.subscriber.tenant_id, missing))
            self.sent = missing["seq"]

    # --- From the client --------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        # Clients only ever ping; anything else (binary, malformed or oversized JSON) is
        # ignored rather than allowed to crash the consumer.
        if self.closed or not text_data or len(text_data) > MAX_CLIENT_FRAME:
            return
        try:
            content = await self.decode_json(text_data)
        except ValueError:
            return
        if isinstance(content, dict) and content.get("type") == "ping":
            await self._report_position("pong")

    # --- Heartbeat --------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = stream.stream_heartbeat_seconds()
        while not self.closed:
            # Jittered, so sockets that connected together (after a redeploy) do not all
            # re-check in the same instant.
            await asyncio.sleep(interval * random.uniform(0.5, 1.5))
            try:
                await self._report_position("heartbeat")
            except Exception:
                return  # the client is gone; disconnect() cleans up

    async def _report_position(self, kind: str) -> None:
        """Re-check the subscriber and tell the client where the stream is: the position
        lets a client notice events it lost even when no later event arrives."""
        async with self._send_lock:
            if self.closed:
                return
            try:
                latest = await _position(self.subscriber)
            except Exception:
                logger.exception("queue stream could not check %s for its %s", self.subscriber, kind)
                return
            if latest is None:
                await self._close_revoked()
                return
            await self.send_json({"type": kind, "latest_seq": latest})

    async def _close_revoked(self) -> None:
        self.closed = True
        if self._heartbeat is not None and self._heartbeat is not asyncio.current_task():
            self._heartbeat.cancel()
        self._unfollow()
        await self.close(code=CLOSE_REVOKED)


def _position_param(raw: str | None) -> int | None:
    """`?after=`: absent, or a non-negative integer (ValueError otherwise)."""
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ValueError(raw)
    return int(raw)
