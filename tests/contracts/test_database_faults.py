"""The database failing under a running product: every API answer stays a 2xx, a 4xx or
a JSON 503, no process dies, and once it is back every accepted submission and decision
is applied exactly once. Real server and worker processes on PostgreSQL."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import pytest
from django.db import connection

from contracts.models import Contract
from reviews.models import ReviewTask
from tests.factories import HIGH_RISK_TEXT
from tests.live import free_port, live_env, processes
from tests.support import PROJECT_DIR, PYTHON, fast_passwords, postgresql_only, wait_until

pytestmark = [postgresql_only, pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    fast_passwords(settings)


def _acceptable(response: httpx.Response) -> bool:
    """What a client may ever see: a 2xx, a 4xx, or the API's 503 with Retry-After."""
    if response.status_code < 500:
        return True
    return (
        response.status_code == 503
        and response.headers.get("content-type", "").startswith("application/json")
        and response.json()["error"]["code"] == "service_unavailable"
        and int(response.headers["Retry-After"]) > 0
    )


def _terminate_children(dsn: str, stop: threading.Event, every: float) -> None:
    """pg_terminate_backend on every connection of the server and worker processes
    (they connect as application_name hitl-live), until told to stop."""
    with psycopg.connect(dsn, autocommit=True) as killer:
        while not stop.wait(every):
            killer.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'hitl-live'")


