"""Retention of the queue's event log (the catch-up API's source) and of spent or
expired websocket tickets. Run it periodically (cron, a scheduler); a client whose
position falls before what is kept gets 410 `resync_required` and reloads the queue."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from reviews.stream import queue_event_retention, queue_events_prune


class Command(BaseCommand):
    help = "Delete queue events older than the retention period, and expired websocket tickets."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=float, default=None,
            help="Keep this many days of events (default: settings.QUEUE_EVENT_RETENTION_DAYS, else 7).",
        )

    def handle(self, *args, **options):
        days = options["days"]
        if days is not None and days <= 0:
            raise CommandError("--days must be positive")
        older_than = timedelta(days=days) if days is not None else queue_event_retention()
        deleted = queue_events_prune(older_than=older_than)
        self.stdout.write(f"pruned {deleted} queue event(s) older than {older_than}")
