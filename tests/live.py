"""Real processes on the test database, as the README runs them: ASGI servers
(`uvicorn config.asgi:application`) and task workers (`manage.py run_worker`, with its
scheduler), each stopped however the test ends, each with its own log file."""

from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from django.conf import settings

from tests.support import PROJECT_DIR, PYTHON, child_env

# Bounds on waiting: they only stop a broken run from hanging, never assert speed.
START_BOUND = 60
STOP_BOUND = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
                self.popen.wait(timeout=STOP_BOUND)
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
        argv = [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
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

