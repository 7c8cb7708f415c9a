"""The queue websocket against real server processes (`uvicorn config.asgi:application`,
HTTP and websockets in one process) and a real task worker sharing the test database,
with a real websocket client: delivery, tenant isolation, two processes, events the
worker commits, a lost LISTEN connection, refusals.

Needs PostgreSQL (several processes share the test database); the embedded default's
own live test is tests/reviews/test_ws_embedded.py."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from reviews.models import ReviewTask
from tenants.models import Membership
from tests.factories import HIGH_RISK_TEXT
from tests.support import SERVER_COMMAND

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: several server processes share the test database",
    ),
]

PROJECT_DIR = Path(__file__).resolve().parents[2]
# Bounds on waiting: they only stop a broken run from hanging, never assert speed.
WAIT = 30
SERVER_START_BOUND = 60


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- Server processes -----------------------------------------------------------------


def _test_database_url() -> str:
    db = connection.settings_dict
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or '5432'}/{quote(db['NAME'], safe='')}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LiveServer:
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def live_servers(count: int, *, worker: bool = False) -> Iterator[list[LiveServer]]:
    """`count` uvicorn processes on the test database and the test's Redis, as the
    README runs it, and with `worker` a `manage.py run_worker` that runs the graphs (else
    the server runs them in the request); terminated however the test ends."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=_test_database_url(),
        REDIS_URL=settings.REDIS_URL or "",
        TASKS_BACKEND="database" if worker else "immediate",
        SECRET_KEY=settings.SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="false",
        PYTHONUNBUFFERED="1",
    )
    env.pop("PYTEST_CURRENT_TEST", None)
    servers: list[LiveServer] = []
    workers: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if worker:
                with (Path(tmp) / "worker.log").open("wb") as out:
                    workers.append(subprocess.Popen(
                        [sys.executable, "manage.py", "run_worker", "--queue-name", "*", "--interval", "0.05",
                         "--no-startup-delay", "--no-reload"],
                        cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT))
            for index in range(count):
                port = _free_port()
                log = Path(tmp) / f"server-{index}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        [*SERVER_COMMAND, "--host", "127.0.0.1", "--port", str(port)],
                        cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                    )
                servers.append(LiveServer(port=port, process=process, log=log))
            for server in servers:
                _wait_ready(server)
            yield servers
        finally:
            processes = [server.process for server in servers] + workers
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_ready(server: LiveServer) -> None:
    deadline = time.monotonic() + SERVER_START_BOUND
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(f"{server.http}/healthz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server on port {server.port} not ready after {SERVER_START_BOUND} s:\n{server.log_text()}")


# --- A client, as the stream's contract describes it ----------------------------------


def _api(server: LiveServer, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.http, headers={"Authorization": f"Token {token}"}, timeout=WAIT, trust_env=False
    )


async def ticket(server: LiveServer, token: str, slug: str) -> str:
    async with _api(server, token) as api:
        response = await api.post("/api/v1/ws-ticket/", json={"tenant": slug})
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


