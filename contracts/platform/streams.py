"""Following a run while a worker carries it out: runs.wait / join (JSON with newline
keep-alives) and runs.stream / join_stream (server-sent events).

Both are async iterators. Django under ASGI buffers a StreamingHttpResponse fed by a
synchronous iterator entirely before sending it, so keep-alives and events would only
arrive at the end; an async iterator is sent as it yields. The run's progress is read
from the database (our rows: the Run, the contract, its review tasks) at a short,
growing interval, in the request's own thread (thread-sensitive sync_to_async, as the
view ran), and that thread's connection goes back to the pool between reads, so a
waiting client holds no database connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connection

from config.api_errors import is_database_unavailable

logger = logging.getLogger(__name__)

# Polling: first look soon (a pass of the graph takes some 30-60 ms, so most runs end
# within the first few reads), then back off to a ceiling that keeps a client waiting on
# people at two reads a second. Each read is three indexed queries.
FIRST_POLL_SECONDS = 0.02
POLL_BACKOFF = 1.25
MAX_POLL_SECONDS = 0.5
DONE = ("success", "error", "interrupted", "timeout")


@dataclass(frozen=True)
class RunProgress:
    status: str
    # The run's output once it has ended (run_output: values with __interrupt__, or
    # __error__); None while it is pending or running.
    output: dict[str, Any] | None = None
    # Graph nodes the run is known to have reached, in order (for the events mode).
    nodes: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in DONE


Poll = Callable[[], RunProgress]


def _released(poll: Poll) -> Callable[[], RunProgress]:
    def read() -> RunProgress:
        try:
            return poll()
        finally:
            # Back to the pool until the next read; never inside a transaction (tests
            # run the whole request in one).
            if not connection.in_atomic_block:
                close_old_connections()

    return read


async def _progress(poll: Poll) -> RunProgress:
    return await sync_to_async(_released(poll), thread_sensitive=True)()


def _dumps(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":"))


def _failure(exc: BaseException) -> dict[str, str]:
    if is_database_unavailable(exc):
        return {"error": "ServiceUnavailable", "message": "The database is unavailable; join the run again shortly."}
    return {"error": type(exc).__name__, "message": "Following the run failed; join it again."}


async def _until_done(poll: Poll) -> AsyncIterator[RunProgress]:
    """Yield each progress read, the last one being the run's end."""
    delay = FIRST_POLL_SECONDS
    progress = await _progress(poll)
    yield progress
    while not progress.done:
        await asyncio.sleep(delay)
        delay = min(delay * POLL_BACKOFF, MAX_POLL_SECONDS)
        progress = await _progress(poll)
        yield progress


async def wait_stream(poll: Poll) -> AsyncIterator[bytes]:
    """runs.wait / join: a newline every keep-alive interval while the run goes on (the
    SDKs read for up to 300 s between bytes; JSON parsers skip leading whitespace), then
    the run's output as one JSON object."""
    keepalive = settings.LANGGRAPH_KEEPALIVE_SECONDS
    last = time.monotonic()
    try:
        async for progress in _until_done(poll):
            if progress.done:
                yield _dumps(progress.output).encode()
                return
            if time.monotonic() - last >= keepalive:
                last = time.monotonic()
                yield b"\n"
    except Exception as exc:  # the client gets an answer it can act on, not a cut-off body
        logger.warning("following a run failed: %s", exc)
        yield _dumps({"__error__": _failure(exc)}).encode()


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\r\ndata: {_dumps(data)}\r\n\r\n".encode()


HEARTBEAT = b": heartbeat\r\n\r\n"


def _chain_event(
    kind: str, name: str, *, run_id: str, thread_id: str, node: str | None, step: int, data: dict | None = None
) -> dict[str, Any]:
    """One event in the shape of LangChain's astream_events (v2), which the `events`
    mode carries; Agent Inbox shows `metadata.langgraph_node` of each on_chain_start."""
    metadata: dict[str, Any] = {"thread_id": thread_id, "run_id": run_id}
    if node is not None:
        metadata.update(langgraph_node=node, langgraph_step=step)
    return {
        "event": kind,
        "name": name,
        "run_id": str(uuid.uuid5(uuid.UUID(run_id), f"{name}:{step}")),
        "tags": [],
        "metadata": metadata,
        "data": data or {},
        "parent_ids": [] if node is None else [run_id],
    }


async def event_stream(poll: Poll, *, run_id: str, thread_id: str, modes: list[str]) -> AsyncIterator[bytes]:
    """runs.stream / join_stream: `metadata` first, then as the run goes on the graph
    nodes it reaches (`events` mode: on_chain_start with langgraph_node), a heartbeat
    comment every keep-alive interval, and at its end `updates` ({"__interrupt__": [...]}
    when it stops on an interrupt) and `values` (the values, with `__interrupt__`), or
    `error`. The stream then closes, with no `end` event (as LangGraph Platform does);
    the SDKs then read the run and find it ended."""
    keepalive = settings.LANGGRAPH_KEEPALIVE_SECONDS
    events = "events" in modes
    yield sse("metadata", {"run_id": run_id, "attempt": 1})
    if events:
        yield sse(
            "events", _chain_event("on_chain_start", "LangGraph", run_id=run_id, thread_id=thread_id, node=None, step=0)
        )
    emitted = 0
    last = time.monotonic()
    try:
        async for progress in _until_done(poll):
            if events:
                for node in progress.nodes[emitted:]:
                    emitted += 1
                    yield sse(
                        "events",
                        _chain_event(
                            "on_chain_start", node, run_id=run_id, thread_id=thread_id, node=node, step=emitted
                        ),
                    )
            if progress.done:
                output = progress.output or {}
                if "__error__" in output:
                    yield sse("error", output["__error__"])
                    return
                if "updates" in modes:
                    interrupts = output.get("__interrupt__")
                    update = (
                        {"__interrupt__": interrupts}
                        if interrupts
                        else {
                            progress.nodes[-1] if progress.nodes else "LangGraph": {
                                key: output[key] for key in ("human_decision",) if key in output
                            }
                        }
                    )
                    yield sse("updates", update)
                if "values" in modes:
                    yield sse("values", output)
                if events:
                    yield sse(
                        "events",
                        _chain_event(
                            "on_chain_end",
                            "LangGraph",
                            run_id=run_id,
                            thread_id=thread_id,
                            node=None,
                            step=emitted + 1,
                            data={"output": output},
                        ),
                    )
                return
            if time.monotonic() - last >= keepalive:
                last = time.monotonic()
                yield HEARTBEAT
    except Exception as exc:
        logger.warning("following a run failed: %s", exc)
        yield sse("error", _failure(exc))
