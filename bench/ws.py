"""Live queue latency: commit -> websocket client, with many clients connected.

Seeds its own PostgreSQL database (`bench_ws`, dropped and recreated; migrated with
`manage.py migrate`): two tenants, an agent each, and one user with an API token per
client (reviewers and viewers, alternating between the tenants). Starts `--servers`
`uvicorn config.asgi:application` processes on it (HTTP and websockets in one process;
`--redis` for the throttle's cache) and, as in production, one `manage.py run_worker`
process (TASKS_BACKEND=database): the worker runs each submission's graph and commits its
review task with its event (and a NOTIFY); each server reads the event from the log and
fans it out. With
`--graph-in request` the server runs the graph inside the submitting request instead
(TASKS_BACKEND=immediate, no worker). Or, with `--target`, uses a server you started
(it must use `--database-url`, which is seeded in place, not recreated).

Client processes (`--client-procs`, separate from the server so that parsing 1,000
sockets' frames does not queue behind one event loop) each take a share of the clients:
every client gets a ticket (POST /api/v1/ws-ticket/ with its token) and opens
/ws/v1/tenants/<slug>/reviews/, round-robin over the servers. When all are connected,
the agents submit `--events` high-risk contracts, alternating tenants, one every
`--interval` seconds; each produces one `review.created` for every client of its tenant.

Latency is measured per delivery: the client's receive time minus the event's `at`,
the event row's timestamp, taken inside the committing transaction a moment before the
commit (so the figure slightly overstates commit -> client). Server and clients share
this machine's clock. Also reported: deliveries missing (by sequence number) and the
fan-out spread (first to last client of one event).

    .venv/bin/python bench/ws.py                        # 200 clients, one server
    .venv/bin/python bench/ws.py --clients 1000
    .venv/bin/python bench/ws.py --clients 400 --servers 2
    .venv/bin/python bench/ws.py --target http://127.0.0.1:8000 --database-url postgres://postgres@127.0.0.1:5432/hitl

Every wait is bounded and every subprocess is stopped in a `finally`.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(_HERE)
# `python bench/ws.py` puts bench/ first on sys.path, where bench/queue.py would shadow
# the standard library's `queue` (which multiprocessing, threading pools and httpx import).
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, REPO_DIR)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402

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
    rss_mib,
)
from bench._common import product_env as common_product_env  # noqa: E402

TENANTS = ("bench-ws-a", "bench-ws-b")

# Idempotent: a second run against the same database (--target) reuses what exists.
SEED_SCRIPT = """
import json
from django.contrib.auth import get_user_model
from tenants.models import ApiToken, Role, Tenant
from tenants.services import api_token_create, membership_set
User = get_user_model()
clients = %(clients)d
out = {"agents": {}, "clients": []}
for slug in %(tenants)r:
    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": slug})
    agent, _ = User.objects.get_or_create(username=f"{slug}-agent")
    membership_set(tenant=tenant, user=agent, role=Role.AGENT)
    ApiToken.objects.filter(user=agent, name="bench-ws").delete()
    out["agents"][slug] = api_token_create(user=agent, name="bench-ws")[1]
for i in range(clients):
    slug = %(tenants)r[i %% 2]
    tenant = Tenant.objects.get(slug=slug)
    user, created = User.objects.get_or_create(username=f"{slug}-watcher-{i}")
    if created:
        membership_set(tenant=tenant, user=user, role=Role.REVIEWER if i %% 4 < 2 else Role.VIEWER)
    ApiToken.objects.filter(user=user, name="bench-ws").delete()
    out["clients"].append([slug, api_token_create(user=user, name="bench-ws")[1]])
print("BENCH_SEED " + json.dumps(out))
"""


# --- Small helpers (stdlib and httpx; Django never runs in this process) ----------------
# Those the bench scripts share are in bench/_common.py.


def product_env(*, database_url: str, redis_url: str, tasks_backend: str) -> dict[str, str]:
    """The shared production-like environment, with the task backend asked for, and
    REDIS_URL always set: the servers' throttle counters live there, as in production."""
    env = common_product_env(database_url=database_url, redis_url=redis_url)
    env.update(REDIS_URL=redis_url, TASKS_BACKEND=tasks_backend, ALLOWED_HOSTS="127.0.0.1,localhost")
    return env


