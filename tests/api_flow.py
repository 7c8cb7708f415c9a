"""A contract through the API as a client drives it, with the on-commit work (the graph
run, on the immediate task backend) executed inline, inside a test's transaction."""

from __future__ import annotations

from django.test import TestCase

from contracts.models import Contract
from reviews.models import ReviewTask


def submit(world, text: str, title: str = "Contract") -> Contract:
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = world.agent.client.post(world.url("contracts/"), {"title": title, "text": text}, format="json")
    assert response.status_code == 202, response.content
    return Contract.objects.get(pk=response.json()["id"])


def pending(contract: Contract) -> dict[str, ReviewTask]:
    return {t.kind: t for t in ReviewTask.objects.filter(contract=contract, status="pending")}


def resume(member, world, task: ReviewTask, body: dict | None = None):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return member.client.post(world.url(f"reviews/{task.pk}/resume/"), body or {"decision": "approve"},
                                  format="json")
