"""The product as real processes, started the way README.md and .ci/start start it.

- `live_product()`: `manage.py migrate`, `collectstatic`, `seed_demo`, then `uvicorn
  config.asgi:application` and `manage.py run_worker`, on a database of their own (the
  embedded default: a SQLite file, no Redis) or on a database a test names.
- `processes()`: servers and workers started one by one on the test run's own database
  (its fixtures' tenants and tokens), with short recovery timings, for tests that kill,
  stop and restart them.

Every process is stopped however the test ends; their output is kept in log files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings

from tests.support import PROJECT_DIR, PYTHON, SERVER_COMMAND, child_env

# Bounds on waiting: they stop a broken run from hanging, they never assert speed.
START_BOUND = 90
COMMAND_BOUND = 300
STOP_BOUND = 15


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Product:
    port: int
    env: dict[str, str]
    directory: Path
    demo: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def user(self, username: str) -> dict[str, Any]:
        """A demo user as seed_demo reported it: username, role, token."""
        for tenant in self.demo["tenants"]:
            for user in tenant["users"]:
                if user["username"] == username:
                    return user
        raise KeyError(username)

    def api(self, username: str) -> httpx.Client:
        token = self.user(username)["token"]
        return httpx.Client(base_url=self.http, headers={"Authorization": f"Token {token}"}, timeout=30,
                            trust_env=False)

    def manage(self, *args: str) -> str:
        """A management command in the product's environment; returns its stdout."""
        completed = subprocess.run([PYTHON, "manage.py", *args], cwd=PROJECT_DIR, env=self.env, capture_output=True,
                                   text=True, timeout=COMMAND_BOUND)
        assert completed.returncode == 0, f"manage.py {' '.join(args)} failed:\n{completed.stderr[-4000:]}"
        return completed.stdout

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)[-6000:]}" for name in self.processes)

    def start(self, name: str, *command: str) -> subprocess.Popen:
        with (self.directory / f"{name}.log").open("ab") as out:
            process = subprocess.Popen(list(command), cwd=PROJECT_DIR, env=self.env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_BOUND
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited with {process.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.http}/healthz", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server was not ready after {START_BOUND} s:\n{self.logs()}")

    def wait_seeded(self) -> None:
        """Until the worker has run every demo contract's graph: tests start from a
        queue that no longer moves on its own."""
        deadline = time.monotonic() + START_BOUND
        for tenant in self.demo["tenants"]:
            admin = next(u["username"] for u in tenant["users"] if u["role"] == "admin")
            with self.api(admin) as api:
                while True:
                    rows = api.get(f"/api/v1/tenants/{tenant['slug']}/contracts/").json()["results"]
                    if rows and all(row["run_state"] != "running" for row in rows):
                        break
                    if time.monotonic() > deadline:
                        raise AssertionError(f"the demo contracts were not run:\n{self.logs()}")
                    time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_BOUND)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def product_env(*, directory: Path, port: int, database_url: str | None, debug: bool,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url or f"sqlite:///{directory / 'hitl.sqlite3'}",
        CHECKPOINT_SQLITE_PATH=str(directory / "checkpoints.sqlite3"),
        STATIC_ROOT=str(directory / "static"),
        REDIS_URL="",
        TASKS_BACKEND="database",
        DEBUG="true" if debug else "false",
        SECRET_KEY="live-test-secret-key-not-for-production-0123456789",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CSRF_TRUSTED_ORIGINS=f"http://127.0.0.1:{port},http://localhost:{port}",
        PYTHONUNBUFFERED="1",
    )
    env.pop("CI", None)
    env.update(extra or {})
    return env


@contextmanager
def live_product(*, debug: bool = True, worker: bool = True, seed: bool = True, database_url: str | None = None,
                 migrate: bool = True, extra_env: dict[str, str] | None = None) -> Iterator[Product]:
    """The product as .ci/start runs it (migrate, collectstatic, seed_demo, worker,
    server); on its own SQLite file unless `database_url` names another database."""
    with tempfile.TemporaryDirectory(prefix="hitl-live-") as tmp:
        directory = Path(tmp)
        port = free_port()
        product = Product(port=port, directory=directory,
                          env=product_env(directory=directory, port=port, database_url=database_url, debug=debug,
                                          extra=extra_env))
        try:
            if migrate:
                product.manage("migrate", "--noinput", "-v0")
            product.manage("collectstatic", "--noinput", "-v0")
            if seed:
                product.demo = json.loads(product.manage("seed_demo", "--json"))
            if worker:
                product.start("worker", PYTHON, "manage.py", "run_worker", "--queue-name", "*", "--interval", "0.05",
                              "--no-startup-delay", "--no-reload")
            product.start("server", *SERVER_COMMAND, "--host", "127.0.0.1", "--port", str(port), "--no-access-log")
            product.wait_ready()
            if seed and worker:
                product.wait_seeded()
            yield product
        finally:
            product.stop()


# --- Processes on the test run's own database ---------------------------------------


def live_env(**overrides: str) -> dict[str, str]:
    """What a production process gets: the test database, the test's Redis, the
    database task backend, and short timings so recovery shows within a test."""
    env = child_env(tasks_backend="database")
    env.update(
        REDIS_URL=settings.REDIS_URL or "",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DEBUG="false",
        # A crashed worker's lease runs out in seconds, and the scheduler looks often.
        RUN_LEASE_SECONDS="5",
        RUN_RETRY_BASE_SECONDS="1",
        RUN_RETRY_MAX_SECONDS="4",
        SCHEDULER_RECOVERY_SECONDS="1",
        SCHEDULER_CLAIMS_SECONDS="2",
        # Connections named so a test can single out the children's backends.
        PGAPPNAME="hitl-live",
    )
    env.update(overrides)
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.alive:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=2 * STOP_BOUND)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def wait_exit(self, bound: float = START_BOUND) -> int:
        try:
            return self.popen.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {bound} s:\n{self.log_text()}") from None


@dataclass
class LiveServer(Process):
    port: int = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Token {token}"} if token else {}
        return httpx.Client(base_url=self.http, headers=headers, timeout=30, trust_env=False, **kwargs)


@dataclass
class Processes:
    """Every process a test started; all stopped at the end."""

    folder: Path
    started: list[Process] = field(default_factory=list)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
        log = self.folder / f"{name}-{len(self.started)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(argv, cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
        return popen, log

    def server(self, **env: str) -> LiveServer:
        port = free_port()
        argv = [*SERVER_COMMAND, "--host", "127.0.0.1", "--port", str(port)]
        popen, log = self._spawn("server", argv, live_env(**env))
        server = LiveServer(name="server", popen=popen, log=log, port=port)
        self.started.append(server)
        _wait_ready(server)
        return server

    def worker(self, *args: str, **env: str) -> Process:
        argv = [PYTHON, "manage.py", "run_worker", "--queue-name", "*", "--interval", "0.2",
                "--no-startup-delay", "--no-reload", *args]
        popen, log = self._spawn("worker", argv, live_env(**env))
        worker = Process(name="worker", popen=popen, log=log)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()


@contextmanager
def processes() -> Iterator[Processes]:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        running = Processes(folder=Path(tmp))
        stack.callback(running.stop_all)
        yield running


def _wait_ready(server: LiveServer) -> None:
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline:
        if not server.alive:
            raise AssertionError(f"server exited with {server.popen.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(f"{server.http}/healthz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server on port {server.port} not ready after {START_BOUND} s:\n{server.log_text()}")

