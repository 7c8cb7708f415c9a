"""The live queue on the embedded default, as .ci/start runs it: SQLite, no Redis, the
server (`uvicorn config.asgi:application`) and the task worker (`manage.py run_worker`)
as separate processes. Events the worker commits (review.created, contract.completed)
reach a websocket client of the server, in order, each once; before, they never did
(the in-memory channel layer lives inside one process)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect

from tests.factories import HIGH_RISK_TEXT
from tests.live import Product, live_product

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
                       reason="the embedded default's own processes; PostgreSQL: tests/reviews/test_ws_live.py"),
]

# Only stops a broken run from hanging; never a speed assertion.
WAIT = 60


@pytest.fixture(scope="module")
def product() -> Product:
    with live_product(debug=True, worker=True, seed=True) as product:
        yield product


async def open_stream(product: Product, username: str, slug: str) -> ClientConnection:
    async with httpx.AsyncClient(base_url=product.http, trust_env=False,
                                 headers={"Authorization": f"Bearer {product.user(username)['token']}"}) as api:
        response = await api.post("/api/v1/ws-ticket/", json={"tenant": slug})
    assert response.status_code == 201, response.text
    return await connect(f"{product.ws}{response.json()['url']}", proxy=None, open_timeout=WAIT)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    while (message := json.loads(await asyncio.wait_for(ws.recv(), WAIT)))["type"] == "heartbeat":
        pass
    return message


def test_events_the_worker_commits_reach_a_websocket_client_of_the_server(product):
    async def scenario():
        acme = await open_stream(product, "acme-reviewer1", "acme")
        globex = await open_stream(product, "globex-reviewer1", "globex")
        start = (await receive(acme))["latest_seq"]
        globex_start = (await receive(globex))["latest_seq"]
        async with httpx.AsyncClient(base_url=product.http, trust_env=False, timeout=WAIT,
                                     headers={"Authorization": f"Token {product.user('acme-agent')['token']}"}) as agent:
            submitted = await agent.post("/api/v1/tenants/acme/contracts/", json={"title": "MSA", "text": HIGH_RISK_TEXT})
        assert submitted.status_code == 202, submitted.text
        created = await receive(acme)  # committed by the worker process
        assert (created["type"], created["seq"]) == ("review.created", start + 1)
        assert created["contract_id"] == submitted.json()["id"]

        async with httpx.AsyncClient(base_url=product.http, trust_env=False, timeout=WAIT,
                                     headers={"Authorization": f"Token {product.user('acme-reviewer1')['token']}"}) as rv:
            resumed = await rv.post(f"/api/v1/tenants/acme/reviews/{created['task_id']}/resume/",
                                    json={"decision": "approve"})
        assert resumed.status_code == 202, resumed.text
        resolved, completed = await receive(acme), await receive(acme)  # from the server, then the worker
        assert [(e["type"], e["seq"]) for e in (resolved, completed)] == [
            ("review.resolved", start + 2), ("contract.completed", start + 3)]
        assert completed["status"] == "approved"

        # globex's socket saw nothing of it: its next message answers a ping, unmoved.
        await globex.send(json.dumps({"type": "ping"}))
        assert await receive(globex) == {"type": "pong", "latest_seq": globex_start}
        await acme.close()
        await globex.close()

    asyncio.run(scenario())
