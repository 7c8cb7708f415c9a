"""The newcomer's path: `bash .ci/start`, the README's first command, in a copy of the
project. The demo tenants come with contracts waiting for review and name their finance
approvers, the curl it prints really creates a review, each log line is printed once,
and a `kill` of the script stops the server and the worker."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.live import free_port
from tests.support import PROJECT_DIR, wait_until

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
                       reason=".ci/start runs the embedded default on its own files: once, in the embedded run"),
]

# Only stops a broken run from hanging; never a speed assertion.
BOUND = 180


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_ci_start_seeds_a_queue_prints_a_working_curl_logs_once_and_stops_on_kill(tmp_path: Path):
    project = tmp_path / "project"
    shutil.copytree(PROJECT_DIR, project, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".pytest_cache", "*.sqlite3"))
    (project / ".venv").symlink_to((PROJECT_DIR / ".venv").resolve())
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "DJANGO_", "DATABASE_", "CHECKPOINT_", "REDIS_", "SECRET_", "TASKS_"))}
    env.update(PORT=str(port), PYTHONUNBUFFERED="1")
    log = tmp_path / "start.log"
    with log.open("wb") as out:
        script = subprocess.Popen(["bash", ".ci/start"], cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    processes: list[int] = []
    try:
        def ready() -> bool:
            assert script.poll() is None, log.read_text()
            try:
                return "Submit a contract" in log.read_text() and httpx.get(f"{base}/healthz", timeout=2).is_success
            except httpx.TransportError:
                return False

        wait_until(ready, what=".ci/start to serve", bound=BOUND, interval=0.2)
        demo = json.loads((project / "var" / "demo.json").read_text())
        acme = next(t for t in demo["tenants"] if t["slug"] == "acme")
        assert [u["username"] for u in acme["users"] if u["finance_approver"]] == ["acme-reviewer2"]
        assert [c["title"] for c in acme["contracts"]] == ["Cloud hosting MSA", "Data centre build-out",
                                                           "Exclusive supply deal"]
        reviewer = next(u["token"] for u in acme["users"] if u["username"] == "acme-reviewer2")
        api = httpx.Client(base_url=base, headers={"Authorization": f"Token {reviewer}"}, timeout=30)

        def queue() -> dict[str, set[str]]:
            rows = api.get("/api/v1/tenants/acme/reviews/", params={"status": "pending"}).json()["results"]
            kinds: dict[str, set[str]] = {}
            for row in rows:
                kinds.setdefault(row["contract_title"], set()).add(row["kind"])
            return kinds

        seeded = wait_until(lambda: len(queue()) == 3 and queue(), what="the demo contracts' review tasks", bound=BOUND)
        assert seeded == {"Cloud hosting MSA": {"legal"}, "Data centre build-out": {"legal", "finance"},
                          "Exclusive supply deal": {"legal"}}

        # The curl it printed, run as printed.
        text = log.read_text()
        curl = re.search(r"^\s*(curl .*?/contracts/)\s*$", text, re.S | re.M).group(1)
        submitted = subprocess.run(["bash", "-c", curl.replace("\\\n", " ")], capture_output=True, text=True,
                                   timeout=60)
        contract = json.loads(submitted.stdout)
        assert contract["status"] in ("submitted", "waiting_for_review"), submitted.stdout

        def reviewed() -> list[dict]:
            return api.get("/api/v1/tenants/acme/reviews/", params={"contract": contract["id"]}).json()["results"]

        [task] = wait_until(reviewed, what="a review of the curl's contract", bound=BOUND)
        assert (task["kind"], task["status"]) == ("legal", "pending") and task["risk_score"] > 0.7

        # Each log line once (Django's own console handler used to print them again).
        assert httpx.get(f"{base}/api/v1/tenants/acme/reviews/", timeout=30).status_code == 401
        wait_until(lambda: "Unauthorized: /api/v1/tenants/acme/reviews/" in log.read_text(), what="the log line")
        assert log.read_text().count("Unauthorized: /api/v1/tenants/acme/reviews/") == 1

        processes = children(script.pid)
        assert len(processes) >= 2, processes  # the server and the worker
    finally:
        if script.poll() is None:
            processes = children(script.pid)
            script.send_signal(signal.SIGTERM)
    try:
        script.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in processes if alive(pid)], "a kill of .ci/start left processes running"
    finally:
        for pid in processes:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if script.poll() is None:
            script.kill()
