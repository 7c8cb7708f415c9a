"""The optional LLM analyser with LangChain's fake chat models (no network): its
findings merge with the rules' (either counts, the higher weight wins), and a failure
or a timeout falls back to the rules and says so on the contract."""

from __future__ import annotations

import json
import threading

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from contracts.graph.analyzer import analyze_text
from contracts.graph.analyzer import llm as llm_module
from contracts.graph.analyzer.llm import findings_merge, findings_with_llm
from tests.api_flow import pending, submit
from tests.factories import LOW_RISK_TEXT

pytestmark = pytest.mark.embedded

UNCAPPED = "Supplier shall have unlimited liability for any breach."
# The rules miss this wording; a model may not.
SUBTLE_INDEMNITY = "Customer shall make Supplier whole for everything that ever goes wrong."
TEXT = f"SERVICES AGREEMENT. This agreement is governed by the laws of England. {UNCAPPED} {SUBTLE_INDEMNITY}"


def answering(*findings: dict) -> FakeListChatModel:
    """A fake model that answers once with these findings, as JSON (it has no tool
    calling, so the analyser asks for JSON and parses it with the same schema)."""
    return FakeListChatModel(responses=[json.dumps({"findings": list(findings)})])


class _BlockedModel(FakeListChatModel):
    """Answers only once `release` is set: a provider that hangs."""

    def _call(self, *args, **kwargs) -> str:
        _RELEASE.wait()
        return json.dumps({"findings": []})


_RELEASE = threading.Event()


@pytest.fixture
def release_blocked_calls():
    _RELEASE.clear()
    yield
    _RELEASE.set()  # the abandoned call's thread ends


def test_llm_findings_are_merged_with_the_rules():
    rules = analyze_text(TEXT).findings
    assert [f["rule"] for f in rules] == ["uncapped_liability"]
    model = answering(
        {"rule": "uncapped_liability", "weight": 0.5, "excerpt": UNCAPPED},  # lower than the rule's 0.55
        {"rule": "broad_indemnification", "weight": 0.45, "excerpt": SUBTLE_INDEMNITY},
    )
    merged, outcome = findings_with_llm(TEXT, rules, timeout=30, model_factory=lambda: model)
    assert outcome == {"sources": ["rules", "llm"], "fallback": None, "llm_findings": 2}
    by_rule = {f["rule"]: f for f in merged}
    assert set(by_rule) == {"uncapped_liability", "broad_indemnification"}
    assert by_rule["uncapped_liability"] == rules[0]  # the higher weight (the rule's) wins
    indemnity = by_rule["broad_indemnification"]
    assert (indemnity["source"], indemnity["weight"], indemnity["title"]) == ("llm", 0.45, "Broad indemnification")
    # The model's excerpt is found in the text: it gets a span for highlighting.
    assert TEXT[indemnity["start"] : indemnity["end"]] == SUBTLE_INDEMNITY


def test_the_higher_weight_wins_either_way():
    rule = {"rule": "auto_renewal", "weight": 0.2, "source": "rules"}
    model_view = {"rule": "auto_renewal", "weight": 0.6, "source": "llm"}
    assert findings_merge([rule], [model_view]) == [model_view]
    assert findings_merge([model_view], [rule]) == [model_view]


def test_an_excerpt_the_model_made_up_keeps_no_span():
    model = answering({"rule": "penalty_clause", "weight": 0.3, "excerpt": "Words that are not in the contract."})
    merged, _ = findings_with_llm(TEXT, [], timeout=30, model_factory=lambda: model)
    assert [(f["rule"], f["start"], f["end"]) for f in merged] == [("penalty_clause", -1, -1)]


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(FakeListChatModel(responses=["I cannot help with contracts."]), id="not-json"),
        pytest.param(FakeListChatModel(responses=['{"findings": [{"rule": "no_such_rule", "weight": 2}]}']), id="bad-shape"),
    ],
)
def test_an_unusable_answer_falls_back_to_the_rules(model):
    rules = analyze_text(TEXT).findings
    merged, outcome = findings_with_llm(TEXT, rules, timeout=30, model_factory=lambda: model)
    assert merged == rules
    assert outcome["sources"] == ["rules"] and outcome["fallback"]["reason"] == "error"


