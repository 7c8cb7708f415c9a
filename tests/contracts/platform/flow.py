"""The LangGraph-compatible API driven in-process, as the SDKs call it: tokens in
x-api-key, JSON bodies, streamed answers read to their end. Runs are carried out by the
immediate task backend when the request's transaction commits (captured here)."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from django.test import TestCase
from rest_framework.test import APIClient

from contracts.models import Contract
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT

GRAPH = "contract_review"


def client(member, **headers: str) -> APIClient:
    api = APIClient()
    if member is not None:
        api.credentials(HTTP_X_API_KEY=member.token, **headers)
    return api


def url(world, path: str, prefix: str = "langgraph") -> str:
    return f"/{prefix}/{world.slug}/{path}"


def call(
    member,
    world,
    method: str,
    path: str,
    body: Any = None,
    *,
    prefix: str = "langgraph",
    drive: bool = True,
    **headers: str,
):
    """One request; with `drive`, the runs it queues are carried out when it commits."""
    api = client(member)
    send = getattr(api, method.lower())
    kwargs = {"format": "json"} if body is not None else {}
    if drive:
        with TestCase.captureOnCommitCallbacks(execute=True):
            return send(url(world, path, prefix), body, **kwargs, **headers)
    return send(url(world, path, prefix), body, **kwargs, **headers)


def content(response) -> bytes:
    """The whole body, a streamed one read to its end (through the async iterator, in
    this thread: its database reads see the test's transaction)."""
    if not response.streaming:
        return response.content

    async def read() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(read)()


def body(response) -> Any:
    return json.loads(content(response))


def events(response) -> list[tuple[str, Any]]:
    """A server-sent event stream as (event, data) pairs; heartbeat comments dropped."""
    found = []
    for block in content(response).decode().split("\r\n\r\n"):
        lines = [line for line in block.split("\r\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        found.append((fields["event"], json.loads(fields["data"])))
    return found


def thread_with_contract(
    world, member=None, text: str = HIGH_RISK_LARGE_PAYMENT_TEXT, title: str = "MSA"
) -> tuple[str, dict]:
    """threads.create, then runs.wait with the contract: (thread id, the run's output)."""
    member = member or world.agent
    thread = call(member, world, "post", "threads", {"metadata": {"source": "test"}})
    assert thread.status_code == 200, thread.content
    thread_id = thread.json()["thread_id"]
    waited = call(
        member,
        world,
        "post",
        f"threads/{thread_id}/runs/wait",
        {"assistant_id": GRAPH, "input": {"contract_text": text, "title": title}},
    )
    assert waited.status_code == 200, waited.content
    return thread_id, body(waited)


def interrupt_ids(output: dict) -> dict[str, str]:
    """kind -> interrupt id, from a run's __interrupt__."""
    return {item["value"]["kind"]: item["id"] for item in output.get("__interrupt__", [])}


def contract_of(thread_id: str) -> Contract:
    return Contract.objects.get(pk=thread_id)
