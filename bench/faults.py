"""Load with faults: clients submit and approve high-risk contracts while PostgreSQL
backends are terminated every few seconds and a worker is SIGKILLed and restarted now
and then; then the faults stop and the script counts what every client saw and what
was lost.

    .venv/bin/python bench/faults.py [--seconds 20] [--clients 8] [--workers 2]
        [--terminate-every 2] [--kill-worker-every 7]

Prints the responses by status (every one must be a 2xx, a 4xx or a JSON 503), then,
after recovery: accepted submissions that never reached approval, decisions applied
other than once, and processes that died on their own. All must be zero. Runs against a
database of its own (hitl_bench_faults), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psycopg  # noqa: E402

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
    pg_url,
    product_env,
)

DBNAME = "hitl_bench_faults"
APP_NAME = "hitl-bench-faults"


class Client:
    """A few lines of urllib: no dependency the product does not already have."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Token {self.token}", "Content-Type": "application/json", **(headers or {})})
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()


def acceptable(status: int, headers, body: bytes) -> bool:
    if status < 500:
        return True
    try:
        return (status == 503 and headers.get("Content-Type", "").startswith("application/json")
                and json.loads(body)["error"]["code"] == "service_unavailable" and int(headers["Retry-After"]) > 0)
    except (ValueError, KeyError, TypeError):
        return False


