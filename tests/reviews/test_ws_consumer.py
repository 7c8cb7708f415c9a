"""The queue websocket through the whole ASGI stack (origin check, session, routing,
consumer) with Channels' WebsocketCommunicator: credentials, refusals, per-event
re-checks, replay, heartbeat. Runs on PostgreSQL + Redis and on the embedded default."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator as BaseApplicationCommunicator
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client
from django.utils import timezone

from config.asgi import application
from contracts.services import contract_submit
from reviews.consumers import CLOSE_REVOKED
from reviews import events
from reviews.events import event_public
from reviews.models import QueueEvent, ReviewTask, WebsocketTicket
from reviews.services import review_task_claim, review_task_release
from reviews.stream import websocket_ticket_create
from tenants.models import ApiToken, Role
from tenants.services import api_token_revoke, membership_remove, membership_set
from tests.factories import HIGH_RISK_TEXT
from tests.support import postgresql_only

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

# Bounds on waiting for a message: they only stop a broken run from hanging.
WAIT = 10
OWN_ORIGIN = (b"origin", b"http://127.0.0.1:8000")


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # No heartbeat in the middle of a test's exchange, except where a test asks for it.
    settings.QUEUE_STREAM_HEARTBEAT_SECONDS = 3600


class Communicator(WebsocketCommunicator):
    """WebsocketCommunicator without its switch-off of close_old_connections. Channels
    turns connection cleanup off so that a TestCase's transaction survives; these tests
    commit for real (transaction=True) and the consumer's queries run on worker threads,
    which, as in production, must hand their connections back (to the pool on
    PostgreSQL) after each call, or a few tests would exhaust it."""

    async def send_input(self, message):
        return await BaseApplicationCommunicator.send_input(self, message)

    async def receive_output(self, timeout=1):
        return await BaseApplicationCommunicator.receive_output(self, timeout)


def ws_path(world, **params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"/ws/v1/tenants/{world.slug}/reviews/" + (f"?{query}" if query else "")


def ticket_for(world, member, *, api_token: bool = True) -> str:
    token = ApiToken.objects.filter(user=member.user).first() if api_token else None
    return websocket_ticket_create(tenant=world.tenant, user=member.user, api_token=token)[1]


def session_cookie(member) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(member.user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


async def open_socket(path: str, *headers: tuple[bytes, bytes]) -> tuple[Communicator, bool]:
    communicator = Communicator(application, path, headers=list(headers))
    connected, _ = await communicator.connect(timeout=WAIT)
    return communicator, connected


async def receive(communicator: WebsocketCommunicator) -> dict:
    return await communicator.receive_json_from(timeout=WAIT)


async def ping(communicator: WebsocketCommunicator) -> dict:
    await communicator.send_json_to({"type": "ping"})
    return await receive(communicator)


def high_risk_task(world) -> ReviewTask:
    """Submit a high-risk contract as the agent (the graph runs at once: immediate task
    backend) and return its legal review task; emits review.created."""
    contract = contract_submit(tenant=world.tenant, submitted_by=world.agent.user, title="MSA", text=HIGH_RISK_TEXT)
    return ReviewTask.objects.get(tenant=world.tenant, contract=contract)


def claim_and_release(world, task: ReviewTask) -> None:
    """Two more events: review.claimed, review.released."""
    review_task_claim(tenant=world.tenant, task_id=task.pk, user=world.reviewer.user)
    review_task_release(tenant=world.tenant, task_id=task.pk, user=world.reviewer.user)


def latest_seq(world) -> int:
    world.tenant.refresh_from_db(fields=["event_seq"])
    return world.tenant.event_seq


# --- Delivery ---------------------------------------------------------------------------


def test_subscriber_receives_its_tenants_events_and_nothing_of_another_tenant(acme, globex):
    acme_ticket, globex_ticket = ticket_for(acme, acme.reviewer), ticket_for(globex, globex.viewer)
    acme_seq, globex_seq = latest_seq(acme), latest_seq(globex)

    async def scenario():
        acme_socket, acme_ok = await open_socket(ws_path(acme, ticket=acme_ticket))
        globex_socket, globex_ok = await open_socket(ws_path(globex, ticket=globex_ticket))
        assert acme_ok and globex_ok
        assert await receive(acme_socket) == {"type": "hello", "latest_seq": acme_seq}
        assert await receive(globex_socket) == {"type": "hello", "latest_seq": globex_seq}

        task = await database_sync_to_async(high_risk_task)(acme)
        event = await receive(acme_socket)
        assert event["type"] == "review.created"
        assert event["seq"] == acme_seq + 1
        assert event["task_id"] == str(task.pk)
        assert event["contract_id"] == str(task.contract_id)
        assert (event["kind"], event["status"]) == ("legal", "pending")
        assert event["risk_score"] == pytest.approx(0.8245)
        assert event["at"]

        # globex's stream did not move: its next message is the answer to a ping, at the
        # same position; and the next event it does get is its own tenant's.
        assert await ping(globex_socket) == {"type": "pong", "latest_seq": globex_seq}
        globex_task = await database_sync_to_async(high_risk_task)(globex)
        own = await receive(globex_socket)
        assert (own["seq"], own["task_id"]) == (globex_seq + 1, str(globex_task.pk))

        await acme_socket.disconnect()
        await globex_socket.disconnect()

    async_to_sync(scenario)()


def test_events_arrive_in_sequence_order_with_claims(acme):
    task = high_risk_task(acme)
    ticket, start = ticket_for(acme, acme.senior), latest_seq(acme)

    async def scenario():
        socket, ok = await open_socket(ws_path(acme, ticket=ticket))
        assert ok and (await receive(socket))["latest_seq"] == start
        await database_sync_to_async(claim_and_release)(acme, task)
        claimed, released = await receive(socket), await receive(socket)
        assert [(e["seq"], e["type"]) for e in (claimed, released)] == [
            (start + 1, "review.claimed"), (start + 2, "review.released")]
        assert claimed["claimed_by"] == "acme-reviewer" and released["claimed_by"] is None
        await socket.disconnect()

    async_to_sync(scenario)()


def test_sockets_of_one_tenant_in_one_process_each_get_every_event_once(acme):
    # They share the process's one relay, which reads each event once.
    task = high_risk_task(acme)
    tickets = [ticket_for(acme, member) for member in (acme.reviewer, acme.viewer, acme.senior)]
    start = latest_seq(acme)

    async def scenario():
        sockets = []
        for ticket in tickets:
            socket, ok = await open_socket(ws_path(acme, ticket=ticket))
            assert ok and (await receive(socket))["latest_seq"] == start
            sockets.append(socket)
        await database_sync_to_async(review_task_claim)(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)
        for socket in sockets:
            assert (await receive(socket))["seq"] == start + 1
        await sockets.pop().disconnect()  # the others keep receiving
        await database_sync_to_async(review_task_release)(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)
        for socket in sockets:
            assert (await receive(socket))["seq"] == start + 2
            assert await socket.receive_nothing(timeout=0.3)  # each event once
            await socket.disconnect()

    async_to_sync(scenario)()


def writer_in_another_process(monkeypatch) -> None:
    """Events committed from here on reach the relay only as another process's would (a
    worker, a second server): by its reading the log, on its poll on SQLite or woken by
    NOTIFY on PostgreSQL. The in-process poke after commit (reviews.events) is off."""
    monkeypatch.setattr(events, "_relays_poke", lambda tenant_id: None)


def test_events_committed_by_another_process_reach_every_socket_in_order_each_once(acme, monkeypatch):
    task = high_risk_task(acme)
    tickets = [ticket_for(acme, member) for member in (acme.senior, acme.viewer)]
    start = latest_seq(acme)
    writer_in_another_process(monkeypatch)

    async def scenario():
        sockets = []
        for ticket in tickets:
            socket, ok = await open_socket(ws_path(acme, ticket=ticket))
            assert ok and (await receive(socket))["latest_seq"] == start
            sockets.append(socket)
        await database_sync_to_async(claim_and_release)(acme, task)
        await database_sync_to_async(review_task_claim)(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)
        for socket in sockets:
            received = [await receive(socket) for _ in range(3)]
            assert [(e["seq"], e["type"]) for e in received] == [
                (start + 1, "review.claimed"), (start + 2, "review.released"), (start + 3, "review.claimed")]
            assert await socket.receive_nothing(timeout=0.3)  # each once
            await socket.disconnect()

    async_to_sync(scenario)()


def test_a_socket_opened_between_two_events_gets_the_later_one_only(acme, monkeypatch):
    # Joining a tenant the process already follows: the relay's position is behind the
    # new socket's, which must neither miss an event nor get an earlier one again.
    task = high_risk_task(acme)
    first_ticket, second_ticket = ticket_for(acme, acme.senior), ticket_for(acme, acme.viewer)
    start = latest_seq(acme)
    writer_in_another_process(monkeypatch)

    async def scenario():
        first, ok = await open_socket(ws_path(acme, ticket=first_ticket))
        assert ok and (await receive(first))["latest_seq"] == start
        await database_sync_to_async(review_task_claim)(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)
        second, ok = await open_socket(ws_path(acme, ticket=second_ticket))
        assert ok
        hello = await receive(second)
        await database_sync_to_async(review_task_release)(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)
        assert [(await receive(first))["seq"], (await receive(first))["seq"]] == [start + 1, start + 2]
        after_hello = [] if hello["latest_seq"] == start + 2 else [await receive(second)]
        assert [e["seq"] for e in after_hello] == list(range(hello["latest_seq"] + 1, start + 3))
        assert await second.receive_nothing(timeout=0.3)
        await first.disconnect()
        await second.disconnect()

    async_to_sync(scenario)()


def _log_reads_counted(monkeypatch) -> list[int]:
    """Each read of the event log by the relay, counted as it happens."""
    from reviews import relay

    reads: list[int] = []
    original = relay._events

    async def counted(positions, limit):
        reads.append(len(positions))
        return await original(positions, limit)

    monkeypatch.setattr(relay, "_events", counted)
    return reads


async def _relay_listening() -> None:
    """Returns once the relay listens and the read that follows LISTEN's start is done."""
    from reviews.relay import queue_event_relay

    relay = queue_event_relay()
    for _ in range(WAIT * 50):
        if relay._listening:
            await asyncio.sleep(0.2)
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the relay never listened")


