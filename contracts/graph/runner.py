"""Runs the contract graph against its checkpointer.

PostgresSaver holds an instance lock around every database call, so one saver shared
by a process serialises all runs; each OS thread gets its own saver and connection
instead. The checkpointer lives in the same PostgreSQL database as Django (its own
autocommit connection), or in a SQLite file on the embedded default.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from config.postgresql.params import psycopg_params
from contracts.graph import faults
from contracts.graph.builder import contract_graph_build
from contracts.graph.nodes import NODE_KINDS

_local = threading.local()

# A run checkpoints when it stops (an interrupt, the end, an error), not after every
# step: a third of the checkpointer's writes and half its CPU (measured: 6.3 against
# 11-12 ms for a contract's two runs). A run killed midway then leaves the thread at
# its last stop, and the drive runs it again from there: every node before an
# interrupt is a pure function of the state, and an answer not yet consumed is still
# pending, so it is sent again (contracts.services.contract_drive).
DURABILITY = "exit"
# A worker's checkpointer connection idle longer than this is tested before a pass.
IDLE_CHECK_SECONDS = 1.0


def interrupt_digest(value: Any) -> str:
    """sha256 of an interrupt value's canonical JSON (sorted keys, no whitespace): what
    a review task shows, named by content rather than by position in the graph (which
    is all an interrupt id names)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class PendingInterrupt:
    id: str
    kind: str
    payload: dict
    response_schema: dict | None

    @property
    def digest(self) -> str:
        return interrupt_digest(self.payload)


@dataclass(frozen=True)
class RunSnapshot:
    """Where a thread stands, as its checkpoints (and the writes saved since) say."""

    exists: bool
    values: dict[str, Any] = field(default_factory=dict)
    pending: list[PendingInterrupt] = field(default_factory=list)
    # Nodes the thread still has to run or finish; empty once it has ended.
    tasks: tuple[str, ...] = ()
    checkpoint_id: str | None = None

    @property
    def finished(self) -> bool:
        return self.exists and not self.tasks and "human_decision" in self.values

    @property
    def runnable(self) -> bool:
        """Work is left and no human is asked for anything: a run died between two steps
        (or before the first), and invoking the thread again continues it."""
        return self.exists and bool(self.tasks) and not self.pending

    @property
    def applied_task_ids(self) -> set[str]:
        """Review tasks whose decision the graph has consumed: every review node appends
        the decision, with its task id, to the history as it returns. Writes saved by a
        node count even before its step's checkpoint: they are durable and a continued
        run applies them."""
        return {entry["task_id"] for entry in self.values.get("history", []) if entry.get("task_id")}


def postgres_connect() -> psycopg.Connection:
    """A connection as PostgresSaver requires: autocommit, dict rows, and
    prepare_threshold 0 as LangGraph's documentation sets it (psycopg then prepares
    each statement at its first run; None would prepare none)."""
    return psycopg.connect(**postgres_connect_params())


def postgres_connect_params() -> dict[str, Any]:
    return {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row, **psycopg_params()}


def _identity() -> tuple[str, str]:
    """Which database the current settings point at; tests switch to a test database."""
    db = connections["default"].settings_dict
    if connections["default"].vendor == "postgresql":
        return ("postgresql", f"{db.get('HOST')}:{db.get('PORT')}/{db['NAME']}")
    return ("sqlite", str(settings.CHECKPOINT_SQLITE_PATH))


def _saver_class(base: type) -> type:
    # Recovery tests only: a saver that kills the process at a chosen write.
    return faults.crashing_saver(base) if faults.kill_point() else base


def _saver_new(identity: tuple[str, str]) -> tuple[BaseCheckpointSaver, Any]:
    vendor, location = identity
    if vendor == "postgresql":
        conn = postgres_connect()
        return _saver_class(PostgresSaver)(conn), conn
    Path(location).parent.mkdir(parents=True, exist_ok=True)
    # SqliteSaver locks around its own calls; check_same_thread=False is what it expects.
    conn = sqlite3.connect(location, check_same_thread=False, timeout=20)
    conn.execute("PRAGMA journal_mode=WAL")
    return _saver_class(SqliteSaver)(conn), conn


def _usable(conn: Any) -> bool:
    if isinstance(conn, psycopg.Connection):
        return not conn.closed and not conn.broken
    return True


def contract_graph() -> CompiledStateGraph:
    """This thread's compiled graph, bound to this thread's own saver."""
    identity = _identity()
    cached = getattr(_local, "cached", None)
    if cached is not None and cached[0] == identity and _usable(cached[2]):
        return cached[1]
    if cached is not None:
        contract_graph_close()
    saver, conn = _saver_new(identity)
    graph = contract_graph_build(saver, node_hook=faults.node_hook())
    _local.cached = (identity, graph, conn)
    return graph