def test_a_model_that_cannot_be_built_falls_back_to_the_rules():
    def broken_factory():
        raise ImportError("No module named 'langchain_openai'")

    rules = analyze_text(TEXT).findings
    merged, outcome = findings_with_llm(TEXT, rules, timeout=30, model_factory=broken_factory)
    assert merged == rules
    assert outcome["fallback"] == {"reason": "error", "detail": "ImportError: No module named 'langchain_openai'"}


def test_a_hung_model_times_out_and_the_rules_stand(release_blocked_calls):
    rules = analyze_text(TEXT).findings
    merged, outcome = findings_with_llm(TEXT, rules, timeout=0.05, model_factory=lambda: _BlockedModel(responses=[""]))
    assert merged == rules
    assert outcome["fallback"]["reason"] == "timeout"


# --- Through the API, RISK_ANALYZER=llm ----------------------------------------------------


@pytest.fixture
def llm_analyzer(settings, monkeypatch):
    """RISK_ANALYZER=llm with the model `use(model)` names instead of init_chat_model's."""
    settings.RISK_ANALYZER = "llm"
    chosen: dict = {}
    monkeypatch.setattr(llm_module, "risk_chat_model", lambda: chosen["model"])

    def use(model) -> None:
        chosen["model"] = model

    return use


@pytest.mark.django_db
def test_llm_findings_reach_the_contract_and_its_review(acme, llm_analyzer):
    llm_analyzer(
        answering(
            {"rule": "uncapped_liability", "weight": 0.6, "excerpt": UNCAPPED},
            {"rule": "broad_indemnification", "weight": 0.5, "excerpt": SUBTLE_INDEMNITY},
        )
    )
    contract = submit(acme, TEXT)
    # Rules alone: 0.55. Merged: the model's higher 0.6 and its indemnity 0.5 -> 0.8.
    assert contract.risk_score == pytest.approx(0.8)
    assert {(f["rule"], f["source"]) for f in contract.findings} == {
        ("uncapped_liability", "llm"), ("broad_indemnification", "llm"),
    }
    assert pending(contract)["legal"].payload["recommendation"] == "HIGH RISK - Legal review required"
    body = acme.viewer.client.get(acme.url(f"contracts/{contract.pk}/")).json()
    assert body["analysis"]["analyzer"] == "llm"
    assert body["analysis"]["sources"] == ["rules", "llm"]
    assert body["analysis"]["fallback"] is None


@pytest.mark.django_db
def test_an_llm_timeout_falls_back_to_the_rules_and_says_so_on_the_contract(
    acme, llm_analyzer, settings, release_blocked_calls
):
    settings.RISK_LLM_TIMEOUT_SECONDS = 0.05
    llm_analyzer(_BlockedModel(responses=[""]))
    contract = submit(acme, TEXT)
    assert contract.findings == analyze_text(TEXT).findings
    assert contract.risk_score == pytest.approx(0.55)
    body = acme.viewer.client.get(acme.url(f"contracts/{contract.pk}/")).json()
    assert body["analysis"]["sources"] == ["rules"]
    assert body["analysis"]["fallback"]["reason"] == "timeout"
    assert "no answer within 0.05 s" in body["analysis"]["fallback"]["detail"]
    # The rules' finding still routes it: a model that hangs never lets a risk through.
    assert body["status"] == "waiting_for_review"


@pytest.mark.django_db
def test_with_the_rules_analyser_no_model_is_built(acme, monkeypatch):
    def no_model():
        raise AssertionError("the rules analyser must never build a chat model")

    monkeypatch.setattr(llm_module, "risk_chat_model", no_model)
    contract = submit(acme, LOW_RISK_TEXT)
    assert contract.status == "auto_approved"
    assert contract.analysis["analyzer"] == "rules" and contract.analysis["fallback"] is None


def test_the_model_comes_from_init_chat_model_and_a_missing_integration_falls_back(settings):
    # No provider integration is installed by default: init_chat_model says which one
    # is missing, and the analysis goes on with the rules, saying why.
    settings.RISK_LLM_MODEL, settings.RISK_LLM_PROVIDER = "gpt-4o-mini", "openai"
    with pytest.raises(ImportError, match="langchain-openai"):
        llm_module.risk_chat_model()
    rules = analyze_text(TEXT).findings
    merged, outcome = findings_with_llm(TEXT, rules, timeout=30)
    assert merged == rules
    assert outcome["fallback"]["reason"] == "error" and "langchain-openai" in outcome["fallback"]["detail"]
