"""The peer: LangGraph Server (`langgraph dev`, in-memory runtime) serving the product's
own graph (bench/peer/graph.py), driven by the LangGraph SDK as its users drive it.

It runs from a virtual environment of its own (var/peer-venv, created on first use from
PyPI with the pinned `langgraph-cli[inmem]`), on 127.0.0.1 and a free port, with
everything that could reach the network turned off: no LangSmith key or licence key in
its environment, tracing off, no analytics, no version check, no browser, no reload.

Each start gets a fresh working directory: the in-memory runtime pickles all its
threads and runs into `.langgraph_api/` there, reloads them at the next start and
pickles them again as it goes, so a directory kept between runs made every run slower
than the one before (42 MB after six runs; 38 -> 98 ms of server CPU per contract at C=1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench._common import REPO, free_port, http_wait_ready

PEER_DIR = REPO / "bench" / "peer"
PEER_PACKAGE = "langgraph-cli[inmem]==0.4.40"
# The settings of the graph's state that the product takes from the tenant.
RISK_THRESHOLD, FINANCE_LIMIT, CRITICAL_RISK = 0.7, 100000.0, 0.9
_OFFLINE_ENV = {
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
}
_SECRETS = ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "LANGGRAPH_CLOUD_LICENSE_KEY", "LANGGRAPH_API_KEY")


def peer_venv(path: Path) -> Path:
    """The peer's virtual environment, created once; returns its `langgraph` command."""
    command = path / "bin" / "langgraph"
    if not command.exists():
        subprocess.run(["python3.11", "-m", "venv", str(path)], check=True, timeout=300)
        subprocess.run([str(path / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", PEER_PACKAGE],
                       check=True, timeout=1800)
    return command


@dataclass
class Peer:
    process: subprocess.Popen
    url: str
    workdir: Path


def peer_start(*, venv: Path, log: Path) -> Peer:
    command = peer_venv(venv)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in _SECRETS and not k.startswith("LANGSMITH_")}
    env.update(_OFFLINE_ENV, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    out = log.open("wb")
    workdir = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    for name in ("langgraph.json", "graph.py"):
        shutil.copy(PEER_DIR / name, workdir / name)
    process = subprocess.Popen(
        [str(command), "dev", "--config", str(workdir / "langgraph.json"), "--host", "127.0.0.1", "--port", str(port),
         "--no-browser", "--no-reload"],
        cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
    )

    def alive() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"langgraph dev exited with {process.returncode}; see {log}")

    peer = Peer(process=process, url=f"http://127.0.0.1:{port}", workdir=workdir)
    try:
        http_wait_ready(f"http://127.0.0.1:{port}/ok", timeout=120, check_alive=alive, trust_env=False)
    except BaseException:
        peer_stop(peer)
        raise
    return peer


def peer_stop(peer: Peer) -> None:
    peer.process.terminate()
    try:
        peer.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        peer.process.kill()
        peer.process.wait()
    shutil.rmtree(peer.workdir, ignore_errors=True)


@dataclass
class PeerTiming:
    create: float  # threads.create
    interrupt: float  # runs.wait with the input, to the interrupt
    resume: float  # runs.wait with the resume, to the end
    total: float


def peer_one_contract(client, text: str, index: int) -> PeerTiming:
    t0 = time.perf_counter()
    thread = client.threads.create()
    t1 = time.perf_counter()
    state = {
        "tenant_id": "bench", "contract_id": f"peer-{index}", "title": "Bench MSA", "contract_text": text,
        "risk_threshold": RISK_THRESHOLD, "finance_limit": FINANCE_LIMIT, "critical_risk": CRITICAL_RISK,
        "history": [],
    }
    paused = client.runs.wait(thread["thread_id"], "contract_review", input=state)
    t2 = time.perf_counter()
    interrupts = paused.get("__interrupt__") or []
    if len(interrupts) != 1:
        raise RuntimeError(f"expected one interrupt, got {paused!r:.300}")
    done = client.runs.wait(thread["thread_id"], "contract_review",
                            command={"resume": {interrupts[0]["id"]: {"decision": "approve"}}})
    t3 = time.perf_counter()
    if done.get("human_decision") != "approved":
        raise RuntimeError(f"expected approved, got {done!r:.300}")
    return PeerTiming(create=t1 - t0, interrupt=t2 - t1, resume=t3 - t2, total=t3 - t0)


def peer_load(*, url: str, text: str, n: int, concurrency: int, warmup: int, phase_timeout: float):
    """C threads, each with its own SDK client, driving `n` contracts; returns
    (timings, errors, wall seconds). Warm-up contracts per thread first, unmeasured."""
    from langgraph_sdk import get_sync_client

    lock = threading.Lock()
    timings: list[PeerTiming] = []
    errors: list[str] = []
    remaining = [n]
    ready = threading.Barrier(concurrency + 1)
    stop = threading.Event()

    def take() -> int | None:
        with lock:
            if remaining[0] <= 0:
                return None
            remaining[0] -= 1
            return remaining[0]

    def client_thread(number: int) -> None:
        client = get_sync_client(url=url, api_key=None)
        try:
            for i in range(warmup):
                peer_one_contract(client, text, -1 - number * warmup - i)
            ready.wait(timeout=300)
        except Exception as exc:
            with lock:
                errors.append(f"warm-up: {type(exc).__name__}: {exc}")
            ready.abort()
            return
        while not stop.is_set() and (index := take()) is not None:
            try:
                timing = peer_one_contract(client, text, index)
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                stop.set()
                return
            with lock:
                timings.append(timing)

    threads = [threading.Thread(target=client_thread, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(timeout=300)
    except threading.BrokenBarrierError:
        stop.set()
        return [], errors or ["warm-up failed"], 0.0
    start = time.perf_counter()
    deadline = start + phase_timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.perf_counter()))
    if any(thread.is_alive() for thread in threads):
        stop.set()
        errors.append(f"phase timeout after {phase_timeout:.0f}s")
    return timings, errors, time.perf_counter() - start