async def _socket_with_the_relay_listening(world, ticket: str) -> tuple[Communicator, dict]:
    """An accepted socket and its hello, once the relay listens (_relay_listening)."""
    socket, ok = await open_socket(ws_path(world, ticket=ticket))
    assert ok
    hello = await receive(socket)
    await _relay_listening()
    return socket, hello


@postgresql_only
def test_the_next_event_goes_out_from_its_notification_as_the_log_has_it(acme, monkeypatch):
    task = high_risk_task(acme)
    ticket = ticket_for(acme, acme.senior)
    start = latest_seq(acme)
    writer_in_another_process(monkeypatch)
    reads = _log_reads_counted(monkeypatch)

    async def scenario():
        socket, hello = await _socket_with_the_relay_listening(acme, ticket)
        assert hello["latest_seq"] == start
        reads.clear()
        await database_sync_to_async(claim_and_release)(acme, task)
        received = [await receive(socket) for _ in range(2)]
        logged = await database_sync_to_async(
            lambda: [event_public(e) for e in QueueEvent.objects.filter(tenant=acme.tenant, seq__gt=start)]
        )()
        assert received == logged and [e["type"] for e in received] == ["review.claimed", "review.released"]
        assert reads == []  # handed out from the notifications alone
        await socket.disconnect()

    async_to_sync(scenario)()


