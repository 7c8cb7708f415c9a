"""The nodes of the contract-review graph.

A node that calls `interrupt()` re-runs from its first line on resume, and resuming one
of several pending interrupts re-runs *every* interrupted node up to its interrupt. So
everything before an `interrupt()` here is a pure function of the state: no I/O, no
clock, no randomness.
"""

from __future__ import annotations

from langgraph.types import interrupt

from contracts.graph.analyzer import analyze_text
from contracts.graph.decisions import DECISION_MODELS, DECISION_SCHEMAS, OPTIONS
from contracts.graph.state import ContractState

PREVIEW_CHARS = 200

# Which kind of review task each interrupting node produces.
NODE_KINDS = {"legal_review": "legal", "finance_review": "finance", "signoff_review": "signoff"}


def analyze(state: ContractState) -> dict:
    analysis = analyze_text(state["contract_text"])
    return {
        "risk_score": analysis.risk_score,
        "findings": analysis.findings,
        "payments": analysis.payments,
        "max_payment": analysis.max_payment,
    }


def needs_legal_review(state: ContractState) -> bool:
    return state["risk_score"] > state["risk_threshold"]


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