def contract_graph_close() -> None:
    cached = getattr(_local, "cached", None)
    _local.cached = None
    if cached is not None:
        try:
            cached[2].close()
        except Exception:  # closing a broken connection may itself fail; nothing to keep
            pass


def checkpointer_setup() -> None:
    """Create the checkpointer's tables (idempotent). PostgresSaver.setup() uses
    CREATE INDEX CONCURRENTLY, so it runs on its own autocommit connection."""
    if connections["default"].vendor == "postgresql":
        with postgres_connect() as conn:
            PostgresSaver(conn).setup()
    else:
        saver, conn = _saver_new(_identity())
        try:
            saver.setup()
        finally:
            conn.close()


def _config(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id}}


def thread_snapshot(thread_id: str) -> RunSnapshot:
    return _run_snapshot(contract_graph().get_state(_config(thread_id)))


@contextmanager
def thread_pass() -> Iterator[None]:
    """One transaction of this thread's checkpointer connection around a pass (its
    reads of where the thread stands, the run, its checkpoint and writes): one commit
    instead of the five its statements made on their own (the saver's connection is
    autocommit). Nothing is lost by it: a run writes only when it stops
    (DURABILITY), so a pass cut short leaves the thread where it stood either way, and
    now never a checkpoint without the writes that go with it. SQLite: each call of
    the saver commits itself, as before."""
    contract_graph()  # this thread's saver and connection, opened if need be
    conn = _local.cached[2]
    if not isinstance(conn, psycopg.Connection):
        yield
        return
    if time.monotonic() - getattr(_local, "used_at", 0.0) > IDLE_CHECK_SECONDS:
        # Idle for a while: its backend may have been ended meanwhile (a restart, an
        # administrator), which a pass would only find out by failing. Test it first,
        # as the request pool does (config.postgresql).
        try:
            conn.execute("")
        except psycopg.Error:
            contract_graph_close()
            contract_graph()
            conn = _local.cached[2]
    try:
        with conn.transaction():
            yield
    finally:
        _local.used_at = time.monotonic()


# --- Reads from threads that do not drive runs (requests) ---------------------------

# Compiled once per process without a checkpointer; each read binds a saver to a
# shallow copy (~0.04 ms, against ~3 ms to compile the graph again).
_unbound_graph: CompiledStateGraph | None = None
# Requests read through one process-wide saver over a small pool of checkpointer
# connections: under ASGI each request runs in a new thread, and a saver of its own
# meant a new PostgreSQL connection for every resume (about 3 ms, and a session).
# Its per-instance lock serialises the reads, which take well under a millisecond.
READ_POOL_SIZE = 4
READ_POOL_TIMEOUT_SECONDS = 10
_read_savers: dict[tuple[str, str], tuple[BaseCheckpointSaver, Any]] = {}
_read_savers_lock = threading.Lock()


def _read_saver(identity: tuple[str, str]) -> BaseCheckpointSaver | None:
    if identity[0] != "postgresql":
        return None  # SQLite: a file, opened per read for next to nothing
    with _read_savers_lock:
        cached = _read_savers.get(identity)
        if cached is None:
            # The timeout is the request pool's (config.env): a read that cannot get a
            # connection is a 503 in time for the client, not a 30 s wait (psycopg_pool's
            # default) while reconnection backs off during an outage.
            pool = ConnectionPool(kwargs=postgres_connect_params(), min_size=1, max_size=READ_POOL_SIZE, open=True,
                                  check=ConnectionPool.check_connection, name="checkpoint-reads",
                                  timeout=READ_POOL_TIMEOUT_SECONDS)
            cached = _read_savers[identity] = (PostgresSaver(pool), pool)
        return cached[0]


def read_savers_close() -> None:
    """Close the read pools (tests switch databases; a process closes them at exit)."""
    with _read_savers_lock:
        for _, pool in _read_savers.values():
            pool.close()
        _read_savers.clear()


@contextmanager
def _graph_for_read() -> Iterator[CompiledStateGraph]:
    """The graph bound to a checkpointer, for one read. A thread that already holds its
    own saver (a worker, or a test driving runs inline) reuses it; any other thread (a
    request) reads through the process's pooled read saver (PostgreSQL) or opens the
    SQLite file for this read."""
    global _unbound_graph
    identity = _identity()
    cached = getattr(_local, "cached", None)
    if cached is not None and cached[0] == identity and _usable(cached[2]):
        yield cached[1]
        return
    if _unbound_graph is None:
        _unbound_graph = contract_graph_build(None)
    pooled = _read_saver(identity)
    if pooled is not None:
        yield _unbound_graph.copy(update={"checkpointer": pooled})
        return
    saver, conn = _saver_new(identity)
    try:
        yield _unbound_graph.copy(update={"checkpointer": saver})
    finally:
        conn.close()