def start_server(port: int, *, env: dict[str, str], log_dir: Path, index: int) -> subprocess.Popen:
    with open(log_dir / f"uvicorn-{index}.log", "ab") as log:
        return subprocess.Popen(
            [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--no-access-log", "--log-level", "warning", "--ws-per-message-deflate", "false"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )


def start_worker(*, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    with open(log_dir / "worker.log", "ab") as log:
        return subprocess.Popen(
            [PYTHON, "manage.py", "run_worker", "--queue-name", "*", "--no-startup-delay", "--no-reload"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )


def stop_servers(servers: list[subprocess.Popen]) -> None:
    for proc in servers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in servers:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def servers_check_alive(servers: list[subprocess.Popen]) -> None:
    for proc in servers:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")


# --- Client processes -----------------------------------------------------------------


def client_process(conn, clients: list[dict[str, str]], connect_timeout: float, handshakes: int) -> None:
    """Runs in a child process: connect `clients`, report ready, collect events until
    told what to expect, report deliveries."""
    try:
        asyncio.run(_clients_run(conn, clients, connect_timeout, handshakes))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        conn.send(("error", repr(exc)))
        raise


async def _clients_run(conn, clients: list[dict[str, str]], connect_timeout: float, handshakes_at_once: int) -> None:
    from websockets.asyncio.client import connect

    handshakes = asyncio.Semaphore(handshakes_at_once)
    loop = asyncio.get_running_loop()

    async def open_one(http: httpx.AsyncClient, client: dict[str, str]):
        async with handshakes:
            response = await http.post(f"{client['http']}/api/v1/ws-ticket/", json={"tenant": client["slug"]},
                                       headers={"Authorization": f"Token {client['token']}"})
            response.raise_for_status()
            url = f"{client['ws']}/ws/v1/tenants/{client['slug']}/reviews/?ticket={response.json()['ticket']}"
            ws = await connect(url, proxy=None, open_timeout=connect_timeout, ping_interval=None, max_queue=None)
            hello = json.loads(await asyncio.wait_for(ws.recv(), connect_timeout))
            assert hello["type"] == "hello", hello
            return ws, hello["latest_seq"]

    async with httpx.AsyncClient(timeout=connect_timeout, trust_env=False,
                                 limits=httpx.Limits(max_connections=handshakes_at_once)) as http:
        opened = await asyncio.wait_for(asyncio.gather(*(open_one(http, c) for c in clients)), connect_timeout * 4)

    latencies: list[float] = []
    first_last: dict[str, list[float]] = {}  # "<slug>:<seq>" -> [first receipt, last receipt]
    first_ms: dict[str, float] = {}  # "<slug>:<seq>" -> commit -> its first client, ms
    received: list[list[int]] = [[] for _ in clients]
    done = [asyncio.Event() for _ in clients]
    expected: dict[str, int] = {}

    async def read(index: int, ws, start: int) -> None:
        slug = clients[index]["slug"]
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            if "seq" not in message:
                continue
            latency = (now - datetime.fromisoformat(message["at"]).timestamp()) * 1000
            latencies.append(latency)
            key = f"{slug}:{message['seq']}"
            first_ms[key] = min(first_ms.get(key, latency), latency)
            span = first_last.setdefault(key, [now, now])
            span[0], span[1] = min(span[0], now), max(span[1], now)
            received[index].append(message["seq"] - start)
            if expected and len(received[index]) >= expected.get(slug, 0):
                done[index].set()

    readers = [asyncio.create_task(read(i, ws, start)) for i, (ws, start) in enumerate(opened)]
    conn.send(("ready", len(opened)))

    # The parent sends what to expect after its last submission, with a deadline.
    message, expect, deadline = await loop.run_in_executor(None, conn.recv)
    assert message == "expect"
    expected.update(expect)
    for index, client in enumerate(clients):
        if len(received[index]) >= expected.get(client["slug"], 0):
            done[index].set()
    try:
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in done)), deadline)
    except TimeoutError:
        pass
    missing = sum(max(0, expected.get(c["slug"], 0) - len(received[i])) for i, c in enumerate(clients))
    out_of_order = sum(1 for seqs in received if seqs != sorted(seqs))
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*(ws.close() for ws, _ in opened), return_exceptions=True)
    conn.send(("done", {"latencies": latencies, "first_last": first_last, "first_ms": first_ms, "missing": missing,
                        "out_of_order": out_of_order, "deliveries": sum(len(r) for r in received)}))


