"""The LangGraph-compatible API through the real langgraph-sdk, against the REST API in
the same run.

Product: its own PostgreSQL database (dropped and recreated every run), one
`uvicorn config.asgi:application` process and K `manage.py run_worker` processes, one
tenant with an agent and a reviewer. C client threads drive contracts one after another:

  sdk:   threads.create  ->  runs.wait(input=high-risk contract)  [submit -> interrupt]
         ->  runs.wait(command={"resume": {id: {"decision": "approve"}}})  [resume -> done]
  rest:  POST contracts/  ->  poll GET reviews/?contract=<id>&status=pending every 10 ms
         [submit -> task visible]  ->  POST reviews/<task>/resume/  ->  poll GET
         contracts/<id>/ every 10 ms until approved  [resume -> completed]

runs.wait answers when the worker has recorded the outcome (the server polls its rows
at 50 ms growing to 500 ms); the REST client polls at 10 ms, so the REST figures are the
floor of what a client of that API can see. Then single requests of the SDK at C=1
(threads.search of 10 threads, threads.get, threads.get_state, runs.get), p50/p99 of the
client's wall clock, and PostgreSQL transactions per contract (pg_stat_database).

    .venv/bin/python bench/langgraph_api.py --n 100
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, REPO_DIR)

import argparse  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import psycopg  # noqa: E402
from langgraph_sdk import get_sync_client  # noqa: E402

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
)

SLUG = "bench"
GRAPH = "contract_review"
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


def xacts(dsn: str, dbname: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", [dbname]
        ).fetchone()[0]


def sdk_contract(base: str, keys: dict) -> tuple[float, float]:
    agent = get_sync_client(url=f"{base}/langgraph/{SLUG}", api_key=keys["agent"])
    reviewer = get_sync_client(url=f"{base}/langgraph/{SLUG}", api_key=keys["reviewer"])
    thread = agent.threads.create()
    t0 = time.perf_counter()
    paused = agent.runs.wait(thread["thread_id"], GRAPH, input={"contract_text": HIGH_RISK_TEXT, "title": "MSA"})
    t1 = time.perf_counter()
    [interrupt] = paused["__interrupt__"]
    done = reviewer.runs.wait(
        thread["thread_id"], GRAPH, command={"resume": {interrupt["id"]: {"decision": "approve"}}}
    )
    t2 = time.perf_counter()
    if done.get("human_decision") != "approved":
        raise AssertionError(f"resume ended without the decision applied: {json.dumps(done)[:600]}")
    return t1 - t0, t2 - t1


def _poll(check: Callable[[], object], bound: float = 60.0) -> object:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.01)
    raise TimeoutError("poll bound reached")


def rest_contract(base: str, keys: dict) -> tuple[float, float]:
    api = f"{base}/api/v1/tenants/{SLUG}/"
    with (
        httpx.Client(headers={"Authorization": f"Token {keys['agent']}"}, trust_env=False, timeout=30) as agent,
        httpx.Client(headers={"Authorization": f"Token {keys['reviewer']}"}, trust_env=False, timeout=30) as reviewer,
    ):
        t0 = time.perf_counter()
        contract = agent.post(api + "contracts/", json={"title": "MSA", "text": HIGH_RISK_TEXT}).json()["id"]
        task = _poll(
            lambda: reviewer.get(api + "reviews/", params={"contract": contract, "status": "pending"}).json()["results"]
        )[0]["id"]
        t1 = time.perf_counter()
        assert reviewer.post(api + f"reviews/{task}/resume/", json={"decision": "approve"}).status_code == 202
        _poll(lambda: agent.get(api + f"contracts/{contract}/").json()["status"] == "approved")
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def load(name: str, fn, *, base: str, keys: dict, n: int, concurrency: int) -> dict:
    results: list[tuple[float, float]] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_thread = max(1, n // concurrency)

    def run() -> None:
        for _ in range(per_thread):
            try:
                result = fn(base, keys)
            except Exception as exc:  # reported, never hidden
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                results.append(result)

    fn(base, keys)  # warm-up: first requests import and connect
    started = time.perf_counter()
    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    first, second = [r[0] * 1000 for r in results], [r[1] * 1000 for r in results]
    return {
        "name": name,
        "c": concurrency,
        "done": len(results),
        "errors": errors[:3],
        "rate": len(results) / elapsed,
        "first": (percentile(first, 50), percentile(first, 99)),
        "second": (percentile(second, 50), percentile(second, 99)),
    }


def requests_measure(base: str, keys: dict, samples: int) -> dict[str, tuple[float, float]]:
    agent = get_sync_client(url=f"{base}/langgraph/{SLUG}", api_key=keys["agent"])
    thread_id = agent.threads.create()["thread_id"]
    agent.runs.wait(thread_id, GRAPH, input={"contract_text": HIGH_RISK_TEXT, "title": "MSA"})
    run_id = agent.runs.list(thread_id, limit=1)[0]["run_id"]
    calls = {
        "threads.search(limit=10)": lambda: agent.threads.search(limit=10),
        "threads.search(status=interrupted)": lambda: agent.threads.search(status="interrupted", limit=10),
        "threads.get": lambda: agent.threads.get(thread_id),
        "threads.get_state (reads the checkpoint)": lambda: agent.threads.get_state(thread_id),
        "runs.get": lambda: agent.runs.get(thread_id, run_id),
        "assistants.search": lambda: agent.assistants.search(),
    }
    figures = {}
    for name, call in calls.items():
        call()
        times = []
        for _ in range(samples):
            t = time.perf_counter()
            call()
            times.append((time.perf_counter() - t) * 1000)
        figures[name] = (percentile(times, 50), percentile(times, 99))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="contracts per phase")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--clients", default="sdk,rest")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--db", default="hitl_bench_langgraph")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    interrupt_on_sigterm()
    print(f"bench/langgraph_api.py at {git_commit()}, {machine()}")
    procs: list[subprocess.Popen] = []
    logs = Path(tempfile.mkdtemp(prefix="bench-langgraph-"))
    dsn = pg_url(args.pg, "postgres")

    def start(name: str, argv: list[str], env: dict) -> subprocess.Popen:
        with open(logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        procs.append(proc)
        return proc

    def alive() -> None:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a process exited ({proc.returncode}); logs in {logs}")

    try:
        database_recreate(args.pg, args.db)
        env = product_env(database_url=pg_url(args.pg, args.db), redis_url=args.redis)
        manage(["migrate", "--noinput", "-v0"], env=env, timeout=300)
        out = manage(["shell", "-c", SEED_SCRIPT % {"slug": SLUG}], env=env, timeout=120)
        keys = json.loads(next(line for line in out.splitlines() if line.startswith("BENCH_SEED "))[11:])
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        start(
            "uvicorn",
            [
                PYTHON,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env,
        )
        for i in range(args.workers):
            start(
                f"worker-{i}",
                [PYTHON, "manage.py", "run_worker", "--queue-name", "*", "--no-startup-delay", "--no-reload"],
                env,
            )
        http_wait_ready(f"{base}/healthz", timeout=60, check_alive=alive, trust_env=False)
        print(f"  server on {base}, {args.workers} workers, logs in {logs}")
        print(
            "| client | C | contracts/s | submit -> interrupt/task p50/p99 ms | resume -> done p50/p99 ms |"
            " PostgreSQL transactions/contract |"
        )
        print("|---|---|---|---|---|---|")
        for c in [int(x) for x in args.concurrency.split(",")]:
            for name, fn in [(n, {"sdk": sdk_contract, "rest": rest_contract}[n]) for n in args.clients.split(",")]:
                before = xacts(dsn, args.db)
                result = load(name, fn, base=base, keys=keys, n=args.n, concurrency=c)
                per = (xacts(dsn, args.db) - before) / max(1, result["done"] + 1)
                print(
                    f"| {name} | {c} | {result['rate']:.1f} | {result['first'][0]:.0f} / {result['first'][1]:.0f} |"
                    f" {result['second'][0]:.0f} / {result['second'][1]:.0f} | {per:.0f} |"
                    + (f" errors: {result['errors']}" if result["errors"] else "")
                )
        print()
        print("| SDK request (C=1) | p50 ms | p99 ms |")
        print("|---|---|---|")
        for name, (p50, p99) in requests_measure(base, keys, args.samples).items():
            print(f"| {name} | {p50:.1f} | {p99:.1f} |")
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if not args.keep_db:
            database_drop(args.pg, args.db)


if __name__ == "__main__":
    sys.exit(main())
