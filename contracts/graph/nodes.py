"""The nodes of the contract-review graph.

A node that calls `interrupt()` re-runs from its first line on resume, and resuming one
of several pending interrupts re-runs *every* interrupted node up to its interrupt. So
everything before an `interrupt()` here is a pure function of the state: no I/O, no
clock, no randomness.
"""

from __future__ import annotations

from langgraph.types import interrupt

from contracts.graph.analyzer import analyze_text, risk_score_of
from contracts.graph.analyzer.rules import RULES
from contracts.graph.decisions import DECISION_MODELS, DECISION_SCHEMAS, OPTIONS
from contracts.graph.state import ContractState

PREVIEW_CHARS = 200

# Rules about a clause that is there (all but a missing governing-law clause): one of
# these alone is what "review any clause finding" sends to legal review.
CLAUSE_RULES = frozenset(rule.name for rule in RULES if not rule.fires_when_absent)

# Which kind of review task each interrupting node produces.
NODE_KINDS = {"legal_review": "legal", "finance_review": "finance", "signoff_review": "signoff"}


def analyze(state: ContractState) -> dict:
    """The rules always; the LLM as well when the run was started with it. Never
    interrupts, so it runs once per thread and its result is checkpointed: the LLM's
    answer, which a second call could change, is never recomputed."""
    text = state["contract_text"]
    analysis = analyze_text(text)
    findings = analysis.findings
    analyzer = state.get("risk_analyzer", "rules")
    record: dict = {"analyzer": analyzer, "sources": ["rules"], "fallback": None}
    if analyzer == "llm":
        from django.conf import settings

        from contracts.graph.analyzer.llm import findings_with_llm

        findings, outcome = findings_with_llm(text, findings, timeout=settings.RISK_LLM_TIMEOUT_SECONDS)
        record.update(outcome)
    risk_score = risk_score_of(findings)
    record.update(
        {
            "unsure_reasons": analysis.unsure_reasons,
            "legal_review_because": _legal_review_because(state, risk_score, findings, analysis.unsure_reasons),
            "stats": analysis.stats,
        }
    )
    return {
        "risk_score": risk_score,
        "findings": findings,
        "payments": analysis.payments,
        "max_payment": analysis.max_payment,
        "analysis": record,
    }


def _legal_review_because(state: ContractState, risk_score: float, findings: list[dict], unsure: list[dict]) -> str | None:
    """Why the contract goes to legal review, decided once, here: "risk_score" (above the
    tenant's threshold), "clause_finding" (the tenant reviews every one), "unsure" (the
    tenant reviews what the analyser cannot vouch for), or None."""
    if risk_score > state["risk_threshold"]:
        return "risk_score"
    if state.get("review_any_clause_finding") and any(f["rule"] in CLAUSE_RULES for f in findings):
        return "clause_finding"
    if state.get("review_when_unsure") and unsure:
        return "unsure"
    return None


def needs_legal_review(state: ContractState) -> bool:
    # Threads analysed before `analysis` existed have only the score.
    because = state.get("analysis", {}).get("legal_review_because")
    return because is not None or state["risk_score"] > state["risk_threshold"]


def needs_finance_review(state: ContractState) -> bool:
    return state["max_payment"] >= state["finance_limit"]


def route_reviews(state: ContractState) -> list[str]:
    """Fan out: legal and finance review run in parallel when both apply."""
    branches = []
    if needs_legal_review(state):
        branches.append("legal_review")
    if needs_finance_review(state):
        branches.append("finance_review")
    return branches or ["finalize"]


def _recommendation(state: ContractState) -> str:
    analysis = state.get("analysis", {})
    because = analysis.get("legal_review_because")
    if because == "unsure":
        reasons = "; ".join(reason["message"] for reason in analysis["unsure_reasons"])
        return f"UNSURE - the analyser cannot vouch for its reading, legal review required: {reasons}"
    if because == "clause_finding":
        titles = ", ".join(f["title"] for f in state["findings"] if f["rule"] in CLAUSE_RULES)
        return f"FLAGGED CLAUSE - {titles}: legal review required"
    if state["risk_score"] >= state["critical_risk"]:
        return "CRITICAL RISK - legal review and independent sign-off required"
    return "HIGH RISK - Legal review required"


