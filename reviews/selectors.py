from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from config.api_errors import NotFound
from reviews.models import ReviewTask
from tenants.models import Tenant


def review_task_list(*, tenant: Tenant, status: str | None = None) -> QuerySet[ReviewTask]:
    tasks = ReviewTask.objects.filter(tenant=tenant).select_related("contract")
    if status:
        tasks = tasks.filter(status=status)
    return tasks


def review_task_get(*, tenant: Tenant, task_id: UUID | str) -> ReviewTask:
    task = ReviewTask.objects.filter(tenant=tenant, pk=task_id).select_related("contract").first()
    if task is None:
        raise NotFound()
    return task
