"""End-to-end throughput and latency of the product, against the bare LangGraph floor.

Product: its own PostgreSQL database (dropped and recreated every run), migrated with
`manage.py migrate`; one tenant with an agent and a reviewer holding API tokens; one
`uvicorn config.asgi:application` process and K task-worker processes
(`manage.py db_worker`, TASKS_BACKEND=database, Redis for the throttle cache). C client threads, each with its own HTTP session, each driving
contracts one after another through the real API. How a thread learns that its review
task is there and that its contract is done is `--watch`:

  ws (default), as a reviewer UI does: one websocket subscriber for the whole process,
    the reviewer's, on the tenant's live queue (/ws/v1/tenants/<slug>/reviews/, with a
    single-use ticket from POST /api/v1/ws-ticket/), connected before the warm-up of
    each phase and closed after it. Two HTTP requests per contract:

    POST contracts/ (high risk)  ->  wait for its `review.created` event (the task id)
    ->  POST reviews/<task>/resume/ {"decision": "approve"}  ->  wait for its
    `contract.completed` event, status "approved"

    A lost event (a `seq` still missing a few seconds after a later one arrived, or a
    heartbeat ahead of what arrived), a `resync` frame or a closed socket stop the phase
    with an error: the figures would otherwise be of stage timeouts.

  poll: each thread polls, sleeping --poll-ms between requests:

    POST contracts/ (high risk)  ->  poll GET reviews/?contract=<id>&status=pending
    ->  POST reviews/<task>/resume/ {"decision": "approve"}  ->  poll GET contracts/<id>/
    until "approved"

Submit -> task visible runs from before the POST to the moment the client learns of the
task (the poll that found it, or the event's arrival at the subscriber, which can come
before the POST's response); resume -> completed likewise, from before the resume POST.

Bare floor: the same graph (contracts.graph.builder.contract_graph_build) driven
directly with LangGraph + PostgresSaver in this process, on a second database of the
same server; one saver and one psycopg connection per thread; invoke (interrupt), then
Command(resume={interrupt_id: {"decision": "approve"}}).

Peer: the same graph served by a stock LangGraph Server (`langgraph dev`, in-memory
runtime: no durability, no authorisation), from a virtual environment of its own, kept
off the network (bench/peer.py), driven by the LangGraph SDK as its users do:
threads.create, runs.wait with the input (to the interrupt), runs.wait with the resume.

Every wait has a timeout and every subprocess is stopped in a `finally`. With
--watch poll the client's polling load (most of its requests) is part of what the server
sees, so the figures are of the product *under that client*.

    .venv/bin/python bench/e2e.py --n 300            # defaults: concurrency 1 and 8, --watch ws
    .venv/bin/python bench/e2e.py --n 30 --concurrency 1,8 --watch poll
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(_HERE)
# `python bench/e2e.py` puts bench/ first on sys.path, where bench/queue.py would shadow
# the standard library's `queue` (which threading pools and httpx import).
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, REPO_DIR)

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402
from websockets.exceptions import ConnectionClosed, WebSocketException  # noqa: E402
from websockets.sync.client import connect as websocket_connect  # noqa: E402

from bench.peer import peer_load, peer_start, peer_stop  # noqa: E402
from bench._common import (  # noqa: E402
    HIGH_RISK_TEXT,
    PYTHON,
    REPO,
    database_drop,
    database_recreate,
    free_port,
    git_commit,
    http_wait_ready,
    interrupt_on_sigterm,
    machine,
    manage,
    percentile,
    pg_url,
    product_env,
    rss_mib,
)

SLUG = "bench"

# Tenant defaults (tenants.models.Tenant), as contracts.services._initial_state reads them.
RISK_THRESHOLD, FINANCE_LIMIT, CRITICAL_RISK = 0.7, 100000.0, 0.9

SEED_SCRIPT = """
import json
from django.contrib.auth import get_user_model
from tenants.models import Role, Tenant
from tenants.services import api_token_create, membership_set
User = get_user_model()
tenant = Tenant.objects.create(slug=%(slug)r, name="Bench")
agent = User.objects.create_user("bench-agent")
reviewer = User.objects.create_user("bench-reviewer")
membership_set(tenant=tenant, user=agent, role=Role.AGENT)
membership_set(tenant=tenant, user=reviewer, role=Role.REVIEWER)
_, agent_key = api_token_create(user=agent, name="bench")
_, reviewer_key = api_token_create(user=reviewer, name="bench")
print("BENCH_SEED " + json.dumps({"agent": agent_key, "reviewer": reviewer_key}))
"""


# --- Small helpers (stdlib and psycopg only; Django never runs in this process) -------
# Those the bench scripts share are in bench/_common.py.


class Processes:
    """Subprocesses of this run, each in its own process group (stopping one stops
    whatever it spawned). `stop_all()` is called from a finally."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], *, env: dict[str, str]) -> subprocess.Popen:
        # Its connections carry the role as application_name: pg_stat_activity (and a
        # statement log) tell the server's from the workers'.
        env = {**env, "PGAPPNAME": f"bench-{name.split('-')[0]}"}
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
        # TERM all first so they shut down in parallel; KILL whatever is left.
        for proc in procs:
            self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs = [(n, p) for n, p in self.procs if p not in procs]

    def stop_all(self) -> None:
        self.stop([p for _, p in self.procs])

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir / (name + '.log')}")


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_by_role(server_pid: int, worker_pids: list[int]) -> dict[str, float]:
    """Where the machine's CPU goes, so a per-contract cost can be split by process."""
    return {
        "server": cpu_seconds(server_pid),
        "workers": sum(cpu_seconds(pid) for pid in worker_pids),
        "postgres": sum(cpu_seconds(pid) for pid in postgres_pids()),
        "client": sum(os.times()[:2]),
    }


