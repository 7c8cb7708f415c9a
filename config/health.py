"""Liveness and readiness, unauthenticated and free of tenant data."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _checkpointer() -> None:
    from contracts.graph.runner import thread_snapshot

    # Reading a thread that cannot exist touches the checkpointer's tables.
    thread_snapshot("readyz-probe")


def _cache() -> None:
    # The throttle's counters live here (Redis when configured): without it every
    # throttled request fails.
    from config.throttling import throttle_cache

    cache = throttle_cache()
    cache.set("readyz-probe", "ok", timeout=10)
    if cache.get("readyz-probe") != "ok":
        raise RuntimeError("cache did not keep a value")


def _task_backend() -> None:
    from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
    from django_tasks_db import DatabaseBackend
    from django_tasks_db.models import DBTaskResult

    # Resolving the backend validates its configuration; the database one has a table.
    if isinstance(task_backends[DEFAULT_TASK_BACKEND_ALIAS], DatabaseBackend):
        DBTaskResult.objects.exists()


CHECKS = {"database": _database, "checkpointer": _checkpointer, "cache": _cache, "task_backend": _task_backend}


def readyz(request: HttpRequest) -> JsonResponse:
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            logger.warning("readiness check %s failed: %s", name, exc)
            results[name] = "failed"
    ready = all(value == "ok" for value in results.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": results}, status=200 if ready else 503)
