"""Helpers for tests that need more than one thread or OS process on the test database:
races with a barrier, child processes pointed at the same database, bounded polling,
and the checkpoint trail of a thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings
from django.db import connection

from contracts.graph import runner
from contracts.graph.runner import contract_graph, contract_graph_close

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The interpreter running pytest is the project's venv.
PYTHON = sys.executable
# The server as the README serves it; add --host and --port.
SERVER_COMMAND = [PYTHON, "-m", "uvicorn", "config.asgi:application", "--ws-per-message-deflate", "false"]

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL: several connections or processes share one test database",
)


def fast_passwords(settings_fixture) -> None:
    """The shared fixtures hash a password for each of six members per tenant; PBKDF2 at
    full strength costs ~0.3 s each. Nothing here tests password hashing."""
    settings_fixture.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- Threads ------------------------------------------------------------------------


def race(count: int, attempt: Callable[[int], Any]) -> list[tuple[str, Any]]:
    """Run `attempt(i)` in `count` real threads released together by a barrier.

    Each thread opens its own database connection *before* the barrier, so they hit the
    database at the same moment, and closes it (and its checkpointer connection) at the
    end, so the test database can be flushed and dropped. Returns ("ok", value) or
    ("error", exception) per attempt, in order."""
    barrier = threading.Barrier(count)
    results: list[tuple[str, Any]] = [("error", RuntimeError("never ran"))] * count

    def run(index: int) -> None:
        try:
            connection.ensure_connection()
            # Bounded: if one thread cannot start (no connection), the others fail
            # with BrokenBarrierError instead of waiting forever.
            barrier.wait(timeout=60)
            results[index] = ("ok", attempt(index))
        except BaseException as exc:  # noqa: BLE001 - reported to the test, not swallowed
            results[index] = ("error", exc)
        finally:
            contract_graph_close()
            connection.close()

    threads = [threading.Thread(target=run, args=(i,), name=f"race-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --- The graph's checkpoints --------------------------------------------------------


def checkpoint_trail(thread_id: str) -> list[tuple[str, int]]:
    """(source, step) of every checkpoint of the thread, oldest first. Two threads that
    went through the same runs have the same trail; a second resume adds "loop" entries."""
    history = contract_graph().get_state_history({"configurable": {"thread_id": thread_id}})
    return [(snap.metadata["source"], snap.metadata["step"]) for snap in reversed(list(history))]


def graph_runs_spy(monkeypatch) -> list[tuple]:
    """Record every start and resume of a thread, from any thread, in order. A spy, not
    a mock: each call goes on to the real graph. contracts.services calls these through
    the `runner` module, so patching the module attributes sees every call."""
    calls: list[tuple] = []
    real_start, real_resume = runner.thread_start, runner.thread_resume

    def start(thread_id: str, state: dict):
        calls.append(("start", thread_id))
        return real_start(thread_id, state)

    def resume(thread_id: str, answers: dict):
        calls.append(("resume", thread_id, sorted(answers)))
        return real_resume(thread_id, answers)

    monkeypatch.setattr(runner, "thread_start", start)
    monkeypatch.setattr(runner, "thread_resume", resume)
    return calls


# --- Child processes ----------------------------------------------------------------


def child_database_url() -> str:
    """A DATABASE_URL for the database this test runs on (the test database)."""
    db = connection.settings_dict
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or "5432"
    url = f"postgres://{auth}@{host}:{port}/{quote(db['NAME'], safe='')}"
    options = {k: v for k, v in (db.get("OPTIONS") or {}).items() if isinstance(v, str)}
    # %20 for a space, not "+": libpq reads a URI's query without turning "+" into one.
    return f"{url}?{urlencode(options, quote_via=quote)}" if options else url



def child_env(*, tasks_backend: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=child_database_url(),
        TASKS_BACKEND=tasks_backend,
        SECRET_KEY=settings.SECRET_KEY,
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
    )
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


_PRELUDE = "import django, json, os, sys\ndjango.setup()\n"

# Only a guard against a hung child blocking the suite forever; never a speed assertion.
HANG_GUARD_SECONDS = 120


def run_django_script(script: str, *args: str, tasks_backend: str = "immediate") -> dict:
    """Run `script` in a fresh Python process with Django set up on the test database.
    The script prints one JSON object as its last line of stdout; that object is
    returned. Logging goes to stderr."""
    completed = subprocess.run(
        [PYTHON, "-c", _PRELUDE + script, *args],
        cwd=PROJECT_DIR,
        env=child_env(tasks_backend=tasks_backend),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
    )
    assert completed.returncode == 0, f"child failed ({completed.returncode}):\n{completed.stderr}"
    return json.loads(completed.stdout.strip().splitlines()[-1])


def wait_until(predicate: Callable[[], Any], *, what: str, bound: float = 60.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy. `bound` only stops a broken
    run from hanging; it is generous and not a speed assertion."""
    deadline = time.monotonic() + bound
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {bound:.0f} s")
        time.sleep(interval)



# --- A webhook receiver -------------------------------------------------------------


@dataclass
class Received:
    at: float  # time.monotonic() when the request arrived
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on a free local port, in a thread of this process. `answer`
    gives the status of each request from its index (0, 1, ...); `hang` makes every
    request wait, unanswered, until `release` is set (or the server stops); `trickle`
    answers a byte at a time, one every 0.2 s, until then."""

    url: str
    requests: list[Received] = field(default_factory=list)
    answer: Callable[[int], int] = lambda index: 200
    hang: bool = False
    trickle: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)


@contextmanager
def receiver(*, answer: Callable[[int], int] = lambda index: 200, hang: bool = False, trickle: bool = False,
             path: str = "/hook") -> Iterator[Receiver]:
    box: dict[str, Receiver] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state = box["state"]
            with lock:
                index = len(state.requests)
                state.requests.append(Received(at=time.monotonic(), headers={k.lower(): v for k, v in self.headers.items()},
                                               body=body))
            state.arrived.set()
            if state.hang:
                state.release.wait()
            if state.trickle:
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"." * 10_000:
                    if state.release.wait(0.2):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            status = state.answer(index)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else f"receiver says {status}".encode())

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}{path}", answer=answer, hang=hang,
                     trickle=trickle)
    box["state"] = state
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()  # a hanging request answers now, its sender moves on
        server.shutdown()
        server.server_close()
        thread.join()


def url_patterns_walk(patterns=None, prefix: str = "", converters: frozenset[str] = frozenset()):
    """Every URL pattern of the project (the route matrices discover routes with it):
    (pattern, its full route, the names of its path converters)."""
    from django.urls import URLPattern, URLResolver, get_resolver

    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        names = converters | frozenset(getattr(pattern.pattern, "converters", {}))
        if isinstance(pattern, URLResolver):
            yield from url_patterns_walk(pattern.url_patterns, route, names)
        elif isinstance(pattern, URLPattern):
            yield pattern, route, names
