"""Recovery: re-drive every contract whose thread and database may disagree.

Re-creates review tasks for interrupted threads that lack them (a crash between the
checkpoint and the task insert), applies decisions that were recorded but never
resumed (each exactly once), and restarts runs that never started or failed."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from contracts.services import contracts_reconcile
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Re-create missing review tasks and re-drive unapplied decisions."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant's slug (default: every tenant).")

    def handle(self, *args, **options):
        tenant = None
        if options["tenant"]:
            tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"--tenant: no tenant with slug {options['tenant']!r}")
        count = contracts_reconcile(tenant=tenant)
        self.stdout.write(f"reconciled {count} contract(s)")
