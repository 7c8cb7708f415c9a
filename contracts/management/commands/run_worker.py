"""`manage.py run_worker`: db_worker's options, woken by NOTIFY (see contracts.worker)."""

from __future__ import annotations

from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand

from contracts.worker import WakeableWorker


class Command(DbWorkerCommand):
    help = "Run the task worker; on PostgreSQL it wakes on NOTIFY as soon as a task is enqueued."

    def handle(self, *, verbosity, queue_name, interval, batch, backend_name, startup_delay, reload,
               max_tasks, worker_id, exclude_queues, **options) -> None:
        self.configure_logging(verbosity)
        worker = WakeableWorker(
            queue_names=queue_name.split(","),
            interval=interval,
            batch=batch,
            backend_name=backend_name,
            startup_delay=startup_delay,
            max_tasks=max_tasks,
            worker_id=worker_id,
            excluded_queue_names=exclude_queues.split(",") if exclude_queues else [],
        )
        worker.configure_signals()
        worker.run()
