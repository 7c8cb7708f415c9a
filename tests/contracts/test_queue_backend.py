"""contracts.queue_backend writes the queue row upstream's DatabaseBackend writes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.models import DBTaskResult, get_date_max

from contracts.queue_backend import QueueBackend
from contracts.tasks import contract_drive_task

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _rows(backend_class, task) -> dict:
    backend = backend_class("default", {})
    result = backend.enqueue(task, (), {"tenant_id": "t-1", "contract_id": "c-1"})
    row = DBTaskResult.objects.get(pk=result.id)
    assert result.status == row.status == "READY"
    return {k: v for k, v in model_to_dict(row).items() if k not in {"id", "enqueued_at"}}


@pytest.mark.parametrize("later", [False, True])
def test_the_same_row_as_upstreams(later, settings):
    settings.TASKS = {"default": {"BACKEND": "contracts.queue_backend.QueueBackend"}}  # tests run tasks inline
    task = contract_drive_task.using(run_after=timezone.now() + timedelta(hours=1)) if later else contract_drive_task
    ours, upstream = _rows(QueueBackend, task), _rows(DatabaseBackend, task)
    assert ours == upstream
    assert (ours["run_after"] == get_date_max()) is not later