def _test_dsn() -> str:
    db = connection.settings_dict
    return f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={db['USER'] or 'postgres'} dbname={db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_backends_terminated_during_requests_and_runs_lose_nothing(acme):
    responses: Counter = Counter()
    unacceptable: list[str] = []
    accepted: list[str] = []
    lock = threading.Lock()

    def note(response: httpx.Response) -> httpx.Response:
        with lock:
            responses[response.status_code] += 1
            if not _acceptable(response):
                unacceptable.append(f"{response.status_code} {response.headers.get('content-type')} {response.text[:200]}")
        return response

    with processes() as running:
        server = running.server()
        worker = running.worker()
        stop = threading.Event()

        def client(index: int) -> None:
            with server.client(acme.agent.token) as agent, server.client(acme.reviewer.token) as reviewer:
                while not stop.is_set():
                    try:
                        created = note(agent.post(acme.url("contracts/"), json={"title": f"load {index}", "text": HIGH_RISK_TEXT}))
                        if created.status_code == 202:
                            with lock:
                                accepted.append(created.json()["id"])
                        page = note(reviewer.get(acme.url("reviews/"), params={"status": "pending", "page_size": 5}))
                        for task in page.json().get("results", []) if page.status_code == 200 else []:
                            note(reviewer.post(acme.url(f"reviews/{task['id']}/resume/"), json={"decision": "approve"},
                                               headers={"Idempotency-Key": f"approve-{task['id']}"}))
                    except httpx.TransportError as exc:  # a dropped connection is not an answer
                        with lock:
                            unacceptable.append(f"transport error: {exc!r} on {exc.request.method} {exc.request.url.path}")

        killer = threading.Thread(target=_terminate_children, args=(_test_dsn(), stop, 0.5))
        clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for thread in (killer, *clients):
            thread.start()
        time.sleep(10)
        stop.set()
        for thread in (killer, *clients):
            thread.join(timeout=60)

        assert unacceptable == []
        assert responses[503] > 0, f"no request met a terminated backend: {responses}"
        assert worker.alive, worker.log_text()
        assert server.alive, server.log_text()

        # After the storm: every accepted contract reaches its review, each review is
        # answered (a retry after a 503 carries the same Idempotency-Key), all approved.
        def settled() -> bool:
            with server.client(acme.reviewer.token) as reviewer:
                for task in ReviewTask.objects.filter(tenant=acme.tenant, status="pending"):
                    reviewer.post(acme.url(f"reviews/{task.pk}/resume/"), json={"decision": "approve"},
                                  headers={"Idempotency-Key": f"approve-{task.pk}"})
            return Contract.objects.filter(pk__in=accepted, status="approved").count() == len(accepted)

        wait_until(settled, what="every accepted contract approved", bound=120, interval=1)

    assert len(accepted) > 0
    for contract in Contract.objects.filter(pk__in=accepted):
        assert [entry["kind"] for entry in contract.decision_history] == ["legal"], contract.pk
        [task] = ReviewTask.objects.filter(contract=contract)
        assert task.status == "resolved" and task.applied_at is not None
    print(f"responses by status: {dict(sorted(responses.items()))}; accepted {len(accepted)}")


# --- PostgreSQL itself stopped and started ------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own, so stopping it disturbs nothing else."""

    def __init__(self, folder: Path) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            pytest.skip("PostgreSQL server binaries not found")
        self.bin = Path(binaries[-1]).parent
        self.data = folder / "pg"
        self.port = free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_postgres, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-l", str(self.data / "server.log"), "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/hitl"


@pytest.fixture
def private_postgres():
    # Not pytest's tmp_path: its parents are private to root, and the cluster runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="hitl-pg-"))
    cluster = PrivatePostgres(folder)
    cluster.start()
    try:
        with psycopg.connect(f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE hitl")
        yield cluster
    finally:
        subprocess.run([*cluster.as_postgres, str(cluster.bin / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_postgres_stopped_and_started_under_a_running_worker(private_postgres):
    env = live_env(DATABASE_URL=private_postgres.url)
    _manage(env, "migrate", "--noinput", "-v0")
    demo = json.loads(_manage(env, "seed_demo", "--json"))
    users = {u["username"]: u["token"] for u in demo["tenants"][0]["users"]}

    with processes() as running:
        server = running.server(DATABASE_URL=private_postgres.url)
        worker = running.worker(DATABASE_URL=private_postgres.url)

        def submit(client: httpx.Client) -> str:
            response = client.post("/api/v1/tenants/acme/contracts/", json={"title": "MSA", "text": HIGH_RISK_TEXT})
            assert response.status_code == 202, response.text
            return response.json()["id"]

        def status_of(client: httpx.Client, contract_id: str) -> str | None:
            response = client.get(f"/api/v1/tenants/acme/contracts/{contract_id}/")
            return response.json()["status"] if response.status_code == 200 else None

        with server.client(users["acme-agent"]) as agent, server.client(users["acme-reviewer1"]) as reviewer:
            before = submit(agent)
            wait_until(lambda: status_of(agent, before) == "waiting_for_review", what="the first review", bound=60)

            private_postgres.stop()
            down = agent.get("/api/v1/tenants/acme/contracts/")
            assert down.status_code == 503 and _acceptable(down), down.text
            time.sleep(3)  # the worker polls, fails and backs off meanwhile
            assert worker.alive and server.alive
            private_postgres.start()

            after = wait_until(lambda: _try_submit(agent), what="a submission once the database is back", bound=60)
            wait_until(lambda: status_of(agent, after) == "waiting_for_review", what="the worker to carry on", bound=90)
            for contract_id in (before, after):
                [task] = agent.get(f"/api/v1/tenants/acme/contracts/{contract_id}/").json()["pending_tasks"]
                answer = reviewer.post(f"/api/v1/tenants/acme/reviews/{task['id']}/resume/", json={"decision": "approve"})
                assert answer.status_code == 202, answer.text
            for contract_id in (before, after):
                wait_until(lambda: status_of(agent, contract_id) == "approved", what="approval", bound=60)
        assert worker.alive, worker.log_text()
        log = worker.log_text()
        assert "database unavailable" in log and "database available again" in log, log


def _try_submit(client: httpx.Client) -> str | None:
    response = client.post("/api/v1/tenants/acme/contracts/", json={"title": "MSA", "text": HIGH_RISK_TEXT})
    assert _acceptable(response), response.text
    return response.json()["id"] if response.status_code == 202 else None


# --- Workers and their scheduler ----------------------------------------------------


def _leader_lines(process) -> int:
    return process.log_text().count(": leading")


@pytest.mark.django_db(transaction=True)
def test_two_workers_one_scheduler_and_the_other_takes_over(acme):
    with processes() as running:
        first = running.worker(LOG_LEVEL="DEBUG")
        second = running.worker(LOG_LEVEL="DEBUG")
        workers = (first, second)
        wait_until(lambda: sum(_leader_lines(w) for w in workers) == 1, what="a leader", bound=60)
        started = time.monotonic()
        time.sleep(4)
        leader, follower = workers if _leader_lines(first) else workers[::-1]
        runs = leader.log_text().count("ran recover")
        elapsed = time.monotonic() - started + 2  # the runs before `started` since it began leading
        # Once per period (1 s here) by one process: never two runs in one period.
        assert 1 <= runs <= elapsed + 1, leader.log_text()
        assert "ran recover" not in follower.log_text()
        assert _leader_lines(follower) == 0

        leader.stop(signal.SIGKILL)  # its advisory lock goes with its connection
        wait_until(lambda: _leader_lines(follower) == 1, what="the follower to take the lead", bound=30)
        wait_until(lambda: "ran recover" in follower.log_text(), what="the new leader to run the jobs", bound=30)


@pytest.mark.django_db(transaction=True)
def test_sigterm_lets_the_task_in_hand_finish_within_its_grace(acme):
    contract_pks = []
    with processes() as running:
        server = running.server()
        with server.client(acme.agent.token) as agent:
            for title in ("held", "hung"):
                response = agent.post(acme.url("contracts/"), json={"title": title, "text": HIGH_RISK_TEXT})
                contract_pks.append(response.json()["id"])
        held, hung = contract_pks
        dsn = _test_dsn()

        def run_one_held_drive(contract_id: str, grace: str, release_after: float | None) -> int:
            """A worker busy with `contract_id`'s drive (its row lock is held elsewhere, so
            the drive waits) is sent SIGTERM; the lock is released after `release_after`."""
            with psycopg.connect(dsn) as blocker:
                blocker.execute("SELECT 1 FROM contracts_contract WHERE id = %s FOR UPDATE", [contract_id])
                worker = running.worker("--no-scheduler", WORKER_SHUTDOWN_GRACE_SECONDS=grace)
                wait_until(lambda: _waits_for_lock(dsn), what="the worker's drive to wait on the lock", bound=60)
                worker.popen.send_signal(signal.SIGTERM)
                if release_after is not None:
                    time.sleep(release_after)
                    blocker.rollback()
                return worker.wait_exit(bound=60)

        # Released within the grace: the drive finishes, then the worker exits cleanly.
        assert run_one_held_drive(held, grace="30", release_after=1) == 0
        assert Contract.objects.get(pk=held).status == "waiting_for_review"
        # Still hung when the grace runs out: the worker exits anyway; the lease expires
        # and recovery takes the contract over.
        assert run_one_held_drive(hung, grace="1", release_after=None) == 1
        assert Contract.objects.get(pk=hung).status == "submitted"
        rescuer = running.worker()
        wait_until(lambda: Contract.objects.get(pk=hung).status == "waiting_for_review", what="recovery", bound=60)
        assert rescuer.alive


def _waits_for_lock(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as probe:
        row = probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hitl-live' AND wait_event_type = 'Lock'"
        ).fetchone()
    return row[0] > 0