@postgresql_only
def test_an_event_too_large_for_its_notification_is_read_from_the_log(acme, monkeypatch):
    ticket = ticket_for(acme, acme.senior)
    start = latest_seq(acme)
    writer_in_another_process(monkeypatch)
    reads = _log_reads_counted(monkeypatch)
    note = "x" * (events.NOTICE_BODY_MAX_BYTES + 1)

    def emit() -> None:
        contract = contract_submit(tenant=acme.tenant, submitted_by=acme.agent.user, title="MSA", text=HIGH_RISK_TEXT)
        with transaction.atomic():
            events.event_emit(tenant_id=acme.tenant.id, type=events.CONTRACT_FAILED, contract=contract,
                              extra={"note": note})

    async def scenario():
        socket, hello = await _socket_with_the_relay_listening(acme, ticket)
        assert hello["latest_seq"] == start
        reads.clear()
        await database_sync_to_async(emit)()
        received = [await receive(socket) for _ in range(2)]
        assert [e["type"] for e in received] == ["review.created", "contract.failed"]
        assert [e["seq"] for e in received] == [start + 1, start + 2]
        assert received[1]["note"] == note
        assert reads  # the large one came from the log
        await socket.disconnect()

    async_to_sync(scenario)()


# --- Credentials and refusals -----------------------------------------------------------


