"""`manage.py run_worker`: db_worker's options, woken by NOTIFY, surviving database
outages, with the scheduler running beside it (see contracts.worker, contracts.scheduler)."""

from __future__ import annotations

from django.conf import settings
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand

from config.gc_tuning import gc_tune_for_serving
from contracts.worker import WakeableWorker, scheduler_start


class Command(DbWorkerCommand):
    help = (
        "Run the task worker; on PostgreSQL it wakes on NOTIFY as soon as a task is enqueued. "
        "Each worker also runs the scheduler's periodic jobs when it holds the lead."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--no-scheduler", action="store_false", dest="scheduler", default=settings.SCHEDULER_ENABLED,
            help="Do not take part in running the periodic jobs (default: SCHEDULER_ENABLED).",
        )

    def handle(self, *, verbosity, queue_name, interval, batch, backend_name, startup_delay, reload,
               max_tasks, worker_id, exclude_queues, scheduler, **options) -> None:
        self.configure_logging(verbosity)
        gc_tune_for_serving()
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
        if scheduler:
            scheduler_start(worker_id=worker_id)
        worker.run()
