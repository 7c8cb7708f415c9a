"""Task-queue entry points: just another interface, no business logic here."""

from __future__ import annotations

from functools import partial
from uuid import UUID

from django.db import transaction
from django_tasks import task
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.models import DBTaskResult


@task()
def contract_drive_task(tenant_id: str, contract_id: str) -> None:
    # Imported late: contracts.services imports reviews.services, which enqueues this task.
    from contracts.services import contract_drive

    contract_drive(tenant_id=UUID(tenant_id), contract_id=UUID(contract_id))


def drives_queued_in_transaction() -> bool:
    """Whether contract_drive_enqueue writes the drive in the caller's transaction (the
    database backend), so it cannot have run before that commits. Otherwise it is handed
    over at commit, and the immediate backend runs it then, before the caller goes on."""
    return isinstance(contract_drive_task.get_backend(), DatabaseBackend)


def contract_drive_enqueue(*, tenant_id: UUID, contract_id: UUID) -> None:
    """Queue a drive of the contract's thread, seen by workers only once the caller's
    transaction commits, so a worker never looks for rows it cannot see yet.

    With the database backend the queue row is written in the caller's own transaction
    (its NOTIFY goes out at commit): the drive commits or rolls back with the change
    that needs it, and costs no commit of its own. Any other backend is handed the task
    after commit."""
    enqueue = partial(contract_drive_task.enqueue, tenant_id=str(tenant_id), contract_id=str(contract_id))
    if drives_queued_in_transaction():
        enqueue()
    else:
        transaction.on_commit(enqueue)


def contract_drives_waiting() -> list[UUID]:
    """The contracts whose drive is queued and not started yet (the database backend;
    no other backend keeps a queue to look at)."""
    if not drives_queued_in_transaction():
        return []
    waiting = DBTaskResult.objects.ready().filter(task_path=contract_drive_task.module_path)
    return [UUID(args["kwargs"]["contract_id"]) for args in waiting.values_list("args_kwargs", flat=True)]