def test_session_cookie_from_our_own_origin_is_accepted(acme):
    cookie = session_cookie(acme.viewer)

    async def scenario():
        socket, ok = await open_socket(ws_path(acme), OWN_ORIGIN, cookie)
        assert ok
        assert (await receive(socket))["type"] == "hello"
        await socket.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param((), id="no-credentials"),
        pytest.param((OWN_ORIGIN,), id="own-origin-but-no-credentials"),
        pytest.param(("cookie",), id="session-cookie-without-origin"),
        pytest.param(("cookie", (b"origin", b"https://evil.example")), id="session-cookie-from-foreign-origin"),
        pytest.param(("cookie", (b"origin", b"null")), id="session-cookie-from-null-origin"),
    ],
)
def test_handshakes_without_a_valid_credential_are_refused(acme, headers):
    cookie = session_cookie(acme.viewer)
    headers = [cookie if header == "cookie" else header for header in headers]

    async def scenario():
        socket, ok = await open_socket(ws_path(acme), *headers)
        assert not ok

    async_to_sync(scenario)()


def test_foreign_origin_is_refused_even_with_a_valid_ticket(acme):
    ticket = ticket_for(acme, acme.viewer)

    async def scenario():
        socket, ok = await open_socket(ws_path(acme, ticket=ticket), (b"origin", b"https://evil.example"))
        assert not ok

    async_to_sync(scenario)()


def test_a_ticket_opens_one_socket_only(acme):
    ticket = ticket_for(acme, acme.viewer)

    async def scenario():
        first, ok = await open_socket(ws_path(acme, ticket=ticket))
        assert ok
        second, ok_again = await open_socket(ws_path(acme, ticket=ticket))
        assert not ok_again
        await first.disconnect()

    async_to_sync(scenario)()
    assert WebsocketTicket.objects.get(tenant=acme.tenant).used_at is not None


def test_expired_unknown_and_bad_cookie_fallback_tickets_are_refused(acme):
    expired = websocket_ticket_create(
        tenant=acme.tenant, user=acme.viewer.user, now=timezone.now() - timedelta(minutes=5))[1]
    cookie = session_cookie(acme.viewer)

    async def scenario():
        for path, headers in [
            (ws_path(acme, ticket=expired), ()),
            (ws_path(acme, ticket="not-a-ticket"), ()),
            # A bad ticket is not rescued by a valid session cookie.
            (ws_path(acme, ticket="not-a-ticket"), (OWN_ORIGIN, cookie)),
        ]:
            socket, ok = await open_socket(path, *headers)
            assert not ok, path

    async_to_sync(scenario)()


def test_foreign_tenant_is_refused_like_a_missing_one(acme, globex):
    acme_ticket = ticket_for(acme, acme.admin)
    globex_cookie = session_cookie(globex.admin)

    async def scenario():
        # acme's ticket on globex's stream; globex's admin (session) on acme's stream;
        # a tenant that does not exist. All look the same: a refused handshake.
        for path, headers in [
            (ws_path(globex, ticket=acme_ticket), ()),
            (ws_path(acme), (OWN_ORIGIN, globex_cookie)),
            ("/ws/v1/tenants/no-such-tenant/reviews/", (OWN_ORIGIN, globex_cookie)),
        ]:
            socket, ok = await open_socket(path, *headers)
            assert not ok, path

    async_to_sync(scenario)()


