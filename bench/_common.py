"""Helpers the bench scripts share (stdlib and psycopg only; Django never runs here).

Imported as `bench._common` once a script has taken bench/ off sys.path and put the
repository root first (see the top of each script): bench/ has no __init__.py, so it is
a namespace package, and bench/queue.py never shadows the standard library's `queue`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg

REPO = Path(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = str(REPO / ".venv" / "bin" / "python")
BENCH_SECRET_KEY = "bench-only-secret-key-0123456789abcdef0123456789"

# tests.factories.HIGH_RISK_TEXT (copied: importing tests.factories needs Django set
# up). Scores 0.8245: legal review only, below the critical sign-off threshold, and its
# EUR 20,000 payment is under the finance limit, so one interrupt, one approval.
HIGH_RISK_TEXT = (
    "MASTER SERVICES AGREEMENT. This agreement is governed by the laws of England. "
    "Supplier shall have unlimited liability for any breach. "
    "Customer shall indemnify Supplier against any and all claims arising from the services. "
    "Supplier may terminate this agreement at any time without cause. "
    "Customer shall pay EUR 20,000 per year."
)


# --- PostgreSQL ---------------------------------------------------------------------


def pg_url(base: str, dbname: str) -> str:
    return f"{base.rstrip('/')}/{dbname}"


def database_recreate(base: str, dbname: str) -> None:
    # DROP/CREATE DATABASE cannot run inside a transaction; WITH (FORCE) ends sessions
    # a previous, killed run may have left behind.
    with psycopg.connect(pg_url(base, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')


def database_drop(base: str, dbname: str) -> None:
    with psycopg.connect(pg_url(base, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


# --- The product in subprocesses ----------------------------------------------------


def product_env(*, database_url: str, redis_url: str | None) -> dict[str, str]:
    """Production-like: no DEBUG (which would keep every SQL statement in memory),
    PostgreSQL, Redis, the database task backend."""
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "PYTHONPATH", "REDIS_URL")}
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=BENCH_SECRET_KEY,
        DEBUG="false",
        LOG_LEVEL="WARNING",
        TASKS_BACKEND="database",
        # One token drives the whole load; the default 1200/minute would answer 429.
        API_THROTTLE_RATE="100000000/second",
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def manage(args: list[str], *, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_wait_ready(url: str, *, timeout: float, check_alive: Callable[[], None], trust_env: bool = True) -> None:
    """Until `url` answers 200. `check_alive` raises once the server has died, so a crash
    is not waited out. trust_env=False ignores proxies set in the environment, as httpx's
    option of that name does."""
    # An empty ProxyHandler replaces the default one, which reads http_proxy and the like.
    opener = urllib.request.build_opener(*([] if trust_env else [urllib.request.ProxyHandler({})]))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive()
        try:
            with opener.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s")


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt("SIGTERM")


def interrupt_on_sigterm() -> None:
    # End like Ctrl-C: through the script's finally, which stops its subprocesses.
    signal.signal(signal.SIGTERM, _sigterm)


# --- Measuring and reporting --------------------------------------------------------


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); nan when there are no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine(*, memory: bool = True) -> str:
    """Cores, memory and load average, for the first line of a report. memory=False
    leaves the memory out (bench/ws.py's line has never had it)."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if not memory:
        return f"{os.cpu_count()} cores, load average {load}"
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        mem = "?"
    return f"{os.cpu_count()} cores, {mem}, load average {load}"
