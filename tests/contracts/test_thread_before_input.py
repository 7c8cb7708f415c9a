"""A thread before its contract (the LangGraph SDK's threads.create, then a run with the
input): a contract in `created`, which nothing may drive until its input arrives."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from config.api_errors import Conflict
from contracts.graph import runner
from contracts.models import Contract, ContractStatus
from contracts.services import (
    contract_cancel,
    contract_drive,
    contract_input_submit,
    contract_thread_create,
    contracts_recover,
)
from tests.factories import HIGH_RISK_TEXT
from tests.support import graph_runs_spy

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def created(acme) -> Contract:
    return contract_thread_create(tenant=acme.tenant, created_by=acme.agent.user, metadata={"source": "sdk"})


def test_a_created_thread_is_never_driven(acme, created, monkeypatch):
    runs = graph_runs_spy(monkeypatch)
    contract_drive(tenant_id=acme.tenant.id, contract_id=created.pk)
    created.refresh_from_db()
    assert runs == []
    assert created.status == ContractStatus.CREATED
    assert (created.run_lease_owner, created.run_lease_until) == ("", None)
    assert not runner.thread_snapshot(created.thread_id).exists


def test_recovery_leaves_a_created_thread_alone_however_old(acme, created):
    Contract.objects.filter(pk=created.pk).update(updated_at=timezone.now() - timedelta(days=30))
    assert created.pk not in contracts_recover(now=timezone.now() + timedelta(days=1))


def test_its_input_submits_it_once(acme, created):
    with TestCase.captureOnCommitCallbacks(execute=True):
        contract_input_submit(
            tenant=acme.tenant, contract_id=created.pk, submitted_by=acme.agent.user, title="MSA", text=HIGH_RISK_TEXT
        )
    created.refresh_from_db()
    assert created.status == ContractStatus.WAITING_FOR_REVIEW
    assert (created.title, created.thread_metadata) == ("MSA", {"source": "sdk"})
    with pytest.raises(Conflict) as again:
        contract_input_submit(
            tenant=acme.tenant, contract_id=created.pk, submitted_by=acme.agent.user, title="Other", text=HIGH_RISK_TEXT
        )
    assert again.value.extra["reason"] == "input_given"


def test_a_created_thread_cancelled_never_starts_its_graph(acme, created, monkeypatch):
    runs = graph_runs_spy(monkeypatch)
    with TestCase.captureOnCommitCallbacks(execute=True):
        contract_cancel(tenant=acme.tenant, contract_id=created.pk, user=acme.admin.user, via="api")
    created.refresh_from_db()
    assert created.status == ContractStatus.CANCELLED
    assert runs == []


def test_a_thread_id_taken_here_or_elsewhere_is_the_same_conflict(acme, globex, created):
    for tenant in (acme.tenant, globex.tenant):
        with pytest.raises(Conflict) as taken:
            contract_thread_create(tenant=tenant, created_by=acme.agent.user, metadata={}, contract_id=created.pk)
        assert (taken.value.message, taken.value.extra) == (
            "A thread with this id exists already.",
            {"reason": "thread_exists"},
        )


def test_the_rest_api_shows_it_as_created(acme, globex, created):
    listed = acme.viewer.client.get(acme.url("contracts/?run_state=created")).json()["results"]
    assert [(c["id"], c["status"], c["run_state"]) for c in listed] == [(str(created.pk), "created", "created")]
    assert globex.admin.client.get(globex.url(f"contracts/{created.pk}/")).status_code == 404


def test_only_a_tenant_admin_cancels_a_created_thread_and_only_in_its_tenant(acme, globex, created):
    from config.api_errors import Forbidden, NotFound

    with pytest.raises(Forbidden):
        contract_cancel(tenant=acme.tenant, contract_id=created.pk, user=acme.reviewer.user, via="api")
    with pytest.raises(NotFound):
        contract_cancel(tenant=globex.tenant, contract_id=created.pk, user=globex.admin.user, via="api")
    with pytest.raises(NotFound):
        contract_input_submit(tenant=globex.tenant, contract_id=created.pk, submitted_by=globex.agent.user,
                              title="MSA", text=HIGH_RISK_TEXT)
    created.refresh_from_db()
    assert created.status == ContractStatus.CREATED