def test_agents_get_no_stream(acme):
    ticket = ticket_for(acme, acme.agent)  # minted directly: the ticket API refuses agents

    async def scenario():
        socket, ok = await open_socket(ws_path(acme, ticket=ticket))
        assert not ok

    async_to_sync(scenario)()


def test_revoked_viewer_is_refused_at_connect(acme):
    ticket = ticket_for(acme, acme.viewer)
    cookie = session_cookie(acme.viewer)
    membership_remove(membership=acme.viewer.user.memberships.get(tenant=acme.tenant), actor=acme.admin.user, via="api")

    async def scenario():
        for path, headers in [(ws_path(acme, ticket=ticket), ()), (ws_path(acme), (OWN_ORIGIN, cookie))]:
            socket, ok = await open_socket(path, *headers)
            assert not ok, path

    async_to_sync(scenario)()


@pytest.mark.parametrize("after", ["-1", "abc", "1e3", "9" * 30])
def test_malformed_position_is_refused(acme, after):
    ticket = ticket_for(acme, acme.viewer)

    async def scenario():
        socket, ok = await open_socket(ws_path(acme, ticket=ticket, after=after))
        assert not ok

    async_to_sync(scenario)()


# --- Re-checked on every event ------------------------------------------------------


def _remove_viewer(world) -> None:
    membership = world.viewer.user.memberships.get(tenant=world.tenant)
    membership_remove(membership=membership, actor=world.admin.user, via="api")


def _demote_viewer_to_agent(world) -> None:
    membership_set(tenant=world.tenant, user=world.viewer.user, role=Role.AGENT)


def _revoke_viewer_token(world) -> None:
    api_token_revoke(token=ApiToken.objects.get(user=world.viewer.user))


def _deactivate_viewer(world) -> None:
    world.viewer.user.is_active = False
    world.viewer.user.save(update_fields=["is_active"])


async def _next_event_closes_the_revoked(world, task, *, revoke, socket, watcher) -> None:
    """`revoke`, then one event: the still-authorised watcher gets it, the revoked
    socket gets a close."""
    await database_sync_to_async(revoke)(world)
    await database_sync_to_async(review_task_claim)(tenant=world.tenant, task_id=task.pk, user=world.reviewer.user)
    assert (await receive(watcher))["type"] == "review.claimed"
    assert await socket.receive_output(timeout=WAIT) == {"type": "websocket.close", "code": CLOSE_REVOKED}
    await watcher.disconnect()


@pytest.mark.parametrize("revoke", [_remove_viewer, _demote_viewer_to_agent, _revoke_viewer_token, _deactivate_viewer])
def test_revocation_stops_delivery_at_the_next_event_and_closes_the_socket(acme, revoke):
    task = high_risk_task(acme)
    ticket = ticket_for(acme, acme.viewer)
    watcher_ticket = ticket_for(acme, acme.reviewer2)

    async def scenario():
        socket, ok = await open_socket(ws_path(acme, ticket=ticket))
        watcher, watcher_ok = await open_socket(ws_path(acme, ticket=watcher_ticket))
        assert ok and watcher_ok
        await receive(socket), await receive(watcher)
        await _next_event_closes_the_revoked(acme, task, revoke=revoke, socket=socket, watcher=watcher)

    async_to_sync(scenario)()


def test_revocation_on_a_quiet_queue_closes_at_the_next_heartbeat(acme, settings):
    settings.QUEUE_STREAM_HEARTBEAT_SECONDS = 0.05
    ticket = ticket_for(acme, acme.viewer)

    async def scenario():
        socket, ok = await open_socket(ws_path(acme, ticket=ticket))
        assert ok
        assert (await receive(socket))["type"] == "hello"
        position = await database_sync_to_async(latest_seq)(acme)
        assert await receive(socket) == {"type": "heartbeat", "latest_seq": position}
        await database_sync_to_async(_remove_viewer)(acme)
        # Heartbeats sent before the removal was seen may still come, a few; a socket
        # that goes on beating was never closed (bounded, so that fails, not hangs).
        for _ in range(40):
            output = await socket.receive_output(timeout=WAIT)
            if output["type"] != "websocket.send":
                break
        else:
            pytest.fail("the revoked socket was still open 40 heartbeats after the removal")
        assert output == {"type": "websocket.close", "code": CLOSE_REVOKED}

    async_to_sync(scenario)()