class Counter:
    """Hands out contract numbers 0..n-1 to client threads."""

    def __init__(self, n: int) -> None:
        self.n, self.next, self.lock = n, 0, threading.Lock()

    def take(self) -> int | None:
        with self.lock:
            if self.next >= self.n:
                return None
            self.next += 1
            return self.next - 1


# --- PostgreSQL activity sampler ----------------------------------------------------


class PgSampler(threading.Thread):
    """Samples pg_stat_activity every `interval` seconds: how many connections the
    product's database has open, and what its active backends wait on (CPU, a lock,
    I/O, the client). Shows row-lock contention and connection churn without touching
    the product. Connects to the `postgres` database, so it never counts itself.

    It is also the guard of a shared server: when all databases together come near
    max_connections it sets `abort`, and the load stops before other users of the
    server get "too many clients"."""

    def __init__(self, base: str, dbname: str, interval: float = 0.1, guard_share: float = 0.8) -> None:
        super().__init__(daemon=True)
        self.base, self.dbname, self.interval, self.guard_share = base, dbname, interval, guard_share
        self.stop_event = threading.Event()
        self.abort = threading.Event()
        self.abort_reason = ""
        self.reset()

    def reset(self) -> None:
        self.samples = 0
        self.max_connections = 0
        self.waits: collections.Counter[str] = collections.Counter()
        self.lock_waiters: collections.Counter[str] = collections.Counter()
        self.idle_in_transaction: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        with psycopg.connect(pg_url(self.base, "postgres"), autocommit=True) as conn:
            limit = int(conn.execute("SHOW max_connections").fetchone()[0])
            while not self.stop_event.wait(self.interval):
                rows = conn.execute(
                    "SELECT datname, state, wait_event_type, wait_event,"
                    " left(regexp_replace(query, '\\s+', ' ', 'g'), 70) FROM pg_stat_activity"
                    " WHERE backend_type = 'client backend'"
                ).fetchall()
                if len(rows) >= self.guard_share * limit and not self.abort.is_set():
                    mine = sum(1 for r in rows if r[0] == self.dbname)
                    self.abort_reason = (f"PostgreSQL has {len(rows)} of max_connections={limit} connections open"
                                         f" ({mine} to {self.dbname}): load stopped to protect the shared server")
                    self.abort.set()
                rows = [r[1:] for r in rows if r[0] == self.dbname]
                self.samples += 1
                self.max_connections = max(self.max_connections, len(rows))
                for state, wait_type, wait_event, query in rows:
                    if state == "active":
                        self.waits[f"{wait_type}:{wait_event}" if wait_type else "on CPU"] += 1
                        if wait_type == "Lock":
                            self.lock_waiters[query] += 1
                    elif state == "idle in transaction":
                        # A transaction left open while its client works: any row lock
                        # it holds is held that long too. The query is its last one.
                        self.waits["idle in transaction"] += 1
                        self.idle_in_transaction[query] += 1

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)

    def report(self) -> list[str]:
        lines = [f"    pg_stat_activity: {self.samples} samples, at most {self.max_connections} connections open"
                 f" to {self.dbname}"]
        if self.samples:
            busy = ", ".join(f"{k} {v / self.samples:.2f}" for k, v in self.waits.most_common(6))
            lines.append(f"    mean busy backends by wait: {busy or 'none'}")
        for query, count in self.lock_waiters.most_common(3):
            lines.append(f"    waiting on a lock ({count} samples): {query}")
        for query, count in self.idle_in_transaction.most_common(3):
            lines.append(f"    idle in transaction after ({count} samples): {query}")
        return lines


