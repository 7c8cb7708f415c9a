"""Malformed input is a clear 400 naming the field, and writes nothing: no decision, no
contract, no queued run, no checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings as django_settings
from django_tasks_db.models import DBTaskResult

from contracts.graph.runner import thread_snapshot
from contracts.models import Contract
from reviews.models import ReviewTask
from tests.factories import HIGH_RISK_LARGE_PAYMENT_TEXT, HIGH_RISK_TEXT
from tests.support import checkpoint_trail, fast_passwords

# Rejected input commits nothing, so each test runs in one rolled-back transaction
# (much faster than a flush per test). Every request goes through `send`, which runs
# what the request scheduled on commit exactly as a real commit would: a request that
# queued a run would leave a DBTaskResult row, and is caught.
pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

# The queue is the database while bad input is sent, so anything queued leaves a row.
DATABASE_BACKEND = {"default": {"BACKEND": "contracts.queue_backend.QueueBackend"}}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    fast_passwords(settings)


@dataclass
class Sent:
    response: Any
    on_commit: list  # callbacks the request scheduled (and that were run)


@pytest.fixture
def send(django_capture_on_commit_callbacks) -> Callable[..., Sent]:
    def post(member, url: str, body: Any = None, *, raw: str | None = None) -> Sent:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            if raw is not None:
                response = member.client.post(url, raw, content_type="application/json")
            else:
                response = member.client.post(url, body, format="json")
        return Sent(response, callbacks)

    return post


@pytest.fixture
def waiting(acme, settings, send):
    """A contract waiting for a legal and a finance review (run by the immediate
    backend), then the queue switched to the database."""
    sent = send(acme.agent, acme.url("contracts/"), {"title": "MSA", "text": HIGH_RISK_LARGE_PAYMENT_TEXT})
    assert sent.response.status_code == 202, sent.response.content
    tasks = {task.kind: task for task in ReviewTask.objects.filter(contract_id=sent.response.json()["id"])}
    assert set(tasks) == {"legal", "finance"}
    settings.TASKS = DATABASE_BACKEND
    assert DBTaskResult.objects.count() == 0
    return tasks


def assert_bad_request(sent: Sent, *field_names: str) -> dict:
    response = sent.response
    assert response.status_code == 400, (response.status_code, response.content[:500])
    error = response.json()["error"]
    assert error["code"] in {"invalid", "parse_error"}
    assert error["message"]
    for name in field_names:
        assert name in error["fields"], error
        assert all(isinstance(m, str) and m for m in error["fields"][name])
    assert sent.on_commit == []
    return error


def assert_task_untouched(task: ReviewTask, trail_before) -> None:
    fresh = ReviewTask.objects.get(pk=task.pk)
    assert fresh.status == "pending"
    assert fresh.decision is None and fresh.decided_by_id is None and fresh.decided_at is None
    assert fresh.applied_at is None
    assert Contract.objects.get(pk=task.contract_id).status == "waiting_for_review"
    assert DBTaskResult.objects.count() == 0
    assert checkpoint_trail(task.thread_id) == trail_before
    assert task.interrupt_id in {p.id for p in thread_snapshot(task.thread_id).pending}


RESUME_CASES = [
    # (kind, body, field the error must name)
    pytest.param("legal", {"decision": "maybe"}, "decision", id="unknown-decision"),
    pytest.param("legal", {"decision": "APPROVE"}, "decision", id="decision-wrong-case"),
    pytest.param("legal", {"decision": None}, "decision", id="decision-null"),
    pytest.param("legal", {}, "decision", id="decision-missing"),
    pytest.param(
        "legal", {"decision": "amend", "amendments": "cap liability"}, "amendments", id="amendments-not-a-list"
    ),
    pytest.param("legal", {"decision": "amend", "amendments": [1, 2]}, "amendments.0", id="amendments-not-strings"),
    pytest.param("legal", {"decision": "amend"}, "amendments", id="amend-without-amendments"),
    pytest.param("legal", {"decision": "amend", "amendments": []}, "amendments", id="amend-with-empty-list"),
    pytest.param("legal", {"decision": "amend", "amendments": ["   "]}, "amendments", id="amend-blank-amendment"),
    pytest.param("legal", {"decision": "approve", "amendments": ["x"]}, "amendments", id="amendments-with-approve"),
    pytest.param("legal", {"decision": "approve", "comment": 5}, "comment", id="comment-not-a-string"),
    pytest.param("legal", {"decision": "approve", "decided_by": 1}, "decided_by", id="client-sets-decided_by"),
    pytest.param("legal", {"decision": "approve", "status": "resolved"}, "status", id="unknown-field-status"),
    pytest.param("legal", {"decision": "approve", "task_id": "x"}, "task_id", id="client-sets-task_id"),
    pytest.param("finance", {"decision": "amend", "amendments": ["x"]}, "decision", id="finance-cannot-amend"),
    # What PostgreSQL cannot store: NUL in text or JSON.
    pytest.param("legal", {"decision": "approve", "comment": "ok\x00"}, "comment", id="nul-in-comment"),
    pytest.param("legal", {"decision": "amend", "amendments": ["cap \x00 liability"]}, "amendments.0",
                 id="nul-in-amendment"),
    pytest.param("legal", {"decision": "approve", "comm\x00ent": "x"}, "comm\x00ent", id="nul-in-a-field-name"),
]


@pytest.mark.parametrize(("kind", "body", "field"), RESUME_CASES)
def test_bad_decision_is_a_400_naming_the_field_and_writes_nothing(acme, waiting, send, kind, body, field):
    task = waiting[kind]
    member = acme.reviewer2 if kind == "finance" else acme.reviewer
    trail = checkpoint_trail(task.thread_id)

    sent = send(member, acme.url(f"reviews/{task.pk}/resume/"), body)

    assert_bad_request(sent, field)
    assert_task_untouched(task, trail)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        # A lone surrogate is valid JSON and not encodable text.
        pytest.param('{"decision": "approve", "comment": "\\ud800"}', "comment", id="lone-surrogate"),
        pytest.param('{"decision": "approve", "comment": "' + "\\u0000" + '"}', "comment", id="escaped-nul"),
        # 5,000 levels in 10 kB: deeper than Python's JSON parser itself will go.
        pytest.param('{"decision": "approve", "comment": ' + "[" * 5000 + "]" * 5000 + "}", None, id="nested-5000"),
        pytest.param('{"decision": "approve", "comment": ' + "[" * 40 + "]" * 40 + "}", "comment" + ".0" * 31,
                     id="nested-past-the-limit"),
    ],
)
def test_resume_body_postgres_could_not_store_is_a_400(acme, waiting, send, raw, field):
    task = waiting["legal"]
    trail = checkpoint_trail(task.thread_id)
    sent = send(acme.reviewer, acme.url(f"reviews/{task.pk}/resume/"), raw=raw)
    assert_bad_request(sent, *([field] if field else []))
    assert_task_untouched(task, trail)


def test_batch_item_postgres_could_not_store_is_a_400_naming_it(acme, waiting, send):
    legal = waiting["legal"]
    trail = checkpoint_trail(legal.thread_id)
    body = {"items": [{"id": str(legal.pk), "decision": "approve", "comment": "fine\x00"}]}
    sent = send(acme.reviewer, acme.url("reviews/batch-resume/"), body)
    assert_bad_request(sent, "items.0.comment")
    assert_task_untouched(legal, trail)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('["approve"]', id="list"),
        pytest.param('"approve"', id="string"),
        pytest.param("42", id="number"),
        pytest.param("null", id="null"),
    ],
)
def test_resume_body_that_is_not_an_object_is_a_400(acme, waiting, send, raw):
    task = waiting["legal"]
    trail = checkpoint_trail(task.thread_id)
    sent = send(acme.reviewer, acme.url(f"reviews/{task.pk}/resume/"), raw=raw)
    assert_bad_request(sent, "non_field_errors")
    assert_task_untouched(task, trail)


def test_resume_body_that_is_not_json_is_a_400(acme, waiting, send):
    task = waiting["legal"]
    trail = checkpoint_trail(task.thread_id)
    sent = send(acme.reviewer, acme.url(f"reviews/{task.pk}/resume/"), raw='{"decision": "approve"')
    assert_bad_request(sent)
    assert_task_untouched(task, trail)


def test_a_valid_decision_after_the_bad_ones_still_works(acme, waiting, send, settings):
    """The bad requests above leave the task answerable: the control case."""
    task = waiting["legal"]
    send(acme.reviewer, acme.url(f"reviews/{task.pk}/resume/"), {"decision": "maybe"})
    sent = send(acme.reviewer, acme.url(f"reviews/{task.pk}/resume/"), {"decision": "approve"})
    assert sent.response.status_code == 202, sent.response.content
    # The drive is queued (its row is written in the resume's own transaction).
    assert DBTaskResult.objects.count() == 1
    assert ReviewTask.objects.get(pk=task.pk).status == "resolved"


TEXT_LIMIT = django_settings.CONTRACT_TEXT_MAX_CHARS

CREATE_CASES = [
    pytest.param({"text": HIGH_RISK_TEXT}, "title", id="missing-title"),
    pytest.param({"title": "", "text": HIGH_RISK_TEXT}, "title", id="blank-title"),
    pytest.param({"title": "x" * 201, "text": HIGH_RISK_TEXT}, "title", id="title-too-long"),
    pytest.param({"title": "MSA"}, "text", id="missing-text"),
    pytest.param({"title": "MSA", "text": HIGH_RISK_TEXT + "\x00"}, "text", id="nul-in-text"),
    pytest.param({"title": "M\x00SA", "text": HIGH_RISK_TEXT}, "title", id="nul-in-title"),
    pytest.param({"title": "MSA", "text": ""}, "text", id="blank-text"),
    pytest.param({"title": "MSA", "text": "x" * (TEXT_LIMIT + 1)}, "text", id="text-over-the-limit"),
    pytest.param({"title": "MSA", "text": ["a", "b"]}, "text", id="text-not-a-string"),
    pytest.param({"title": "MSA", "text": HIGH_RISK_TEXT, "status": "approved"}, "status", id="unknown-field-status"),
    pytest.param({"title": "MSA", "text": HIGH_RISK_TEXT, "tenant": "globex"}, "tenant", id="unknown-field-tenant"),
]


@pytest.mark.parametrize(("body", "field"), CREATE_CASES)
def test_bad_contract_is_a_400_naming_the_field_and_creates_nothing(acme, settings, send, body, field):
    settings.TASKS = DATABASE_BACKEND
    sent = send(acme.agent, acme.url("contracts/"), body)
    assert_bad_request(sent, field)
    assert Contract.objects.count() == 0
    assert DBTaskResult.objects.count() == 0


def test_text_exactly_at_the_limit_is_accepted(acme, settings, send):
    settings.TASKS = DATABASE_BACKEND  # enqueue only: the point is the validation
    sent = send(acme.agent, acme.url("contracts/"), {"title": "MSA", "text": "x" * TEXT_LIMIT})
    assert sent.response.status_code == 202, sent.response.content[:500]
    assert Contract.objects.count() == 1 and DBTaskResult.objects.count() == 1


@pytest.mark.parametrize("raw", ['["MSA", "text"]', '"MSA"', "null"])
def test_contract_body_that_is_not_an_object_is_a_400(acme, settings, send, raw):
    settings.TASKS = DATABASE_BACKEND
    sent = send(acme.agent, acme.url("contracts/"), raw=raw)
    assert_bad_request(sent, "non_field_errors")
    assert Contract.objects.count() == 0 and DBTaskResult.objects.count() == 0


def test_body_over_the_upload_limit_is_a_413_not_a_500(acme, settings, send):
    settings.TASKS = DATABASE_BACKEND
    text = "x" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    sent = send(acme.agent, acme.url("contracts/"), raw=json.dumps({"title": "MSA", "text": text}))
    assert sent.response.status_code == 413, (sent.response.status_code, sent.response.content[:500])
    assert sent.response.json()["error"]["code"] == "payload_too_large"
    assert sent.on_commit == []
    assert Contract.objects.count() == 0 and DBTaskResult.objects.count() == 0


def test_resume_body_over_the_upload_limit_is_a_413_and_writes_nothing(acme, waiting, send):
    task = waiting["legal"]
    trail = checkpoint_trail(task.thread_id)
    comment = "x" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    raw = json.dumps({"decision": "approve", "comment": comment})
    sent = send(acme.reviewer, acme.url(f"reviews/{task.pk}/resume/"), raw=raw)
    assert sent.response.status_code == 413, (sent.response.status_code, sent.response.content[:500])
    assert sent.response.json()["error"]["code"] == "payload_too_large"
    assert sent.on_commit == []
    assert_task_untouched(task, trail)