# --- Replay from a position -------------------------------------------------------------


def test_replay_from_a_position_then_live_events(acme):
    start = latest_seq(acme)
    task = high_risk_task(acme)
    claim_and_release(acme, task)
    ticket = ticket_for(acme, acme.reviewer)

    async def scenario():
        socket, ok = await open_socket(ws_path(acme, ticket=ticket, after=str(start)))
        assert ok
        assert await receive(socket) == {"type": "hello", "latest_seq": start + 3}
        replayed = [await receive(socket) for _ in range(3)]
        assert [(e["seq"], e["type"]) for e in replayed] == [
            (start + 1, "review.created"), (start + 2, "review.claimed"), (start + 3, "review.released")]
        await database_sync_to_async(review_task_claim)(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)
        live = await receive(socket)
        assert (live["seq"], live["type"]) == (start + 4, "review.claimed")
        await socket.disconnect()

    async_to_sync(scenario)()


def test_replay_reads_only_its_own_tenants_log(acme, globex):
    """Both tenants have events at the same sequence numbers; a replay from 0 is acme's alone."""
    own = high_risk_task(acme)
    claim_and_release(acme, own)
    other = high_risk_task(globex)
    claim_and_release(globex, other)
    claim_and_release(globex, other)
    ticket = ticket_for(acme, acme.reviewer)

    async def scenario():
        socket, ok = await open_socket(ws_path(acme, ticket=ticket, after="0"))
        assert ok
        assert await receive(socket) == {"type": "hello", "latest_seq": 3}
        replayed = [await receive(socket) for _ in range(3)]
        assert [(e["seq"], e["task_id"]) for e in replayed] == [(seq, str(own.pk)) for seq in (1, 2, 3)]
        assert await socket.receive_nothing(timeout=0.3)
        await socket.disconnect()

    async_to_sync(scenario)()


def test_replay_of_events_no_longer_retained_asks_for_a_resync(acme):
    task = high_risk_task(acme)
    claim_and_release(acme, task)
    latest = latest_seq(acme)
    QueueEvent.objects.filter(tenant=acme.tenant, seq__lt=latest).delete()  # as the pruning would
    ticket = ticket_for(acme, acme.reviewer)

    async def scenario():
        socket, ok = await open_socket(ws_path(acme, ticket=ticket, after="0"))
        assert ok
        assert await receive(socket) == {"type": "hello", "latest_seq": latest}
        assert await receive(socket) == {"type": "resync", "latest_seq": latest}
        # Then the stream simply goes on from `latest`.
        await database_sync_to_async(review_task_claim)(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)
        assert (await receive(socket))["seq"] == latest + 1
        await socket.disconnect()

    async_to_sync(scenario)()


def test_position_ahead_of_the_stream_asks_for_a_resync(acme):
    ticket = ticket_for(acme, acme.reviewer)
    latest = latest_seq(acme)

    async def scenario():
        socket, ok = await open_socket(ws_path(acme, ticket=ticket, after=str(latest + 50)))
        assert ok
        assert (await receive(socket))["type"] == "hello"
        assert await receive(socket) == {"type": "resync", "latest_seq": latest}
        await socket.disconnect()

    async_to_sync(scenario)()


def test_client_noise_is_ignored_and_ping_answers_with_the_position(acme):
    ticket = ticket_for(acme, acme.viewer)

    async def scenario():
        socket, ok = await open_socket(ws_path(acme, ticket=ticket))
        assert ok
        hello = await receive(socket)
        await socket.send_to(text_data="not json")
        await socket.send_to(bytes_data=b"\x00\x01")
        await socket.send_json_to({"type": "subscribe", "tenant": "globex"})
        await socket.send_to(text_data='{"type": "ping", "pad": "' + "x" * 5_000 + '"}')  # oversized: ignored
        assert await ping(socket) == {"type": "pong", "latest_seq": hello["latest_seq"]}
        await socket.disconnect()

    async_to_sync(scenario)()


