"""Deliberate crashes, for the recovery tests. Nothing here does anything unless the
setting TEST_KILL_AT (environment HITL_TEST_KILL_AT) names a point.

The promise that a run killed at any step heals itself is only worth what a real
process dying at every step boundary shows. At the named point the process sends itself
SIGKILL (config/settings.py checks the name): no `finally`, no clean-up, no lease given
back, as when the kernel's OOM killer or a lost node ends a worker. Points:

  before-node:<node>         the node is about to run: the steps before it happened in
                             memory only (runs checkpoint when they stop: durability "exit")
  after-interrupt:<node>     the node's interrupt (its question) is written
  after-writes:<node>        the node's result is written, the run's checkpoint is not (a
                             branch finished while a parallel one still waits)
  after-checkpoint:<step>    the checkpoint of superstep <step> is written
  before-outcome             the graph has returned, its outcome is not recorded yet

On PostgreSQL a pass's writes commit together once its run returns (runner.thread_pass):
killed at a write, the process leaves the thread as the pass found it.

`<point>#N` kills the N-th time the point is reached in this process (a worker that
should survive a contract's first run and die in its resume).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.conf import settings

_reached: Counter[str] = Counter()


def kill_point() -> str:
    return settings.TEST_KILL_AT


def reached(point: str) -> None:
    wanted = settings.TEST_KILL_AT
    if not wanted:
        return
    name, _, nth = wanted.partition("#")
    if name != point:
        return
    _reached[point] += 1
    if _reached[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def node_entered(node: str) -> None:
    reached(f"before-node:{node}")


def node_hook() -> Callable[[str], None] | None:
    """For contract_graph_build: called as each node starts, when a kill point is set."""
    return node_entered if kill_point() else None


def crashing_saver(saver_class: type) -> type:
    """`saver_class` with a kill after each durable write that matches the kill point."""

    class CrashingSaver(saver_class):
        def put(self, config, checkpoint, metadata, new_versions):
            result = super().put(config, checkpoint, metadata, new_versions)
            reached(f"after-checkpoint:{metadata.get('step')}")
            return result

        def put_writes(self, config, writes, task_id, task_path: str = "") -> Any:
            result = super().put_writes(config, writes, task_id, task_path)
            # task_path is "~__pregel_pull, <node>" for a node's task.
            node = task_path.rsplit(",", 1)[-1].strip()
            asked = any(channel == "__interrupt__" for channel, _ in writes)
            reached(f"after-interrupt:{node}" if asked else f"after-writes:{node}")
            return result

    CrashingSaver.__name__ = f"Crashing{saver_class.__name__}"
    return CrashingSaver
