"""The shape of a reviewer's answer to each kind of interrupt.

Two models per kind. The *input* model is what a client may send (decision, amendments,
comment): the API validates against it (a malformed decision is a 400 naming the field),
and its JSON Schema is what `interrupt(..., response_schema=...)` publishes on the task,
so a client reading the schema sees exactly the fields the resume accepts. The full
model adds what the service records from the authenticated reviewer (who, when, which
task); the node validates the resume value against it itself, because LangGraph
validates only a Python-type schema and would publish that one's fields too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_AMENDMENTS = 50
MAX_AMENDMENT_CHARS = 2_000
MAX_COMMENT_CHARS = 5_000


class _DecisionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)


class _DecisionRecord(BaseModel):
    """Filled by the service from the authenticated reviewer, never by the client."""

    model_config = ConfigDict(extra="forbid")

    decided_by: int | None = None
    decided_by_username: str | None = None
    decided_at: str | None = None
    task_id: str | None = None


class LegalDecisionInput(_DecisionInput):
    decision: Literal["approve", "reject", "amend"]
    amendments: list[str] = Field(default_factory=list, max_length=MAX_AMENDMENTS)

    @model_validator(mode="after")
    def _amendments_match_decision(self) -> "LegalDecision":
        if self.decision == "amend" and not self.amendments:
            raise ValueError("amendments: 'amend' needs at least one amendment")
        if self.decision != "amend" and self.amendments:
            raise ValueError("amendments: only an 'amend' decision carries amendments")
        for text in self.amendments:
            if not text.strip() or len(text) > MAX_AMENDMENT_CHARS:
                raise ValueError(f"amendments: each must be non-empty and at most {MAX_AMENDMENT_CHARS} characters")
        return self


class ApprovalDecisionInput(_DecisionInput):
    """Finance review and critical sign-off: approve or reject, nothing to amend."""

    decision: Literal["approve", "reject"]
    amendments: list[str] = Field(default_factory=list, max_length=0)


class LegalDecision(LegalDecisionInput, _DecisionRecord):
    pass


class ApprovalDecision(ApprovalDecisionInput, _DecisionRecord):
    pass


DECISION_MODELS: dict[str, type[BaseModel]] = {
    "legal": LegalDecision,
    "finance": ApprovalDecision,
    "signoff": ApprovalDecision,
}

DECISION_INPUT_MODELS: dict[str, type[BaseModel]] = {
    "legal": LegalDecisionInput,
    "finance": ApprovalDecisionInput,
    "signoff": ApprovalDecisionInput,
}

# Published on each interrupt: the client's fields only.
DECISION_SCHEMAS: dict[str, dict] = {kind: model.model_json_schema() for kind, model in DECISION_INPUT_MODELS.items()}

OPTIONS: dict[str, list[str]] = {
    "legal": ["approve", "reject", "amend"],
    "finance": ["approve", "reject"],
    "signoff": ["approve", "reject"],
}
