"""Task-queue entry points: just another interface, no business logic here."""

from __future__ import annotations

from functools import partial
from uuid import UUID

from django.db import transaction
from django_tasks import task


@task()
def contract_drive_task(tenant_id: str, contract_id: str) -> None:
    # Imported late: contracts.services imports reviews.services, which enqueues this task.
    from contracts.services import contract_drive

    contract_drive(tenant_id=UUID(tenant_id), contract_id=UUID(contract_id))


def contract_drive_enqueue_on_commit(*, tenant_id: UUID, contract_id: UUID) -> None:
    """Queue a drive of the contract's thread once the current transaction commits, so
    the worker never looks for rows it cannot see yet."""
    transaction.on_commit(
        partial(contract_drive_task.enqueue, tenant_id=str(tenant_id), contract_id=str(contract_id))
    )