# --- Checks trusted until an access change (PostgreSQL) -------------------------------


def _checks_counted(monkeypatch) -> list:
    """The subscribers of each check query the sockets' batched checks run."""
    from reviews import consumers

    checked: list = []
    original = consumers._positions

    async def counted(*, subscribers):
        checked.extend(subscribers)
        return await original(subscribers=subscribers)

    monkeypatch.setattr(consumers, "_positions", counted)
    return checked


def _revoke_viewer_token_in_sql(world) -> None:
    ApiToken.objects.filter(user=world.viewer.user).update(revoked_at=timezone.now())


def _demote_viewer_in_sql(world) -> None:
    world.viewer.user.memberships.filter(tenant=world.tenant).update(role=Role.AGENT)


def _deactivate_viewer_in_sql(world) -> None:
    type(world.viewer.user).objects.filter(pk=world.viewer.user.pk).update(is_active=False)


@postgresql_only
@pytest.mark.parametrize("revoke", [
    _remove_viewer, _demote_viewer_to_agent, _revoke_viewer_token, _deactivate_viewer,
    _revoke_viewer_token_in_sql, _demote_viewer_in_sql, _deactivate_viewer_in_sql,
])
def test_a_check_is_trusted_until_an_access_change_commits(acme, monkeypatch, revoke):
    """Events from their notifications reuse a subscriber's check until an access change
    is notified (by the database's triggers, so plain SQL counts too); the event after
    a revocation still finds it and closes the socket."""
    task = high_risk_task(acme)
    ticket, watcher_ticket = ticket_for(acme, acme.viewer), ticket_for(acme, acme.reviewer2)
    writer_in_another_process(monkeypatch)
    checked = _checks_counted(monkeypatch)

    async def scenario():
        socket, _ = await _socket_with_the_relay_listening(acme, ticket)
        # Opened while the relay listens: the check at connect counts for its events.
        watcher, watcher_ok = await open_socket(ws_path(acme, ticket=watcher_ticket))
        assert watcher_ok
        await receive(watcher)
        await database_sync_to_async(claim_and_release)(acme, task)
        for communicator in (socket, watcher):
            assert [(await receive(communicator))["type"] for _ in range(2)] == ["review.claimed", "review.released"]
        # Two events: one check for the socket opened before the relay listened (the
        # second event trusted it), none for the other.
        assert [s.user_id for s in checked] == [acme.viewer.user.pk]
        await _next_event_closes_the_revoked(acme, task, revoke=revoke, socket=socket, watcher=watcher)

    async_to_sync(scenario)()


@postgresql_only
def test_a_revocation_while_the_relay_was_not_listening_is_still_seen(acme, monkeypatch):
    """The access notification of a change committed while the relay's LISTEN connection
    was down is lost; the checks made before it must not be trusted after it."""
    from django.db import connection as db

    task = high_risk_task(acme)
    ticket = ticket_for(acme, acme.viewer)
    writer_in_another_process(monkeypatch)

    def listener_killed() -> None:
        with db.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND query LIKE 'LISTEN hitl_queue_events%%'")

    async def relay_down() -> None:
        from reviews.relay import queue_event_relay

        for _ in range(WAIT * 50):
            if not queue_event_relay()._listening:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the relay never noticed its connection was gone")

    async def scenario():
        socket, _ = await _socket_with_the_relay_listening(acme, ticket)
        await database_sync_to_async(claim_and_release)(acme, task)  # checked, and remembered
        assert [(await receive(socket))["type"] for _ in range(2)] == ["review.claimed", "review.released"]
        await database_sync_to_async(listener_killed)()
        await relay_down()
        await database_sync_to_async(_remove_viewer)(acme)  # nobody listens: its notification is lost
        await _relay_listening()
        await database_sync_to_async(review_task_claim)(tenant=acme.tenant, task_id=task.pk, user=acme.reviewer.user)
        assert await socket.receive_output(timeout=WAIT) == {"type": "websocket.close", "code": CLOSE_REVOKED}

    async_to_sync(scenario)()
