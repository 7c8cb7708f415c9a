"""The graph's state: ids and plain JSON values only, never model instances, so a
checkpoint can be read back by any process at any time."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict


class ContractState(TypedDict, total=False):
    # Input, fixed for the life of the run.
    tenant_id: str
    contract_id: str
    title: str
    contract_text: str
    risk_threshold: float
    finance_limit: float
    critical_risk: float
    # The tenant's "review when unsure" and "review any clause finding", and the analyser the deployment chose
    # ("rules" or "llm"); absent in threads started before they existed.
    review_when_unsure: bool
    review_any_clause_finding: bool
    risk_analyzer: str
    # Written by `analyze`.
    risk_score: float
    findings: list[dict]
    payments: list[dict]
    max_payment: float
    # How the analysis went: analyser, sources, LLM fallback, why it was unsure, whether
    # that alone sent the contract to legal review (copied to Contract.analysis).
    analysis: dict
    # Written by the review nodes: the validated decision of each kind of review.
    legal_decision: dict
    finance_decision: dict
    signoff_decision: dict
    # Written by `amend` and `finalize`.
    amendments: list[str]
    amended_text: str
    human_decision: str
    # Appended to by every review node (parallel branches both append).
    history: Annotated[list[dict], operator.add]
