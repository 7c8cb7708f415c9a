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
    # Written by `analyze`.
    risk_score: float
    findings: list[dict]
    payments: list[dict]
    max_payment: float
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
