"""Through the API: clauses the first analyser waved through now reach a reviewer; a
contract the analyser cannot vouch for goes to legal review with the reason recorded;
both are tenant settings. Immediate task backend, so each submit runs the graph."""

from __future__ import annotations

import pytest

from tests.api_flow import pending, submit
from tests.contracts.corpus.contracts import HARMLESS_SERVICES_AGREEMENT, LONG_HARMLESS_CONTRACT, PARAPHRASED_RISKS

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def detail(world, contract) -> dict:
    response = world.viewer.client.get(world.url(f"contracts/{contract.pk}/"))
    assert response.status_code == 200
    return response.json()


def test_the_harmless_contract_alone_is_auto_approved(acme):
    contract = submit(acme, HARMLESS_SERVICES_AGREEMENT.format(clause=""))
    assert contract.status == "auto_approved" and contract.findings == []
    assert pending(contract) == {}
    analysis = detail(acme, contract)["analysis"]
    assert analysis["legal_review_because"] is None and analysis["unsure_reasons"] == []


@pytest.mark.parametrize(("clause", "rule"), PARAPHRASED_RISKS, ids=[rule for _, rule in PARAPHRASED_RISKS])
def test_a_paraphrased_risky_clause_in_a_harmless_contract_leads_to_a_review_task(acme, clause, rule):
    text = HARMLESS_SERVICES_AGREEMENT.format(clause=clause)
    contract = submit(acme, text)
    assert contract.status == "waiting_for_review"
    task = pending(contract)["legal"]
    [finding] = task.payload["findings"]
    assert finding["rule"] == rule
    # The span highlights words of the clause itself.
    assert text.index(clause) <= finding["start"] < finding["end"] <= text.index(clause) + len(clause)
    assert task.payload["recommendation"].startswith("FLAGGED CLAUSE")
    assert detail(acme, contract)["analysis"]["legal_review_because"] == "clause_finding"


def test_with_review_any_clause_finding_off_only_the_score_routes(acme):
    acme.tenant.review_any_clause_finding = False
    acme.tenant.save()
    clause, rule = PARAPHRASED_RISKS[3]  # auto-renewal alone: 0.2, under the 0.7 threshold
    contract = submit(acme, HARMLESS_SERVICES_AGREEMENT.format(clause=clause))
    assert contract.status == "auto_approved"
    assert [f["rule"] for f in contract.findings] == [rule]


def test_there_is_no_governing_law_is_counted_as_missing(acme):
    sentence = "There is no governing law for this agreement."
    text = HARMLESS_SERVICES_AGREEMENT.format(clause="").replace(
        "7. Governing law. This Agreement is governed by the laws of England and Wales.", sentence
    )
    contract = submit(acme, text)
    [finding] = contract.findings
    assert (finding["rule"], finding["excerpt"]) == ("missing_governing_law", sentence)
    # A missing governing-law clause alone (0.15) is not a clause to review on sight.
    assert contract.status == "auto_approved"


def test_a_long_contract_without_findings_goes_to_legal_review_with_the_reason(acme):
    contract = submit(acme, LONG_HARMLESS_CONTRACT)
    assert contract.status == "waiting_for_review"
    assert contract.risk_score == 0.0
    task = pending(contract)["legal"]
    assert task.payload["recommendation"].startswith("UNSURE")
    assert [r["code"] for r in task.payload["unsure_reasons"]] == ["long_text_without_findings"]
    analysis = detail(acme, contract)["analysis"]
    assert analysis["legal_review_because"] == "unsure"
    assert [r["code"] for r in analysis["unsure_reasons"]] == ["long_text_without_findings"]
    assert analysis["stats"]["words"] > 800


def test_a_text_in_another_language_goes_to_legal_review(acme):
    text = "Der Lieferant haftet unbeschr\u00e4nkt f\u00fcr alle Sch\u00e4den aus diesem Vertrag. " * 10
    contract = submit(acme, text)
    assert contract.status == "waiting_for_review"
    assert "not_english_prose" in [r["code"] for r in contract.analysis["unsure_reasons"]]


def test_with_review_when_unsure_off_the_reason_is_recorded_but_the_contract_passes(acme):
    acme.tenant.review_when_unsure = False
    acme.tenant.save()
    contract = submit(acme, LONG_HARMLESS_CONTRACT)
    assert contract.status == "auto_approved"
    assert contract.analysis["legal_review_because"] is None
    assert [r["code"] for r in contract.analysis["unsure_reasons"]] == ["long_text_without_findings"]


def test_new_tenants_review_when_unsure_and_every_clause_finding(acme):
    assert acme.tenant.review_when_unsure is True
    assert acme.tenant.review_any_clause_finding is True