async def open_stream(server: LiveServer, token: str, slug: str) -> ClientConnection:
    key = await ticket(server, token, slug)
    return await connect(f"{server.ws}/ws/v1/tenants/{slug}/reviews/?ticket={key}", proxy=None, open_timeout=WAIT)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next message, heartbeats aside (they come every ~25 s, at any point)."""
    while (message := json.loads(await asyncio.wait_for(ws.recv(), WAIT)))["type"] == "heartbeat":
        pass
    return message


async def submit_high_risk(server: LiveServer, world) -> dict:
    async with _api(server, world.agent.token) as api:
        response = await api.post(
            f"/api/v1/tenants/{world.slug}/contracts/", json={"title": "MSA", "text": HIGH_RISK_TEXT}
        )
    assert response.status_code == 202, response.text
    return response.json()


@dataclass
class QueueMirror:
    """The client algorithm the stream is built for: apply events in `seq` order; on a
    gap, or a heartbeat/pong ahead of the position, fetch `events/?after=<position>`."""

    api: httpx.AsyncClient
    slug: str
    position: int | None = None
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    live: list[int] = field(default_factory=list)  # seqs applied as they arrived
    caught_up: list[list[int]] = field(default_factory=list)  # seqs fetched, per catch-up
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, ws: ClientConnection) -> None:
        async for raw in ws:
            await self.handle(json.loads(raw))

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "hello":
            self.position = message["latest_seq"]  # the tenant starts empty in these tests
        elif kind in ("heartbeat", "pong"):
            if message["latest_seq"] > self.position:
                await self.catch_up()
        elif "seq" in message:
            if message["seq"] == self.position + 1:
                self.apply(message)
                self.live.append(message["seq"])
            elif message["seq"] > self.position + 1:
                await self.catch_up()  # a gap: the missing events, and this one, come from REST
        self.changed.set()

    async def catch_up(self) -> None:
        fetched: list[int] = []
        while True:
            response = await self.api.get(f"/api/v1/tenants/{self.slug}/events/", params={"after": self.position})
            assert response.status_code == 200, response.text
            body = response.json()
            for event in body["results"]:
                self.apply(event)
                fetched.append(event["seq"])
            if not body["has_more"]:
                break
        self.caught_up.append(fetched)

    def apply(self, event: dict[str, Any]) -> None:
        assert event["seq"] == self.position + 1, (event["seq"], self.position)
        self.position = event["seq"]
        if "task_id" in event:
            self.tasks[event["task_id"]] = {
                key: event[key] for key in ("kind", "status", "risk_score", "claimed_by")
            }

    def fetched(self) -> list[int]:
        return [seq for catch_up in self.caught_up for seq in catch_up]

    async def wait_for_position(self, seq: int) -> None:
        deadline = time.monotonic() + WAIT
        while self.position is None or self.position < seq:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"stream never reached {seq} (at {self.position})"
            await asyncio.wait_for(self.changed.wait(), remaining)

    async def rest_view(self) -> dict[str, dict[str, Any]]:
        response = await self.api.get(f"/api/v1/tenants/{self.slug}/reviews/", params={"page_size": 100})
        assert response.status_code == 200, response.text
        return {
            task["id"]: {key: task[key] for key in ("kind", "status", "risk_score", "claimed_by")}
            for task in response.json()["results"]
        }


def run(scenario) -> None:
    """asyncio.run, then close the connection the ORM calls made from the event loop
    (they run on asgiref's one shared thread), so none outlives the test database."""

    async def main() -> None:
        try:
            await scenario()
        finally:
            await sync_to_async(connections.close_all)()

    asyncio.run(main())


def latest_seq(world) -> int:
    world.tenant.refresh_from_db(fields=["event_seq"])
    return world.tenant.event_seq


# --- Delivery and isolation ---------------------------------------------------------------


def test_subscriber_of_a_receives_review_created_and_subscriber_of_b_nothing(acme, globex):
    acme_seq, globex_seq = latest_seq(acme), latest_seq(globex)
    with live_servers(1) as [server]:

        async def scenario():
            acme_ws = await open_stream(server, acme.reviewer.token, acme.slug)
            globex_ws = await open_stream(server, globex.reviewer.token, globex.slug)
            assert await receive(acme_ws) == {"type": "hello", "latest_seq": acme_seq}
            assert await receive(globex_ws) == {"type": "hello", "latest_seq": globex_seq}
            # The client offers per-message compression; the server, started as the
            # README says, declines it.
            assert acme_ws.response.headers.get("Sec-WebSocket-Extensions") is None

            contract = await submit_high_risk(server, acme)
            event = await receive(acme_ws)
            assert (event["type"], event["seq"]) == ("review.created", acme_seq + 1)
            assert event["contract_id"] == contract["id"]
            assert (event["kind"], event["status"]) == ("legal", "pending")
            assert event["risk_score"] == pytest.approx(0.8245)
            task = await sync_to_async(ReviewTask.objects.get)(contract_id=contract["id"])
            assert event["task_id"] == str(task.pk)

            # globex's stream is alive and did not move: its next message answers a ping.
            await globex_ws.send(json.dumps({"type": "ping"}))
            assert await receive(globex_ws) == {"type": "pong", "latest_seq": globex_seq}
            await acme_ws.close()
            await globex_ws.close()

        run(scenario)


def test_an_event_produced_in_one_server_process_reaches_a_client_of_another(acme):
    start = latest_seq(acme)
    with live_servers(2) as [producer, other]:

        async def scenario():
            on_other = await open_stream(other, acme.viewer.token, acme.slug)
            on_producer = await open_stream(producer, acme.senior.token, acme.slug)
            assert (await receive(on_other))["type"] == "hello"
            assert (await receive(on_producer))["type"] == "hello"
            contract = await submit_high_risk(producer, acme)
            for ws in (on_other, on_producer):
                event = await receive(ws)
                assert (event["type"], event["seq"]) == ("review.created", start + 1)
                assert event["contract_id"] == contract["id"]
                await ws.close()

        run(scenario)


def test_review_created_and_contract_completed_committed_by_the_worker_reach_the_client(acme):
    start = latest_seq(acme)
    with live_servers(1, worker=True) as [server]:

        async def scenario():
            ws = await open_stream(server, acme.reviewer.token, acme.slug)
            assert (await receive(ws))["type"] == "hello"
            contract = await submit_high_risk(server, acme)
            created = await receive(ws)  # committed by the worker's graph run
            assert (created["type"], created["seq"], created["contract_id"]) == ("review.created", start + 1,
                                                                                 contract["id"])
            async with _api(server, acme.reviewer.token) as api:
                response = await api.post(f"/api/v1/tenants/{acme.slug}/reviews/{created['task_id']}/resume/",
                                          json={"decision": "approve"})
                assert response.status_code == 202, response.text
            resolved, completed = await receive(ws), await receive(ws)
            assert [(e["type"], e["seq"]) for e in (resolved, completed)] == [
                ("review.resolved", start + 2), ("contract.completed", start + 3)]
            assert completed["status"] == "approved"
            await ws.close()

        run(scenario)


# --- Gap recovery ---------------------------------------------------------------------------


def _listeners_terminated() -> int:
    """What a PostgreSQL restart or a network cut does to the relays' LISTEN
    connections: gone, with whatever notifications were on their way."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE %s AND pid <> pg_backend_pid()",
            ["LISTEN hitl_queue_events%"],
        )
        return cursor.fetchone()[0]


def _listening() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                       " AND query LIKE %s AND state = 'idle'", ["LISTEN hitl_queue_events%"])
        return cursor.fetchone()[0] > 0


def test_events_committed_while_the_relay_cannot_listen_still_arrive_in_order(acme):
    with live_servers(1) as [server]:

        async def scenario():
            ws = await open_stream(server, acme.viewer.token, acme.slug)
            async with _api(server, acme.viewer.token) as api, _api(server, acme.reviewer2.token) as reviewer2:
                mirror = QueueMirror(api=api, slug=acme.slug)
                reader = asyncio.create_task(mirror.run(ws))
                await mirror.wait_for_position(0)
                start = mirror.position
                await submit_high_risk(server, acme)
                await mirror.wait_for_position(start + 1)
                [task_id] = list(mirror.tasks)
                assert await sync_to_async(_listening)()

                assert await sync_to_async(_listeners_terminated)() == 1
                # Events committed while the relay has no LISTEN connection: it polls
                # the log until it listens again, so they still arrive live, in order.
                for action in ("claim", "release", "claim"):
                    response = await reviewer2.post(f"/api/v1/tenants/{acme.slug}/reviews/{task_id}/{action}/")
                    assert response.status_code == 200, response.text
                await mirror.wait_for_position(start + 4)
                assert mirror.live == [start + 1, start + 2, start + 3, start + 4] and mirror.caught_up == []
                assert mirror.tasks == await mirror.rest_view()

                # It listens again, and the next event arrives live as before.
                deadline = time.monotonic() + WAIT
                while not await sync_to_async(_listening)():
                    assert time.monotonic() < deadline, "the relay never listened again"
                    await asyncio.sleep(0.1)
                response = await reviewer2.post(f"/api/v1/tenants/{acme.slug}/reviews/{task_id}/release/")
                assert response.status_code == 200, response.text
                await mirror.wait_for_position(start + 5)
                assert mirror.live[-1] == start + 5 and mirror.tasks[task_id]["claimed_by"] is None
                await ws.close()
                await reader
        run(scenario)
        assert "lost its LISTEN connection" in server.log_text()


# --- Refusals, over a real handshake -----------------------------------------------------


async def _refused(url: str, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, additional_headers=headers, proxy=None, open_timeout=WAIT)
    return refused.value.response.status_code


def _session_cookie(member) -> str:
    client = Client()
    client.force_login(member.user)
    return f"sessionid={client.cookies['sessionid'].value}"


def test_refusals_no_credentials_foreign_origin_foreign_tenant_revoked_viewer(acme, globex):
    viewer_cookie = _session_cookie(acme.viewer)
    with live_servers(1) as [server]:
        acme_url = f"{server.ws}/ws/v1/tenants/{acme.slug}/reviews/"
        own_origin = {"Origin": server.http}

        async def scenario():
            # No credentials at all; an origin of ours is not a credential either.
            assert await _refused(acme_url) == 403
            assert await _refused(acme_url, own_origin) == 403
            # A valid session cookie from a foreign page, or with no Origin (not a browser).
            assert await _refused(acme_url, {"Origin": "https://evil.example", "Cookie": viewer_cookie}) == 403
            assert await _refused(acme_url, {"Cookie": viewer_cookie}) == 403
            # ...while from our own origin it works (the control).
            ws = await connect(acme_url, additional_headers={**own_origin, "Cookie": viewer_cookie}, proxy=None)
            assert (await receive(ws))["type"] == "hello"
            await ws.close()

            # A foreign tenant: globex's ticket on acme's stream, and a tenant that does not exist.
            globex_ticket = await ticket(server, globex.admin.token, globex.slug)
            assert await _refused(f"{acme_url}?ticket={globex_ticket}") == 403
            nowhere = f"{server.ws}/ws/v1/tenants/nope/reviews/"
            assert await _refused(nowhere, {**own_origin, "Cookie": viewer_cookie}) == 403

            # The viewer's membership is revoked between ticket and connect.
            viewer_ticket = await ticket(server, acme.viewer.token, acme.slug)
            membership = await sync_to_async(Membership.objects.get)(tenant=acme.tenant, user=acme.viewer.user)
            async with _api(server, acme.admin.token) as admin:
                assert (await admin.delete(f"/api/v1/tenants/{acme.slug}/members/{membership.pk}/")).status_code == 204
            assert await _refused(f"{acme_url}?ticket={viewer_ticket}") == 403
            assert await _refused(acme_url, {**own_origin, "Cookie": viewer_cookie}) == 403

            # Tickets are single-use: the one in the access log below is worthless now.
            used = await ticket(server, acme.reviewer.token, acme.slug)
            ws = await connect(f"{acme_url}?ticket={used}", proxy=None)
            await ws.close()
            assert await _refused(f"{acme_url}?ticket={used}") == 403

        run(scenario)
        log = server.log_text()
    assert "?ticket=" in log  # the access log does show tickets...
    for world in (acme, globex):  # ...but never an API token
        for member in (world.admin, world.reviewer, world.viewer, world.agent):
            assert member.token not in log


def test_revoked_viewer_stops_receiving_and_the_socket_closes(acme):
    with live_servers(1) as [server]:

        async def scenario():
            viewer = await open_stream(server, acme.viewer.token, acme.slug)
            admin = await open_stream(server, acme.admin.token, acme.slug)
            await receive(viewer), await receive(admin)
            membership = await sync_to_async(Membership.objects.get)(tenant=acme.tenant, user=acme.viewer.user)
            async with _api(server, acme.admin.token) as api:
                member_url = f"/api/v1/tenants/{acme.slug}/members/{membership.pk}/"
                response = await api.patch(member_url, json={"role": "agent"})
                assert response.status_code == 200, response.text
            await submit_high_risk(server, acme)
            assert (await receive(admin))["type"] == "review.created"
            with pytest.raises(ConnectionClosed) as closed:
                await receive(viewer)
            assert closed.value.rcvd.code == 4403
            await admin.close()

        run(scenario)