def pg_database_stats(base: str, dbname: str) -> dict[str, int]:
    with psycopg.connect(pg_url(base, "postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT sessions, xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s", [dbname]
        ).fetchone()
    return {"sessions": row[0], "xact_commit": row[1], "xact_rollback": row[2]}


# --- Product phase ------------------------------------------------------------------


@dataclass
class ProductTiming:
    submit: float  # POST contracts/ round trip
    visible: float  # submit start -> the client learns of the task (poll answer or event arrival)
    resume: float  # POST resume round trip
    completed: float  # resume start -> the client learns it is approved (poll answer or event arrival)
    total: float  # submit start -> approved
    requests: int


@dataclass
class PhaseResult:
    name: str
    concurrency: int
    done: int
    wall: float
    errors: list[str] = field(default_factory=list)
    timings: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.done / self.wall if self.wall > 0 else 0.0


class StageTimeout(Exception):
    pass


class WatchLost(RuntimeError):
    """The live queue can no longer be trusted (socket closed, events lost): the phase stops."""


# A `seq` may arrive after a later one: events are broadcast after commit by different
# processes (the server, each worker), so two of them can reach the socket in either
# order. Only a number still missing this long after a later one arrived is a loss.
HOLE_GRACE = 5.0
REVIEW_CREATED, CONTRACT_COMPLETED = "review.created", "contract.completed"


class QueueWatcher:
    """The reviewer's live queue: one websocket for the whole bench process, read by a
    thread of its own (websockets' sync client). Per contract it records when its
    `review.created` arrived and the task id, and when its `contract.completed` arrived
    and the status, and wakes the client threads waiting. An event is recorded before
    anyone waits for it, and a wait looks at the record first, so an event that arrives
    before its client has read the POST response is not missed.

    Delivery is at-most-once and numbered (`seq`, consecutive per tenant; the warm-up's
    and other contracts' events count too). A hole older than HOLE_GRACE, a heartbeat or
    pong ahead of what arrived for as long, a `resync` frame or a closed socket set
    `error`, and every wait raises WatchLost instead of running into its timeout."""

    def __init__(self, *, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url, self.token, self.timeout = base_url, token, timeout
        self.cond = threading.Condition()
        self.records: dict[str, dict[str, tuple[str, float]]] = {REVIEW_CREATED: {}, CONTRACT_COMPLETED: {}}
        self.error = ""
        self.next_seq = 0  # every seq below has arrived
        self.early: dict[int, float] = {}  # seqs above next_seq that arrived, and when
        self.behind: tuple[int, float] | None = None  # a position the server reported, and when
        self.pongs, self.pong_seq = 0, 0  # pongs received, and the position the last one reported
        self.events = self.out_of_order = self.duplicates = 0
        self.closing = threading.Event()
        self.ws = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Connect and read the hello before returning: nothing is submitted before the
        subscriber is in the tenant's group."""
        try:
            r = httpx.post(f"{self.base_url}/api/v1/ws-ticket/", json={"tenant": SLUG},
                           headers={"Authorization": f"Token {self.token}"}, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise WatchLost(f"ws-ticket: {type(exc).__name__}: {exc}") from exc
        if r.status_code != 201:
            raise WatchLost(f"ws-ticket: HTTP {r.status_code} {r.text[:300]}")
        url = f"ws{self.base_url.removeprefix('http')}/ws/v1/tenants/{SLUG}/reviews/?ticket={r.json()['ticket']}"
        try:
            # No client pings: on a saturated machine a late pong would close a healthy
            # socket. The server's heartbeats (and a closed TCP connection) suffice.
            # legacy=True: a plain connection, closed by close() (the reader's finally).
            self.ws = websocket_connect(url, proxy=None, open_timeout=self.timeout, ping_interval=None,
                                        close_timeout=2, max_queue=None, legacy=True)
            hello = json.loads(self.ws.recv(timeout=self.timeout))
        except (OSError, TimeoutError, WebSocketException, ValueError) as exc:  # incl. a refused handshake
            self.close()
            raise WatchLost(f"could not subscribe to the live queue: {type(exc).__name__}: {exc}") from exc
        if hello.get("type") != "hello":
            self.close()
            raise WatchLost(f"expected a hello frame, got {hello!r}")
        self.next_seq = hello["latest_seq"] + 1
        self.thread = threading.Thread(target=self._read, name="queue-watcher", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while not self.closing.is_set():
                try:
                    raw = self.ws.recv(timeout=0.25)  # a short slice, to check holes and closing
                except TimeoutError:
                    raw = None
                now = time.perf_counter()
                with self.cond:
                    if raw is not None:
                        self._frame(json.loads(raw), now)
                    self._check(now)
        except ConnectionClosed as exc:
            if not self.closing.is_set():
                self._fail(f"the server closed the socket ({exc})")
        except Exception as exc:  # WatchLost from _frame/_check, or anything unexpected
            self._fail(str(exc) if isinstance(exc, WatchLost) else f"{type(exc).__name__}: {exc}")
        finally:
            self.ws.close()

    def _frame(self, message: dict, now: float) -> None:
        """Called with the condition held."""
        kind = message.get("type")
        if kind == "resync":
            raise WatchLost(f"resync frame (latest_seq {message.get('latest_seq')}): events were pruned")
        if kind in ("heartbeat", "pong"):
            if kind == "pong":
                self.pongs, self.pong_seq = self.pongs + 1, message["latest_seq"]
            if message["latest_seq"] >= self.next_seq and self.behind is None:
                self.behind = (message["latest_seq"], now)
            self.cond.notify_all()
            return
        seq = message.get("seq")
        if seq is None:
            return
        if seq < self.next_seq or seq in self.early:
            self.duplicates += 1
            return
        self.events += 1
        self.out_of_order += seq != self.next_seq
        self.early[seq] = now
        while self.next_seq in self.early:
            del self.early[self.next_seq]
            self.next_seq += 1
        if kind == REVIEW_CREATED:
            self.records[kind].setdefault(message["contract_id"], (message["task_id"], now))
        elif kind == CONTRACT_COMPLETED:
            self.records[kind].setdefault(message["contract_id"], (message["status"], now))
        self.cond.notify_all()

    def _check(self, now: float) -> None:
        """Called with the condition held: holes and reported positions past their grace."""
        if self.early and now - min(self.early.values()) > HOLE_GRACE:
            raise WatchLost(f"seq {self.next_seq} never arrived (seq {min(self.early)} did, over {HOLE_GRACE:.0f} s"
                            f" ago): an event was lost")
        if self.behind is not None:
            latest, since = self.behind
            if self.next_seq > latest:
                self.behind = None
            elif now - since > HOLE_GRACE:
                raise WatchLost(f"the server reported seq {latest}, but only up to {self.next_seq - 1} arrived in"
                                f" {HOLE_GRACE:.0f} s: events were lost")

    def _fail(self, message: str) -> None:
        with self.cond:
            self.error = self.error or message
            self.cond.notify_all()

    def wait(self, kind: str, contract_id: str, *, deadline: float, stop: threading.Event) -> tuple[str, float] | None:
        """(task id or status, arrival time) of the contract's event of this kind; None
        when the deadline passes or the phase stops first."""
        with self.cond:
            while True:
                record = self.records[kind].pop(contract_id, None)
                if record is not None:
                    return record
                if self.error:
                    raise WatchLost(self.error)
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or stop.is_set():
                    return None
                self.cond.wait(timeout=min(remaining, 0.25))  # slices: `stop` is not notified

    def verify(self) -> None:
        """At the end of a phase: ask the server where the stream is (ping) and wait for
        every event up to there, so a lost last event is noticed too."""
        with self.cond:
            pongs = self.pongs
        try:
            self.ws.send(json.dumps({"type": "ping"}))
        except ConnectionClosed as exc:
            self._fail(f"the server closed the socket ({exc})")
        deadline = time.perf_counter() + HOLE_GRACE + 5
        with self.cond:
            while not self.error and (self.pongs == pongs or self.next_seq <= self.pong_seq or self.early):
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise WatchLost(f"no pong, or events still missing, {HOLE_GRACE + 5:.0f} s after a ping")
                self.cond.wait(timeout=min(remaining, 0.25))
            if self.error:
                raise WatchLost(self.error)

    def summary(self) -> str:
        return (f"    live queue: {self.events} events received, {self.out_of_order} ahead of a missing seq,"
                f" {self.duplicates} duplicates")

    def close(self) -> None:
        self.closing.set()
        if self.thread is not None:
            self.thread.join(timeout=5)  # the reader closes the socket within a recv slice
        elif self.ws is not None:
            self.ws.close()


def _event_wait(watcher: QueueWatcher, kind: str, contract_id: str, *, since: float, stage_timeout: float,
                stop: threading.Event) -> tuple[str, float]:
    record = watcher.wait(kind, contract_id, deadline=since + stage_timeout, stop=stop)
    if record is None:
        if stop.is_set():
            raise StageTimeout(f"contract {contract_id}: stopped while waiting for its {kind}")
        raise StageTimeout(f"contract {contract_id}: no {kind} within {stage_timeout:.0f}s")
    return record


def product_one_contract_ws(http: httpx.Client, *, index: int, agent: dict, reviewer: dict, watcher: QueueWatcher,
                            stage_timeout: float, stop: threading.Event) -> ProductTiming:
    base = f"/api/v1/tenants/{SLUG}"
    t0 = time.perf_counter()
    r = http.post(f"{base}/contracts/", json={"title": f"Bench MSA {index}", "text": HIGH_RISK_TEXT}, headers=agent)
    if r.status_code != 202:
        raise RuntimeError(f"submit: HTTP {r.status_code} {r.text[:300]}")
    contract_id = r.json()["id"]
    t_submitted = time.perf_counter()

    task_id, t_visible = _event_wait(watcher, REVIEW_CREATED, contract_id, since=t0, stage_timeout=stage_timeout,
                                     stop=stop)

    t_resume = time.perf_counter()
    r = http.post(f"{base}/reviews/{task_id}/resume/", json={"decision": "approve"}, headers=reviewer)
    if r.status_code != 202:
        raise RuntimeError(f"resume: HTTP {r.status_code} {r.text[:300]}")
    t_resumed = time.perf_counter()

    status, t_done = _event_wait(watcher, CONTRACT_COMPLETED, contract_id, since=t_resume,
                                 stage_timeout=stage_timeout, stop=stop)
    if status != "approved":
        # The error path only: the event has no last_error, the contract does.
        detail = http.get(f"{base}/contracts/{contract_id}/", headers=reviewer).json().get("last_error") or ""
        raise RuntimeError(f"contract {contract_id} ended {status}: {detail[:300]}")
    return ProductTiming(
        submit=t_submitted - t0, visible=t_visible - t0, resume=t_resumed - t_resume,
        completed=t_done - t_resume, total=t_done - t0, requests=2,
    )


def product_one_contract(http: httpx.Client, *, index: int, agent: dict, reviewer: dict, poll: float,
                         stage_timeout: float, stop: threading.Event) -> ProductTiming:
    base = f"/api/v1/tenants/{SLUG}"
    requests = 0
    t0 = time.perf_counter()
    r = http.post(f"{base}/contracts/", json={"title": f"Bench MSA {index}", "text": HIGH_RISK_TEXT}, headers=agent)
    requests += 1
    if r.status_code != 202:
        raise RuntimeError(f"submit: HTTP {r.status_code} {r.text[:300]}")
    contract_id = r.json()["id"]
    t_submitted = time.perf_counter()

    deadline = t0 + stage_timeout
    while True:
        r = http.get(f"{base}/reviews/", params={"contract": contract_id, "status": "pending"}, headers=reviewer)
        requests += 1
        if r.status_code != 200:
            raise RuntimeError(f"queue poll: HTTP {r.status_code} {r.text[:300]}")
        results = r.json()["results"]
        if results:
            task_id = results[0]["id"]
            break
        if stop.is_set():
            raise StageTimeout(f"contract {contract_id}: stopped while waiting for its review task")
        if time.perf_counter() > deadline:
            raise StageTimeout(f"contract {contract_id}: no review task after {stage_timeout:.0f}s")
        time.sleep(poll)
    t_visible = time.perf_counter()

    r = http.post(f"{base}/reviews/{task_id}/resume/", json={"decision": "approve"}, headers=reviewer)
    requests += 1
    if r.status_code != 202:
        raise RuntimeError(f"resume: HTTP {r.status_code} {r.text[:300]}")
    t_resumed = time.perf_counter()

    deadline = t_visible + stage_timeout
    while True:
        r = http.get(f"{base}/contracts/{contract_id}/", headers=reviewer)
        requests += 1
        if r.status_code != 200:
            raise RuntimeError(f"contract poll: HTTP {r.status_code} {r.text[:300]}")
        status = r.json()["status"]
        if status == "approved":
            break
        if status in ("rejected", "amended", "auto_approved", "cancelled", "failed"):
            raise RuntimeError(f"contract {contract_id} ended {status}: {r.json().get('last_error', '')[:300]}")
        if stop.is_set():
            raise StageTimeout(f"contract {contract_id}: stopped while {status} after resume")
        if time.perf_counter() > deadline:
            raise StageTimeout(f"contract {contract_id}: still {status} {stage_timeout:.0f}s after resume")
        time.sleep(poll)
    t_done = time.perf_counter()
    return ProductTiming(
        submit=t_submitted - t0, visible=t_visible - t0, resume=t_resumed - t_visible,
        completed=t_done - t_visible, total=t_done - t0, requests=requests,
    )


def product_load(*, base_url: str, keys: dict, n: int, concurrency: int, poll: float, stage_timeout: float,
                 phase_timeout: float, name: str, max_errors: int, abort: threading.Event,
                 watcher: QueueWatcher | None) -> PhaseResult:
    """watcher: the live queue subscriber (--watch ws), or None to poll."""
    counter = Counter(n)
    stop = threading.Event()
    timings: list[ProductTiming] = []
    errors: list[str] = []
    lock = threading.Lock()
    agent = {"Authorization": f"Token {keys['agent']}"}
    reviewer = {"Authorization": f"Token {keys['reviewer']}"}

    def client() -> None:
        # Each thread its own HTTP session (its own keep-alive connection).
        with httpx.Client(base_url=base_url, timeout=30.0) as http:
            while not stop.is_set() and (index := counter.take()) is not None:
                try:
                    if watcher is not None:
                        timing = product_one_contract_ws(http, index=index, agent=agent, reviewer=reviewer,
                                                         watcher=watcher, stage_timeout=stage_timeout, stop=stop)
                    else:
                        timing = product_one_contract(http, index=index, agent=agent, reviewer=reviewer, poll=poll,
                                                      stage_timeout=stage_timeout, stop=stop)
                except WatchLost as exc:  # every later contract would fail the same way
                    with lock:
                        errors.append(f"live queue lost: {exc}")
                        stop.set()
                    return
                except Exception as exc:  # recorded and counted; too many stop the phase
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                        if len(errors) >= max_errors:
                            stop.set()
                    continue
                with lock:
                    timings.append(timing)

    threads = [threading.Thread(target=client, name=f"client-{i}", daemon=True) for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    deadline = start + phase_timeout
    while (any(t.is_alive() for t in threads) and time.perf_counter() < deadline and not abort.is_set()
           and not (watcher is not None and watcher.error)):
        time.sleep(0.05)
    if any(t.is_alive() for t in threads):
        stop.set()
        if abort.is_set():
            errors.append("aborted by the connection guard")
        elif watcher is not None and watcher.error:
            errors.append(f"live queue lost: {watcher.error}")
        else:
            errors.append(f"phase timeout after {phase_timeout:.0f}s")
        for t in threads:
            t.join(timeout=stage_timeout + 35)
    wall = time.perf_counter() - start
    if watcher is not None and not stop.is_set():
        try:
            watcher.verify()  # after the wall time: a lost last event must not pass unnoticed
        except WatchLost as exc:
            errors.append(f"live queue lost: {exc}")
    return PhaseResult(name=name, concurrency=concurrency, done=len(timings), wall=wall, errors=errors, timings=timings)


# --- Bare floor ---------------------------------------------------------------------


@dataclass
class BareTiming:
    invoke: float  # first invoke, up to the interrupt
    resume: float  # Command(resume=...) to the end
    total: float


def bare_load(*, dsn: str, n: int, concurrency: int, phase_timeout: float, warmup: int, name: str) -> PhaseResult:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.types import Command

    from contracts.graph.builder import contract_graph_build

    counter = Counter(n)
    stop = threading.Event()
    timings: list[BareTiming] = []
    errors: list[str] = []
    lock = threading.Lock()
    tenant_id = str(uuid.uuid4())
    ready = threading.Barrier(concurrency + 1)

    def one(graph) -> BareTiming:
        contract_id = str(uuid.uuid4())
        config = {"configurable": {"thread_id": f"{tenant_id}:contract:{contract_id}"}}
        state = {
            "tenant_id": tenant_id, "contract_id": contract_id, "title": "Bench MSA", "contract_text": HIGH_RISK_TEXT,
            "risk_threshold": RISK_THRESHOLD, "finance_limit": FINANCE_LIMIT, "critical_risk": CRITICAL_RISK,
            "history": [],
        }
        t0 = time.perf_counter()
        out = graph.invoke(state, config)
        t1 = time.perf_counter()
        interrupts = out.get("__interrupt__") or []
        if len(interrupts) != 1:
            raise RuntimeError(f"expected one interrupt, got {interrupts!r}")
        out = graph.invoke(Command(resume={interrupts[0].id: {"decision": "approve"}}), config)
        t2 = time.perf_counter()
        if out.get("human_decision") != "approved":
            raise RuntimeError(f"expected approved, got {out.get('human_decision')!r}")
        return BareTiming(invoke=t1 - t0, resume=t2 - t1, total=t2 - t0)

    def worker() -> None:
        # As contracts.graph.runner does: one saver and one connection per thread
        # (PostgresSaver locks around every call, so a shared one would serialise).
        try:
            conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        except Exception as exc:
            with lock:
                errors.append(f"connect: {exc}")
            ready.abort()
            return
        with conn:
            graph = contract_graph_build(PostgresSaver(conn))
            try:
                for _ in range(warmup):
                    one(graph)
            except Exception as exc:
                with lock:
                    errors.append(f"warm-up: {type(exc).__name__}: {exc}")
                ready.abort()
                return
            try:
                ready.wait(timeout=120)
            except threading.BrokenBarrierError:
                return
            while not stop.is_set() and counter.take() is not None:
                try:
                    timing = one(graph)
                except Exception as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                        stop.set()
                    return
                with lock:
                    timings.append(timing)

    threads = [threading.Thread(target=worker, name=f"bare-{i}", daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    try:
        ready.wait(timeout=120)
    except threading.BrokenBarrierError:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        return PhaseResult(name=name, concurrency=concurrency, done=0, wall=0.0, errors=errors or ["warm-up failed"])
    start = time.perf_counter()
    deadline = start + phase_timeout
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.perf_counter()))
    if any(t.is_alive() for t in threads):
        stop.set()
        errors.append(f"phase timeout after {phase_timeout:.0f}s")
        for t in threads:
            t.join(timeout=60)
    wall = time.perf_counter() - start
    return PhaseResult(name=name, concurrency=concurrency, done=len(timings), wall=wall, errors=errors, timings=timings)


# --- Reporting ----------------------------------------------------------------------


def _dist(values: list[float]) -> str:
    return f"p50 {percentile(values, 50) * 1000:7.1f} ms  p99 {percentile(values, 99) * 1000:7.1f} ms"


def report(result: PhaseResult, n: int) -> None:
    print(f"  {result.name} c={result.concurrency}: {result.done}/{n} contracts in {result.wall:.2f} s"
          f" = {result.throughput:.1f} contracts/s")
    t = result.timings
    if t and isinstance(t[0], ProductTiming):
        print(f"    submit -> task visible : {_dist([x.visible for x in t])}")
        print(f"    resume -> completed    : {_dist([x.completed for x in t])}")
        print(f"    POST contracts/        : {_dist([x.submit for x in t])}")
        print(f"    POST resume/           : {_dist([x.resume for x in t])}")
        print(f"    submit -> completed    : {_dist([x.total for x in t])}")
        print(f"    HTTP requests/contract : {sum(x.requests for x in t) / len(t):.1f} (incl. polls)")
    elif t and hasattr(t[0], "create"):
        print(f"    threads.create         : {_dist([x.create for x in t])}")
        print(f"    runs.wait (interrupt)  : {_dist([x.interrupt for x in t])}")
        print(f"    runs.wait (resume)     : {_dist([x.resume for x in t])}")
        print(f"    contract total         : {_dist([x.total for x in t])}")
    elif t:
        print(f"    invoke (to interrupt)  : {_dist([x.invoke for x in t])}")
        print(f"    resume (to end)        : {_dist([x.resume for x in t])}")
        print(f"    contract total         : {_dist([x.total for x in t])}")
    for line in result.notes:
        print(line)
    if result.errors:
        print(f"    ERRORS ({len(result.errors)}): " + "; ".join(result.errors[:3]))
    sys.stdout.flush()


# --- Main ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="contracts per phase (default 300)")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated client concurrencies (default 1,8)")
    parser.add_argument("--workers", type=int, default=0,
                        help="task worker processes per phase; 0 (default) = the phase's concurrency, at most one"
                             " per core (more only add contention on this machine)")
    parser.add_argument("--worker-command", default="run_worker", choices=["db_worker", "run_worker"],
                        help="the worker's manage.py command: run_worker (default, the product's, woken by NOTIFY) or"
                             " db_worker (django-tasks-db's polling worker)")
    parser.add_argument("--interval", type=float, default=None,
                        help="worker --interval: seconds an idle worker waits before polling again (default 1 for"
                             " run_worker, only a safety net behind NOTIFY; 0.05 for db_worker)")
    parser.add_argument("--watch", default="ws", choices=["ws", "poll"],
                        help="how a client learns of its task and its completed contract: ws (default) waits on one"
                             " websocket subscriber to the live queue; poll polls GET reviews/ and GET contracts/<id>/")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="client poll sleep in ms, --watch poll (default 2)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="unmeasured contracts per client thread before each phase (default 2)")
    parser.add_argument("--stage-timeout", type=float, default=60.0,
                        help="max seconds for a task to appear, or a contract to complete (default 60)")
    parser.add_argument("--phase-timeout", type=float, default=300.0, help="max seconds per phase (default 300)")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL, no database")
    parser.add_argument("--db", default="bench_e2e", help="product database, dropped and recreated (default bench_e2e)")
    parser.add_argument("--bare-db", default="bench_e2e_bare", help="bare-floor database (default bench_e2e_bare)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15",
                        help="REDIS_URL for the product (default db 15, away from the test suites' db 0)")
    parser.add_argument("--max-connections-share", type=float, default=0.8,
                        help="stop the load when the PostgreSQL server (all databases) has this share of"
                             " max_connections open, so a shared server stays usable (default 0.8)")
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--skip-peer", action="store_true", help="no LangGraph Server phase")
    parser.add_argument("--peer-n-serial", type=int, default=30,
                        help="contracts for the peer at concurrency 1, where its run queue's 1 s poll makes each"
                             " take ~2 s (default 30)")
    parser.add_argument("--peer-venv", default=str(REPO / "var" / "peer-venv"),
                        help="the peer's virtual environment, created on first use (default var/peer-venv)")
    parser.add_argument("--skip-product", action="store_true")
    parser.add_argument("--keep-db", action="store_true", help="keep both databases after the run")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if args.n < 1 or not concurrencies or min(concurrencies) < 1:
        parser.error("--n and every --concurrency must be at least 1")

    from contracts.graph.analyzer import analyze_text  # pure Python, no Django

    score = analyze_text(HIGH_RISK_TEXT).risk_score
    assert RISK_THRESHOLD < score < CRITICAL_RISK, score

    if args.interval is None:
        args.interval = 1.0 if args.worker_command == "run_worker" else 0.05
    interrupt_on_sigterm()
    log_dir = Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    print(f"bench/e2e.py  commit {git_commit()}  {machine()}  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"  n={args.n} concurrency={concurrencies} workers={args.workers or 'min(concurrency, cores)'}"
          f" worker={args.worker_command} --interval {args.interval} watch={args.watch}"
          f"{f' poll={args.poll_ms} ms' if args.watch == 'poll' else ''}"
          f"; logs in {log_dir}")
    sys.stdout.flush()

    procs = Processes(log_dir)
    results: dict[tuple[str, int], PhaseResult] = {}
    ok = False
    peer = None
    try:
        if not args.skip_peer:
            t = time.perf_counter()
            peer = peer_start(venv=Path(args.peer_venv), log=log_dir / "peer.log")
            print(f"  langgraph dev pid {peer.process.pid} on {peer.url} ready in {time.perf_counter() - t:.1f} s")
        if not args.skip_bare:
            database_recreate(args.pg, args.bare_db)
            from langgraph.checkpoint.postgres import PostgresSaver

            with psycopg.connect(pg_url(args.pg, args.bare_db), autocommit=True, prepare_threshold=0,
                                 row_factory=dict_row) as conn:
                PostgresSaver(conn).setup()

        if not args.skip_product:
            database_recreate(args.pg, args.db)
            env = product_env(database_url=pg_url(args.pg, args.db), redis_url=args.redis)
            t = time.perf_counter()
            manage(["migrate", "--noinput", "-v0"], env=env, timeout=300)
            seed_out = manage(["shell", "-c", SEED_SCRIPT % {"slug": SLUG}], env=env, timeout=120)
            keys = json.loads(next(l for l in seed_out.splitlines() if l.startswith("BENCH_SEED "))[len("BENCH_SEED "):])
            print(f"  migrated and seeded {args.db} in {time.perf_counter() - t:.1f} s")
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            server = procs.start(
                "uvicorn",
                [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "1", "--no-access-log", "--log-level", "warning", "--ws-per-message-deflate", "false"],
                env=env,
            )
            http_wait_ready(f"{base_url}/healthz", timeout=60, check_alive=procs.check_alive)
            print(f"  uvicorn pid {server.pid} on {base_url}, RSS {rss_mib(server.pid):.0f} MiB after start")

        for c in concurrencies:
            if not args.skip_bare:
                cpu_before = (sum(os.times()[:2]), sum(cpu_seconds(pid) for pid in postgres_pids()))
                result = bare_load(dsn=pg_url(args.pg, args.bare_db), n=args.n, concurrency=c,
                                   phase_timeout=args.phase_timeout, warmup=args.warmup, name="bare")
                ran = max(1, result.done + args.warmup * c)  # the warm-up contracts used CPU too
                own = 1000 * (sum(os.times()[:2]) - cpu_before[0]) / ran
                pg = 1000 * (sum(cpu_seconds(pid) for pid in postgres_pids()) - cpu_before[1]) / ran
                result.notes.append(f"    CPU ms/contract: bench process {own:.1f}, postgres {pg:.1f}")
                results[("bare", c)] = result
                report(result, args.n)
            if peer is not None:
                cpu_before = (sum(os.times()[:2]), cpu_seconds(peer.process.pid))
                peer_n = min(args.n, args.peer_n_serial) if c == 1 else args.n
                timings, errors, wall = peer_load(url=peer.url, text=HIGH_RISK_TEXT, n=peer_n, concurrency=c,
                                                  warmup=args.warmup, phase_timeout=args.phase_timeout)
                result = PhaseResult(name="peer (langgraph dev)", concurrency=c, done=len(timings), wall=wall,
                                     errors=errors, timings=timings)
                ran = max(1, result.done + args.warmup * c)
                client = 1000 * (sum(os.times()[:2]) - cpu_before[0]) / ran
                server_ms = 1000 * (cpu_seconds(peer.process.pid) - cpu_before[1]) / ran
                result.notes.append(f"    CPU ms/contract: server {server_ms:.1f}, client {client:.1f};"
                                    f" RSS {rss_mib(peer.process.pid):.0f} MiB")
                results[("peer", c)] = result
                report(result, peer_n)
            if args.skip_product:
                continue
            k = args.workers or min(c, os.cpu_count() or 1)
            workers = [
                procs.start(f"worker-c{c}-{i}",
                            [PYTHON, "manage.py", args.worker_command, "--queue-name", "*", "--interval",
                             str(args.interval), "--no-startup-delay", "--no-reload"],
                            env=env)
                for i in range(k)
            ]
            print(f"  {k} x {args.worker_command} pids {' '.join(str(w.pid) for w in workers)}")
            sampler = PgSampler(args.pg, args.db, guard_share=args.max_connections_share)
            sampler.start()
            watcher = None
            try:
                if args.watch == "ws":
                    # Once per phase, before the warm-up: subscribed before the first submit.
                    watcher = QueueWatcher(base_url=base_url, token=keys["reviewer"])
                    watcher.start()
                # Warm-up: worker imports, graph compilation, connections; not measured.
                warm = product_load(base_url=base_url, keys=keys, n=args.warmup * c, concurrency=c,
                                    poll=args.poll_ms / 1000, stage_timeout=args.stage_timeout, phase_timeout=120,
                                    name="warm-up", max_errors=1, abort=sampler.abort, watcher=watcher)
                procs.check_alive()
                if warm.errors:
                    raise RuntimeError(f"warm-up failed: {warm.errors[:3]} {sampler.abort_reason}")
                before = pg_database_stats(args.pg, args.db)
                cpu_before = cpu_by_role(server.pid, [w.pid for w in workers])
                sampler.reset()
                result = product_load(base_url=base_url, keys=keys, n=args.n, concurrency=c,
                                      poll=args.poll_ms / 1000, stage_timeout=args.stage_timeout,
                                      phase_timeout=args.phase_timeout, name=f"product ({k} workers)",
                                      max_errors=max(5, args.n // 20), abort=sampler.abort, watcher=watcher)
                cpu_after = cpu_by_role(server.pid, [w.pid for w in workers])
                server_rss = rss_mib(server.pid)
                worker_rss = [r for r in (rss_mib(w.pid) for w in workers) if r is not None]
            finally:
                if watcher is not None:
                    watcher.close()
                sampler.stop()
            if watcher is not None:
                result.notes.append(watcher.summary())
            if sampler.abort_reason:
                result.errors.insert(0, sampler.abort_reason)
            procs.check_alive()
            time.sleep(1.5)  # let backends flush their statistics
            after = pg_database_stats(args.pg, args.db)
            requests = sum(x.requests for x in result.timings)
            result.notes.append(
                f"    server RSS at end of load: {server_rss:.0f} MiB; workers {min(worker_rss):.0f}-"
                f"{max(worker_rss):.0f} MiB each" if worker_rss else f"    server RSS at end of load: {server_rss:.0f} MiB")
            result.notes.append(
                f"    PostgreSQL: {after['sessions'] - before['sessions']} new sessions for {requests} HTTP requests,"
                f" {(after['xact_commit'] - before['xact_commit']) / max(1, result.done):.0f} commits/contract"
                f" (incl. worker polling)")
            # PostgreSQL backends that exit during the load take their CPU with them, so
            # that figure is a lower bound; the pool keeps them alive here.
            cpu_ms = {role: 1000 * (cpu_after[role] - cpu_before[role]) / max(1, result.done) for role in cpu_after}
            result.notes.append(
                "    CPU ms/contract: " + ", ".join(f"{role} {ms:.1f}" for role, ms in cpu_ms.items())
                + f"; total {sum(cpu_ms.values()):.1f} ({sum(cpu_ms.values()) * result.throughput / 10:.0f}%"
                f" of one core)")
            result.notes.extend(sampler.report())
            results[("product", c)] = result
            report(result, args.n)
            procs.stop(workers)

        print("  summary (contracts/s):")
        for c in concurrencies:
            product, bare, peer_result = (results.get((kind, c)) for kind in ("product", "bare", "peer"))
            parts = [f"c={c}:"]
            for label, result in (("product", product), ("peer", peer_result), ("bare", bare)):
                if result:
                    parts.append(f"{label} {result.throughput:6.1f}")
            for label, result in (("peer", peer_result), ("bare", bare)):
                if product and result and result.throughput:
                    parts.append(f"product/{label} {product.throughput / result.throughput:.2f}")
            print("    " + "  ".join(parts))
        ok = all(not r.errors and (r.done == args.n or (kind == "peer" and r.done)) for (kind, _), r in results.items())
        if not args.skip_product:
            rss = rss_mib(server.pid)  # None once the server has died
            print(f"  uvicorn RSS at the end: {rss:.0f} MiB" if rss is not None else "  uvicorn: not running at the end")
    except (RuntimeError, TimeoutError, subprocess.SubprocessError, psycopg.Error) as exc:
        print(f"  FAILED: {type(exc).__name__}: {exc}")
    finally:
        if peer is not None:
            peer_stop(peer)
        procs.stop_all()
        databases = ([] if args.skip_product else [args.db]) + ([] if args.skip_bare else [args.bare_db])
        if ok and not args.keep_db:
            for db in databases:
                database_drop(args.pg, db)
        elif not ok:
            print(f"  kept for inspection: databases {', '.join(databases)}; logs in {log_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
