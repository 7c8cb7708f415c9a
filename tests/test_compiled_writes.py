"""config.compiled_writes writes what the ORM writes: every column of a create, with
defaults, auto_now times, JSON and foreign keys converted as the ORM converts them; the
named fields of a save(update_fields=...); a skipped conflict; a row that is gone."""

from __future__ import annotations

import uuid

import pytest
from django.db import DatabaseError, IntegrityError, transaction
from django.forms.models import model_to_dict

from config.compiled_writes import CompiledInsert, CompiledUpdate
from contracts.models import Contract
from reviews.models import QueueEvent
from tenants.models import AuditRecord

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

CONTRACT_INSERT = CompiledInsert(Contract)
AUDIT_INSERT = CompiledInsert(AuditRecord)
EVENT_INSERT = CompiledInsert(QueueEvent, ignore_conflicts=True)
LEASE_SAVE = CompiledUpdate(Contract, ["run_lease_owner", "findings", "updated_at"])


def _columns(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def test_a_create_reads_back_as_the_orm_would_have_written_it(acme):
    contract_id = uuid.uuid4()
    made = CONTRACT_INSERT.create(id=contract_id, tenant=acme.tenant, title="NDA", text="Text " * 1000,
                                  thread_id=f"t-{contract_id}", submitted_by=acme.agent.user)
    by_orm = Contract.objects.create(tenant=acme.tenant, title="NDA", text="Text " * 1000, thread_id="t-orm",
                                     submitted_by=acme.agent.user)
    stored, stored_orm = Contract.objects.get(pk=contract_id), Contract.objects.get(pk=by_orm.pk)
    assert _columns(stored) == _columns(made)
    assert made.created_at is not None and made.updated_at is not None  # auto_now_add, auto_now
    differ = {"id", "thread_id", "created_at", "updated_at"}
    assert ({k: v for k, v in model_to_dict(stored).items() if k not in differ}
            == {k: v for k, v in model_to_dict(stored_orm).items() if k not in differ})
    assert stored.findings == [] and stored.analysis == {} and stored.submitted_by_id == acme.agent.user.pk
    assert not made._state.adding and made._state.db == "default"


def test_an_auto_increment_key_comes_back_from_the_insert(acme):
    first = AUDIT_INSERT.create(tenant=acme.tenant, actor=acme.admin.user, actor_username="acme-admin",
                                action="x.done", interface="api", target_type="contract", target_id="1",
                                data={"nested": {"list": [1, "two", None]}, "text": "it's \"quoted\" %s"})
    second = AUDIT_INSERT.create(tenant=acme.tenant, actor=None, action="x.done", interface="system",
                                 target_type="contract", target_id="2")
    assert isinstance(first.pk, int) and second.pk > first.pk
    stored = AuditRecord.objects.get(pk=first.pk)
    assert stored.data == {"nested": {"list": [1, "two", None]}, "text": "it's \"quoted\" %s"}
    assert stored.actor_id == acme.admin.user.pk and stored.created_at == first.created_at
    assert AuditRecord.objects.get(pk=second.pk).data == {}  # the field's default


def test_a_conflict_is_skipped_only_when_asked(acme):
    event = EVENT_INSERT.create(tenant=acme.tenant, seq=10_001, type="review.created", data={"a": 1})
    assert event is not None and QueueEvent.objects.filter(tenant=acme.tenant, seq=10_001).count() == 1
    assert EVENT_INSERT.create(tenant=acme.tenant, seq=10_001, type="review.created", data={"a": 2}) is None
    assert QueueEvent.objects.get(tenant=acme.tenant, seq=10_001).data == {"a": 1}
    with pytest.raises(IntegrityError), transaction.atomic():
        CompiledInsert(QueueEvent).create(tenant=acme.tenant, seq=10_001, type="review.created", data={})


def test_a_save_writes_the_named_fields_and_nothing_else(acme):
    contract = Contract.objects.create(tenant=acme.tenant, title="Old", text="x", thread_id="t-save")
    before = contract.updated_at
    contract.title = "changed in memory only"
    contract.run_lease_owner, contract.findings = "owner-1", [{"rule": "uncapped_liability", "quote": "100%"}]
    LEASE_SAVE.save(contract)
    stored = Contract.objects.get(pk=contract.pk)
    assert stored.run_lease_owner == "owner-1" and stored.findings == contract.findings
    assert stored.title == "Old"
    assert contract.updated_at > before and stored.updated_at == contract.updated_at


def test_a_save_of_a_row_that_is_gone_fails_as_the_orms_does(acme):
    contract = Contract.objects.create(tenant=acme.tenant, title="Gone", text="x", thread_id="t-gone")
    Contract.objects.filter(pk=contract.pk).delete()
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        LEASE_SAVE.save(contract)
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        contract.save(update_fields=["run_lease_owner"])


def test_a_model_with_save_receivers_is_refused_unless_its_caller_does_their_work(acme):
    from django_tasks_db.models import DBTaskResult  # upstream fills run_after in a pre_save receiver

    with pytest.raises(ValueError, match="save signal receivers"):
        CompiledInsert(DBTaskResult).create(args_kwargs={}, task_path="x.y", queue_name="default",
                                            backend_name="default", run_after=None)
    assert not DBTaskResult.objects.exists()


def test_behind_a_transaction_pooler_the_sql_itself_is_sent(acme, settings, django_assert_num_queries):
    settings.DATABASE_PREPARED_STATEMENTS = False
    insert = CompiledInsert(AuditRecord)
    with django_assert_num_queries(1) as ran:
        record = insert.create(tenant=acme.tenant, action="x.done", interface="api", target_type="contract", target_id="1")
    [sql] = [q["sql"] for q in ran.captured_queries]
    assert sql.startswith('INSERT INTO "tenants_auditrecord"') and AuditRecord.objects.filter(pk=record.pk).exists()
