"""django-tasks-db's database backend, with its queue row written by one INSERT rendered
once per process (config.compiled_writes): every contract queues two drives, and the
ORM's create of the row was most of the cost of queuing one (6.0 of 8.6 % of
the server's CPU under load)."""

from __future__ import annotations

from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.compat import normalize_json
from django_tasks_db.models import DBTaskResult, get_date_max

from config.compiled_writes import CompiledInsert

# Upstream's pre_save receiver (django_tasks_db.signal_handlers) only fills run_after,
# which the insert below does itself.
_QUEUE_ROW_INSERT = CompiledInsert(DBTaskResult, signals_done=True)


class QueueBackend(DatabaseBackend):
    def _task_to_db_task(self, task, args, kwargs) -> DBTaskResult:
        # The same row as upstream's DBTaskResult.objects.create(...).
        return _QUEUE_ROW_INSERT.create(
            id=self._get_id(),
            args_kwargs=normalize_json({"args": args, "kwargs": kwargs}),
            priority=task.priority,
            task_path=task.module_path,
            queue_name=task.queue_name,
            run_after=get_date_max() if task.run_after is None else task.run_after,
            backend_name=self.alias,
        )