# --- The run ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--clients", type=int, default=200, help="websocket clients, over two tenants (default 200)")
    parser.add_argument("--events", type=int, default=40, help="high-risk contracts submitted (default 40)")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between submissions (default 0.25)")
    parser.add_argument("--graph-in", default="worker", choices=["worker", "request"],
                        help="who runs a submission's graph: a run_worker process, as in production (default), or"
                             " the server inside the request (TASKS_BACKEND=immediate)")
    parser.add_argument("--servers", type=int, default=1, help="uvicorn processes sharing Redis (default 1)")
    parser.add_argument("--client-procs", type=int, default=0,
                        help="client processes; 0 (default) = one per 250 clients, at least 1")
    parser.add_argument("--handshakes", type=int, default=40,
                        help="handshakes in flight at once, over all client processes (default 40): each takes a"
                             " database read of the subscriber at connect")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL, no database")
    parser.add_argument("--db", default="bench_ws", help="database, dropped and recreated (default bench_ws)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/3", help="REDIS_URL for the servers (default db 3)")
    parser.add_argument("--target", help="base URL of a running server instead of starting one (needs --database-url)")
    parser.add_argument("--database-url", help="with --target: the server's DATABASE_URL, seeded in place")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on connecting and on delivery (default 60)")
    parser.add_argument("--keep-db", action="store_true", help="keep the database after the run")
    args = parser.parse_args()
    if args.clients < 2 or args.events < 1 or args.servers < 1:
        parser.error("--clients must be at least 2, --events and --servers at least 1")
    if args.target and not args.database_url:
        parser.error("--target needs --database-url (the bench seeds its users there)")
    client_procs = args.client_procs or max(1, -(-args.clients // 250))

    interrupt_on_sigterm()
    log_dir = Path(tempfile.mkdtemp(prefix="bench_ws_"))
    print(f"bench/ws.py  commit {git_commit()}  {machine(memory=False)}  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"  clients={args.clients} over {len(TENANTS)} tenants, servers={1 if args.target else args.servers}, graph in {args.graph_in},"
          f" client processes={client_procs}, events={args.events} every {args.interval}s; logs in {log_dir}")
    sys.stdout.flush()

    servers: list[subprocess.Popen] = []
    worker: subprocess.Popen | None = None
    tasks_backend = "database" if args.graph_in == "worker" and not args.target else "immediate"
    children: list[multiprocessing.Process] = []
    try:
        t = time.perf_counter()
        if args.target:
            env = product_env(database_url=args.database_url, redis_url=args.redis, tasks_backend=tasks_backend)
            bases = [args.target.rstrip("/")]
        else:
            database_recreate(args.pg, args.db)
            env = product_env(database_url=pg_url(args.pg, args.db), redis_url=args.redis, tasks_backend=tasks_backend)
            manage(["migrate", "--noinput", "-v0"], env=env, timeout=300)
        seed_out = manage(["shell", "-c", SEED_SCRIPT % {"clients": args.clients, "tenants": TENANTS}], env=env,
                          timeout=600)
        seed = json.loads(next(line for line in seed_out.splitlines() if line.startswith("BENCH_SEED "))[11:])
        print(f"  seeded in {time.perf_counter() - t:.1f} s")
        if not args.target:
            ports = [free_port() for _ in range(args.servers)]
            servers = [start_server(port, env=env, log_dir=log_dir, index=i) for i, port in enumerate(ports)]
            if args.graph_in == "worker":
                worker = start_worker(env=env, log_dir=log_dir)
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            for base in bases:
                http_wait_ready(f"{base}/healthz", timeout=60, check_alive=lambda: servers_check_alive(servers),
                                trust_env=False)
            print(f"  uvicorn pids {' '.join(str(p.pid) for p in servers)}, RSS"
                  f" {' '.join(f'{rss_mib(p.pid):.0f}' for p in servers)} MiB after start")

        # Warm-up, before any client connects (so no client sees it): one submission per
        # tenant pays the one-time costs (graph compilation, the checkpointer's and the
        # relay's connections) outside the measurement.
        with httpx.Client(timeout=args.timeout, trust_env=False) as http:
            for n, slug in enumerate(TENANTS):
                response = http.post(f"{bases[n % len(bases)]}/api/v1/tenants/{slug}/contracts/",
                                     json={"title": "warm-up", "text": HIGH_RISK_TEXT},
                                     headers={"Authorization": f"Token {seed['agents'][slug]}"})
                if response.status_code not in (201, 202):
                    raise RuntimeError(f"warm-up submit: HTTP {response.status_code} {response.text[:200]}")
        time.sleep(2)  # the worker's runs of those two

        clients = [
            {"slug": slug, "token": token, "http": bases[i % len(bases)],
             "ws": bases[i % len(bases)].replace("http://", "ws://", 1).replace("https://", "wss://", 1)}
            for i, (slug, token) in enumerate(seed["clients"])
        ]
        ctx = multiprocessing.get_context("spawn")
        pipes = []
        for index in range(client_procs):
            parent_end, child_end = ctx.Pipe()
            child = ctx.Process(target=client_process, args=(child_end, clients[index::client_procs], args.timeout,
                                                                 max(1, args.handshakes // client_procs)),
                                daemon=True)
            child.start()
            children.append(child)
            pipes.append(parent_end)
        t = time.perf_counter()
        connected = 0
        for pipe in pipes:
            if not pipe.poll(args.timeout * 5):
                raise TimeoutError("client process did not connect in time")
            kind, value = pipe.recv()
            if kind != "ready":
                raise RuntimeError(f"client process failed: {value}")
            connected += value
        print(f"  {connected} clients connected in {time.perf_counter() - t:.1f} s")
        for proc in servers:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log_dir}")

        # Submissions: alternate tenants, one every --interval, each request timed.
        expected = {slug: 0 for slug in TENANTS}
        request_ms: list[float] = []
        with httpx.Client(timeout=args.timeout, trust_env=False) as http:
            for n in range(args.events):
                slug = TENANTS[n % len(TENANTS)]
                started = time.perf_counter()
                response = http.post(f"{bases[n % len(bases)]}/api/v1/tenants/{slug}/contracts/",
                                     json={"title": f"MSA {n}", "text": HIGH_RISK_TEXT},
                                     headers={"Authorization": f"Token {seed['agents'][slug]}"})
                request_ms.append((time.perf_counter() - started) * 1000)
                if response.status_code not in (201, 202):
                    raise RuntimeError(f"submission failed: {response.status_code} {response.text[:500]}")
                expected[slug] += 1
                time.sleep(args.interval)

        for pipe in pipes:
            pipe.send(("expect", expected, args.timeout))
        results = []
        for pipe in pipes:
            if not pipe.poll(args.timeout + 30):
                raise TimeoutError("client process did not report in time")
            kind, value = pipe.recv()
            if kind != "done":
                raise RuntimeError(f"client process failed: {value}")
            results.append(value)
        server_rss = [rss_mib(p.pid) for p in servers]

        latencies = [x for r in results for x in r["latencies"]]
        spans: dict[str, list[float]] = {}
        for r in results:
            for key, (first, last) in r["first_last"].items():
                span = spans.setdefault(key, [first, last])
                span[0], span[1] = min(span[0], first), max(span[1], last)
        spread = [(last - first) * 1000 for first, last in spans.values()]
        firsts: dict[str, float] = {}
        for r in results:
            for key, ms in r["first_ms"].items():
                firsts[key] = min(firsts.get(key, ms), ms)
        wanted = sum(expected[c["slug"]] for c in clients)
        missing = sum(r["missing"] for r in results)
        print(f"\n  deliveries {sum(r['deliveries'] for r in results)} of {wanted} expected,"
              f" missing {missing}, clients with out-of-order events {sum(r['out_of_order'] for r in results)}")
        print(f"  submit request ({'commit + enqueue' if args.graph_in == 'worker' else 'graph run + commit + broadcast'}) ms: p50 {percentile(request_ms, 50):.1f}"
              f"  p99 {percentile(request_ms, 99):.1f}")
        print(f"  fan-out spread per event (first -> last client) ms: p50 {percentile(spread, 50):.1f}"
              f"  p99 {percentile(spread, 99):.1f}  max {max(spread, default=float('nan')):.1f}")
        slowest = sorted(firsts.items(), key=lambda item: -item[1])[:3]
        print("  slowest events, commit -> their first client: " + ", ".join(f"{key} {ms:.0f} ms" for key, ms in slowest))
        if servers:
            print(f"  server RSS at end: {' '.join(f'{r:.0f}' for r in server_rss if r is not None)} MiB")
        print(f"\n  commit -> client latency, {len(latencies)} deliveries to {connected} clients:"
              f"  p50 {percentile(latencies, 50):.1f} ms   p99 {percentile(latencies, 99):.1f} ms"
              f"   max {max(latencies, default=float('nan')):.1f} ms")
        return 0 if missing == 0 else 1
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
                child.join(timeout=10)
        stop_servers(servers + ([worker] if worker is not None else []))
        if not args.target and not args.keep_db:
            database_drop(args.pg, args.db)


if __name__ == "__main__":
    sys.exit(main())