class Run:
    def __init__(self, args) -> None:
        self.args = args
        self.base_pg = args.postgres
        self.env = product_env(database_url=pg_url(self.base_pg, DBNAME), redis_url=args.redis)
        self.env.update(PGAPPNAME=APP_NAME, RUN_LEASE_SECONDS="5", RUN_RETRY_BASE_SECONDS="1",
                        RUN_RETRY_MAX_SECONDS="4", SCHEDULER_RECOVERY_SECONDS="1", LOG_LEVEL="WARNING")
        self.logs = Path(args.logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.lock = threading.Lock()
        self.responses: Counter = Counter()
        self.unacceptable: list[str] = []
        self.accepted: list[str] = []
        self.kills = Counter()

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        out = (self.logs / f"{name}.log").open("ab")
        return subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def worker(self, index: int) -> subprocess.Popen:
        return self.spawn(f"worker-{index}", [PYTHON, "manage.py", "run_worker", "--queue-name", "*", "--interval",
                                              "0.2", "--no-startup-delay", "--no-reload"])

    def note(self, status: int, headers, body: bytes) -> None:
        with self.lock:
            self.responses[status] += 1
            if not acceptable(status, headers, body):
                self.unacceptable.append(f"{status} {headers.get('Content-Type')} {body[:160]!r}")

    def client(self, stop: threading.Event, agent: Client, reviewer: Client, slug: str) -> None:
        while not stop.is_set():
            try:
                status, headers, body = agent.call("POST", f"/api/v1/tenants/{slug}/contracts/",
                                                   {"title": "MSA", "text": HIGH_RISK_TEXT})
                self.note(status, headers, body)
                if status == 202:
                    with self.lock:
                        self.accepted.append(json.loads(body)["id"])
                status, headers, body = reviewer.call("GET", f"/api/v1/tenants/{slug}/reviews/?status=pending&actionable=true&page_size=5")
                self.note(status, headers, body)
                for task in json.loads(body)["results"] if status == 200 else []:
                    self.note(*reviewer.call("POST", f"/api/v1/tenants/{slug}/reviews/{task['id']}/resume/",
                                             {"decision": "approve"}, {"Idempotency-Key": f"approve-{task['id']}"}))
            except OSError as exc:  # a dropped connection: no answer at all
                with self.lock:
                    self.unacceptable.append(f"transport: {exc!r}")

    def terminator(self, stop: threading.Event) -> None:
        with psycopg.connect(pg_url(self.base_pg, "postgres"), autocommit=True) as conn:
            while not stop.wait(self.args.terminate_every):
                rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                                    [APP_NAME]).fetchall()
                self.kills["backends terminated"] += len(rows)

    def worker_killer(self, stop: threading.Event) -> None:
        while not stop.wait(self.args.kill_worker_every):
            index = random.randrange(len(self.workers))
            self.workers[index].send_signal(signal.SIGKILL)
            self.workers[index].wait()
            self.kills["workers SIGKILLed"] += 1
            self.workers[index] = self.worker(index)

    def main(self) -> int:
        print(f"# bench/faults.py on {machine()}, commit {git_commit()}")
        database_recreate(self.base_pg, DBNAME)
        try:
            manage(["migrate", "--noinput", "-v0"], env=self.env, timeout=600)
            demo = json.loads(manage(["seed_demo", "--json"], env=self.env, timeout=300))
            tenant = demo["tenants"][0]
            tokens = {u["username"]: u["token"] for u in tenant["users"]}
            port = free_port()
            self.server = self.spawn("server", [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host",
                                                "127.0.0.1", "--port", str(port), "--no-access-log"])
            base = f"http://127.0.0.1:{port}"
            http_wait_ready(f"{base}/healthz", timeout=60, check_alive=self._server_alive, trust_env=False)
            self.workers = [self.worker(i) for i in range(self.args.workers)]
            slug = tenant["slug"]
            stop = threading.Event()
            threads = [threading.Thread(target=self.client, args=(stop, Client(base, tokens[f"{slug}-agent"]),
                                                                   Client(base, tokens[f"{slug}-reviewer1"]), slug))
                       for _ in range(self.args.clients)]
            threads += [threading.Thread(target=self.terminator, args=(stop,)),
                        threading.Thread(target=self.worker_killer, args=(stop,))]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            time.sleep(self.args.seconds)
            stop.set()
            for thread in threads:
                thread.join()
            storm = time.monotonic() - started
            recovered_in = self.settle(Client(base, tokens[f"{slug}-reviewer1"]), slug)
            lost = self.audit()
            died = [p.args[3] if len(p.args) > 3 else p.args for p in [self.server, *self.workers] if p.poll() is not None]
            self.report(storm, recovered_in, lost, died)
            return 0 if not self.unacceptable and not any(lost.values()) and not died else 1
        finally:
            for process in [*self.workers, self.server]:
                if process is not None and process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        process.kill()
            database_drop(self.base_pg, DBNAME)

    def _server_alive(self) -> None:
        if self.server is not None and self.server.poll() is not None:
            raise RuntimeError(f"server exited with {self.server.returncode}; see {self.logs}/server.log")

    def settle(self, reviewer: Client, slug: str, bound: float = 300) -> float:
        """With the faults stopped: answer what is still pending until every accepted
        contract is approved (or the bound runs out). Returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < bound:
            with psycopg.connect(pg_url(self.base_pg, DBNAME)) as conn:
                pending = [r[0] for r in conn.execute("SELECT id FROM reviews_reviewtask WHERE status = 'pending'")]
                approved = conn.execute("SELECT count(*) FROM contracts_contract WHERE status = 'approved' AND id = ANY(%s)",
                                        [self.accepted]).fetchone()[0]
            if approved == len(self.accepted):
                return time.monotonic() - started
            for task_id in pending:
                reviewer.call("POST", f"/api/v1/tenants/{slug}/reviews/{task_id}/resume/", {"decision": "approve"},
                              {"Idempotency-Key": f"approve-{task_id}"})
            time.sleep(1)
        return float("nan")

    def audit(self) -> dict[str, int]:
        with psycopg.connect(pg_url(self.base_pg, DBNAME)) as conn:
            not_approved = conn.execute(
                "SELECT count(*) FROM contracts_contract WHERE id = ANY(%s) AND status <> 'approved'", [self.accepted]
            ).fetchone()[0]
            missing = len(self.accepted) - conn.execute(
                "SELECT count(*) FROM contracts_contract WHERE id = ANY(%s)", [self.accepted]).fetchone()[0]
            # A decision applied other than once: the history holds one legal entry per contract.
            wrong_history = conn.execute(
                "SELECT count(*) FROM contracts_contract WHERE id = ANY(%s) AND jsonb_array_length(decision_history) <> 1",
                [self.accepted]).fetchone()[0]
            tasks_per_contract = conn.execute(
                "SELECT count(*) FROM (SELECT contract_id FROM reviews_reviewtask WHERE contract_id = ANY(%s)"
                " GROUP BY contract_id HAVING count(*) <> 1) t", [self.accepted]).fetchone()[0]
            unapplied = conn.execute(
                "SELECT count(*) FROM reviews_reviewtask WHERE status = 'resolved' AND applied_at IS NULL").fetchone()[0]
        return {"accepted submissions missing": missing, "accepted submissions not approved": not_approved,
                "contracts whose decision was applied other than once": wrong_history,
                "contracts with other than one review task": tasks_per_contract,
                "decisions recorded, never applied": unapplied}

    def report(self, storm: float, recovered_in: float, lost: dict[str, int], died: list) -> None:
        print(f"\n{self.args.clients} clients, {self.args.workers} workers, {storm:.0f} s of faults: "
              + ", ".join(f"{v} {k}" for k, v in self.kills.items()))
        print("\n| responses | count |\n|---|---|")
        for status, count in sorted(self.responses.items()):
            print(f"| {status} | {count} |")
        print(f"| not 2xx/4xx/JSON 503 | {len(self.unacceptable)} |")
        for line in self.unacceptable[:10]:
            print(f"    {line}")
        print(f"\nAccepted submissions: {len(self.accepted)}; all approved {recovered_in:.1f} s after the faults stopped.")
        print("\n| lost | count |\n|---|---|")
        for what, count in lost.items():
            print(f"| {what} | {count} |")
        print(f"| processes that died on their own | {len(died)} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--terminate-every", type=float, default=2)
    parser.add_argument("--kill-worker-every", type=float, default=7)
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--logs", default=str(REPO / "var" / "bench-faults"))
    interrupt_on_sigterm()
    return Run(parser.parse_args()).main()


if __name__ == "__main__":
    sys.exit(main())
