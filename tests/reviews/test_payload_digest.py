"""A decision is bound to what the reviewer saw: each task keeps the digest of the
interrupt value it shows, and a resume through any interface is refused (409) when the
thread's live interrupt no longer matches it, or the client saw another version."""

from __future__ import annotations

import hashlib
import importlib
import json

import pytest

from config.api_errors import Conflict
from contracts.graph import runner
from reviews.models import ReviewTask
from reviews.services import review_task_resume
from tenants.models import AuditRecord
from tests.api_flow import pending, resume, submit
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def tasks(acme):
    return pending(submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT))


def test_each_task_keeps_the_digest_of_the_canonical_json_it_shows(tasks):
    for task in tasks.values():
        canonical = json.dumps(task.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert task.payload_digest == hashlib.sha256(canonical.encode()).hexdigest()
    # The migration that filled the digest in for older tasks computes the same.
    migration = importlib.import_module("reviews.migrations.0008_review_task_payload_digest")
    assert all(migration._digest(task.payload) == task.payload_digest for task in tasks.values())


def test_the_task_detail_shows_it_and_sends_it_as_etag(acme, tasks):
    legal = tasks["legal"]
    detail = acme.reviewer.client.get(acme.url(f"reviews/{legal.pk}/"))
    assert detail.json()["payload_digest"] == legal.payload_digest
    assert detail["ETag"] == f'"{legal.payload_digest}"'


def test_a_client_that_saw_another_version_is_refused(acme, tasks):
    legal = tasks["legal"]
    refused = acme.reviewer.client.post(
        acme.url(f"reviews/{legal.pk}/resume/"),
        {"decision": "approve"},
        format="json",
        HTTP_IF_MATCH='"' + "0" * 64 + '"',
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["reason"] == "stale_digest"
    assert ReviewTask.objects.get(pk=legal.pk).status == "pending"
    accepted = acme.reviewer.client.post(
        acme.url(f"reviews/{legal.pk}/resume/"),
        {"decision": "approve"},
        format="json",
        HTTP_IF_MATCH=f'"{legal.payload_digest}"',
    )
    assert accepted.status_code == 202, accepted.content


def test_a_task_whose_interrupt_the_thread_no_longer_asks_is_refused_through_every_interface(acme, tasks):
    legal = tasks["legal"]
    # The thread moved on underneath the task: its state is rewritten as if `analyze`
    # had just run, so the review nodes are due again and no interrupt is pending.
    config = {"configurable": {"thread_id": legal.thread_id}}
    graph = runner.contract_graph()
    graph.update_state(config, {"risk_score": graph.get_state(config).values["risk_score"]}, as_node="analyze")
    assert runner.thread_pending_read(legal.thread_id) == []

    api = resume(acme.reviewer, acme, legal)
    assert api.status_code == 409 and api.json()["error"]["reason"] == "interrupt_gone"
    with pytest.raises(Conflict) as admin:
        review_task_resume(
            tenant=acme.tenant, task_id=legal.pk, user=acme.admin.user, data={"decision": "approve"}, via="admin"
        )
    assert admin.value.extra["reason"] == "interrupt_gone"
    assert ReviewTask.objects.get(pk=legal.pk).status == "pending"
    assert not AuditRecord.objects.filter(tenant=acme.tenant, action="review.resolved").exists()


def test_a_task_that_shows_something_else_than_the_live_interrupt_is_refused(acme, tasks):
    finance = tasks["finance"]
    # What the task shows differs from what the graph asks (say, a payload edited after
    # the fact): a decision on it would answer a question nobody read.
    shown = {**finance.payload, "max_payment": 1.0}
    ReviewTask.objects.filter(pk=finance.pk).update(payload=shown, payload_digest=runner.interrupt_digest(shown))
    refused = resume(acme.reviewer2, acme, ReviewTask.objects.get(pk=finance.pk))
    assert refused.status_code == 409
    assert refused.json()["error"]["reason"] == "interrupt_changed"
    # The other interrupt of the thread is unaffected.
    assert resume(acme.reviewer, acme, tasks["legal"]).status_code == 202


def test_the_digest_is_no_way_around_tenancy_or_permissions(acme, globex, tasks):
    legal = tasks["legal"]
    # Another tenant's member: the task does not exist for them, digest or not.
    assert globex.admin.client.get(globex.url(f"reviews/{legal.pk}/")).status_code == 404
    foreign = globex.admin.client.post(globex.url(f"reviews/{legal.pk}/resume/"), {"decision": "approve"},
                                       format="json", HTTP_IF_MATCH=f'"{legal.payload_digest}"')
    assert foreign.status_code == 404
    # A member who may not decide is refused before any digest is looked at.
    viewer = acme.viewer.client.post(acme.url(f"reviews/{legal.pk}/resume/"), {"decision": "approve"},
                                     format="json", HTTP_IF_MATCH=f'"{legal.payload_digest}"')
    assert viewer.status_code == 403
    assert ReviewTask.objects.get(pk=legal.pk).status == "pending"
