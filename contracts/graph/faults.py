"""Deliberate crashes, for the recovery tests. Nothing here does anything unless the
setting TEST_KILL_AT (environment HITL_TEST_KILL_AT) names a point.

The promise that a run killed at any step heals itself is only worth what a real
process dying at every step boundary shows. At the named point the process sends itself
SIGKILL, the first time it gets there (config/settings.py checks the name): no `finally`, no clean-up, no lease given back,
as when the kernel's OOM killer or a lost node ends a worker. Points:

  after-interrupt:<node>     the node's interrupt (its question) is durable
  after-writes:<node>        the node's result is durable (a review node: its answer is
                             consumed), the checkpoint of its step is not
  after-checkpoint:<step>    the checkpoint of superstep <step> is durable (-1: the input)
  before-outcome             the graph has returned, its outcome is not recorded yet
"""

from __future__ import annotations

import os
import signal
from typing import Any

from django.conf import settings


def kill_point() -> str:
    return settings.TEST_KILL_AT


def reached(point: str) -> None:
    if settings.TEST_KILL_AT == point:
        os.kill(os.getpid(), signal.SIGKILL)


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