def thread_state_read(thread_id: str) -> StateSnapshot | None:
    """LangGraph's own view of the thread (values, next, tasks and their interrupts,
    checkpoint, metadata), or None when it has no checkpoint yet. For the
    LangGraph-compatible API's get_state, from any thread."""
    with _graph_for_read() as graph:
        state = graph.get_state(_config(thread_id))
    return state if state.created_at else None


def thread_pending_read(thread_id: str) -> list[PendingInterrupt]:
    """The interrupts pending in the thread's checkpoint now, from any thread (the
    resume service compares them with what a reviewer saw)."""
    with _graph_for_read() as graph:
        return _run_snapshot(graph.get_state(_config(thread_id))).pending


def _run_snapshot(state: StateSnapshot) -> RunSnapshot:
    if not state.created_at:
        return RunSnapshot(exists=False)
    checkpoint_id = (state.config or {}).get("configurable", {}).get("checkpoint_id")
    pending = [
        PendingInterrupt(
            id=item.id,
            kind=NODE_KINDS[task.name],
            payload=item.value,
            response_schema=getattr(item, "response_schema", None),
        )
        for task in state.tasks
        for item in task.interrupts
    ]
    return RunSnapshot(
        exists=True,
        values=dict(state.values),
        pending=pending,
        tasks=tuple(task.name for task in state.tasks),
        checkpoint_id=checkpoint_id,
    )


def thread_start(thread_id: str, initial_state: dict) -> RunSnapshot:
    contract_graph().invoke(initial_state, _config(thread_id), durability=DURABILITY)
    return thread_snapshot(thread_id)


def thread_resume(thread_id: str, answers: dict[str, dict]) -> RunSnapshot:
    """Answer pending interrupts by id. Always a map, never a bare value: with several
    pending, a bare value could be routed to the wrong one."""
    contract_graph().invoke(Command(resume=answers), _config(thread_id), durability=DURABILITY)
    return thread_snapshot(thread_id)


def thread_continue(thread_id: str) -> RunSnapshot:
    """Carry on a run that died between two steps, from its last checkpoint: LangGraph
    re-runs the tasks whose writes were not saved and applies those that were. Only for
    a thread with no pending interrupt (RunSnapshot.runnable); an interrupted node would
    just ask again."""
    contract_graph().invoke(None, _config(thread_id), durability=DURABILITY)
    return thread_snapshot(thread_id)


def thread_end(thread_id: str, *, outcome: str) -> RunSnapshot:
    """End a thread that still has work (interrupts waiting, or a run that died mid-way)
    without running it (a cancel): the state is updated as if `finalize` had run, so the
    thread has nothing left to do."""
    contract_graph().update_state(_config(thread_id), {"human_decision": outcome}, as_node="finalize")
    return thread_snapshot(thread_id)


# --- Retention (contracts.retention) ---------------------------------------------------

# The tables each saver keeps a thread's rows in.
POSTGRES_CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
SQLITE_CHECKPOINT_TABLES = ("checkpoints", "writes")


def checkpoint_rows(thread_ids: list[str]) -> dict[str, int]:
    """How many rows the checkpointer holds for these threads, by table."""
    saver = contract_graph().checkpointer
    if not thread_ids:
        return {}
    ids = [str(t) for t in thread_ids]
    if isinstance(saver, PostgresSaver):
        # The saver's own connection, under its own lock (it guards every call with it).
        with saver.lock:
            return {
                table: saver.conn.execute(f"SELECT count(*) AS n FROM {table} WHERE thread_id = ANY(%s)", [ids]).fetchone()["n"]
                for table in POSTGRES_CHECKPOINT_TABLES
            }
    marks = ",".join("?" * len(ids))
    with saver.cursor(transaction=False) as cur:
        return {
            table: cur.execute(f"SELECT count(*) FROM {table} WHERE thread_id IN ({marks})", ids).fetchone()[0]
            for table in SQLITE_CHECKPOINT_TABLES
        }


def threads_delete(thread_ids: list[str]) -> None:
    """Delete every checkpoint, blob and pending write of these threads, with
    LangGraph's own calls: PostgresSaver.prune(strategy="delete"), all threads in one
    transaction; SqliteSaver (which has no prune) delete_thread one by one."""
    if not thread_ids:
        return
    saver = contract_graph().checkpointer
    if isinstance(saver, PostgresSaver):
        saver.prune([str(t) for t in thread_ids], strategy="delete")
        return
    for thread_id in thread_ids:
        saver.delete_thread(str(thread_id))