def _history_entry(kind: str, decision: dict) -> dict:
    return {
        "kind": kind,
        "decision": decision["decision"],
        "amendments": decision.get("amendments", []),
        "comment": decision.get("comment", ""),
        "decided_by": decision.get("decided_by"),
        "decided_by_username": decision.get("decided_by_username"),
        "decided_at": decision.get("decided_at"),
        "task_id": decision.get("task_id"),
    }


def _validated(kind: str, answer: dict) -> dict:
    """The resume value against the full decision model (the client's fields and what
    the service recorded). The published schema is a plain dict, which LangGraph does
    not validate, so the node does; the service validated the client's part already."""
    return DECISION_MODELS[kind].model_validate(answer).model_dump()


def legal_review(state: ContractState) -> dict:
    answer = interrupt(
        {
            "kind": "legal",
            "contract_preview": state["contract_text"][:PREVIEW_CHARS],
            "risk_score": state["risk_score"],
            "findings": state["findings"],
            "recommendation": _recommendation(state),
            "unsure_reasons": state.get("analysis", {}).get("unsure_reasons", []),
            "options": OPTIONS["legal"],
        },
        response_schema=DECISION_SCHEMAS["legal"],
    )
    decision = _validated("legal", answer)
    return {"legal_decision": decision, "history": [_history_entry("legal", decision)]}


def finance_review(state: ContractState) -> dict:
    large = [p for p in state["payments"] if p["amount"] >= state["finance_limit"]]
    answer = interrupt(
        {
            "kind": "finance",
            "contract_preview": state["contract_text"][:PREVIEW_CHARS],
            "risk_score": state["risk_score"],
            "payments": large,
            "max_payment": state["max_payment"],
            "finance_limit": state["finance_limit"],
            "recommendation": "Payment commitment at or above the finance limit - finance approval required",
            "options": OPTIONS["finance"],
        },
        response_schema=DECISION_SCHEMAS["finance"],
    )
    decision = _validated("finance", answer)
    return {"finance_decision": decision, "history": [_history_entry("finance", decision)]}


def route_after_reviews(state: ContractState) -> str:
    legal = state.get("legal_decision")
    if legal and legal["decision"] == "approve" and state["risk_score"] >= state["critical_risk"]:
        return "signoff_review"
    if legal and legal["decision"] == "amend":
        return "amend"
    return "finalize"


def reviews_done(state: ContractState) -> dict:
    """Join point: runs once, after every parallel review of the step has its answer."""
    return {}


def signoff_review(state: ContractState) -> dict:
    first = state["legal_decision"]
    answer = interrupt(
        {
            "kind": "signoff",
            "contract_preview": state["contract_text"][:PREVIEW_CHARS],
            "risk_score": state["risk_score"],
            "findings": state["findings"],
            "recommendation": "Critical risk approved by legal - a second, different reviewer must sign off",
            "first_signer": {"user_id": first.get("decided_by"), "username": first.get("decided_by_username")},
            "options": OPTIONS["signoff"],
        },
        response_schema=DECISION_SCHEMAS["signoff"],
    )
    decision = _validated("signoff", answer)
    return {"signoff_decision": decision, "history": [_history_entry("signoff", decision)]}


def amend(state: ContractState) -> dict:
    amendments = state["legal_decision"]["amendments"]
    numbered = "\n".join(f"{i}. {text}" for i, text in enumerate(amendments, start=1))
    return {
        "amendments": amendments,
        "amended_text": f"{state['contract_text'].rstrip()}\n\nAMENDMENTS\n{numbered}\n",
    }


def finalize(state: ContractState) -> dict:
    decisions = [state.get(k) for k in ("legal_decision", "finance_decision", "signoff_decision")]
    decisions = [d for d in decisions if d]
    if not decisions:
        outcome = "auto_approved"
    elif any(d["decision"] == "reject" for d in decisions):
        outcome = "rejected"
    elif state.get("amendments"):
        outcome = "amended"
    else:
        outcome = "approved"
    return {"human_decision": outcome}
