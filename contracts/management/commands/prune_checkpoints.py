"""`manage.py prune_checkpoints [--tenant SLUG] [--dry-run] [--limit N]`: delete the
LangGraph checkpoints that retention allows (see contracts.retention), and say what
went: threads, rows by table, per tenant, and what was left alone and why."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from contracts.retention import checkpoints_prune
from tenants.models import AuditRecord, Tenant


class Command(BaseCommand):
    help = "Delete the checkpoints of threads whose contract finished more than the tenant's retention days ago."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant (its slug); default: every tenant with a retention period.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would go; delete nothing.")
        parser.add_argument("--limit", type=int, default=None, help="Stop after this many threads.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the figures as one JSON object.")

    def handle(self, *, tenant, dry_run, limit, as_json, **options):
        target = None
        if tenant:
            target = Tenant.objects.filter(slug=tenant).first()
            if target is None:
                raise CommandError(f"No tenant {tenant!r}.")
            if target.checkpoint_retention_days is None:
                self.stdout.write(f"{tenant}: checkpoints are kept for ever (no retention period); nothing to do.")
                return
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        report = checkpoints_prune(tenant=target, dry_run=dry_run, max_threads=limit, via=AuditRecord.Interface.COMMAND)
        if as_json:
            self.stdout.write(json.dumps({
                "dry_run": report.dry_run, "threads": report.threads, "rows": report.rows,
                "rows_by_table": report.rows_by_table, "tenants": report.tenants, "contracts": report.contracts,
                "skipped": report.skipped,
            }))
            return
        verb = "would delete" if dry_run else "deleted"
        tables = ", ".join(f"{table} {count}" for table, count in sorted(report.rows_by_table.items())) or "no rows"
        self.stdout.write(f"{verb} the checkpoints of {report.threads} thread(s): {report.rows} rows ({tables})")
        for slug, figures in sorted(report.tenants.items()):
            self.stdout.write(f"  {slug}: {figures['threads']} thread(s), {figures['rows']} rows")
        for item in report.skipped:
            self.stdout.write(f"  left alone: contract {item['contract']}: {item['reason']}")

