"""The shape of a reviewer's answer to each kind of interrupt.

The same models validate the API's input (so a malformed decision is a 400 naming the
field) and are passed to `interrupt(..., response_schema=...)`, so LangGraph publishes
them as JSON Schema and re-validates on resume: nothing malformed reaches a node.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_AMENDMENTS = 50
MAX_AMENDMENT_CHARS = 2_000
MAX_COMMENT_CHARS = 5_000


class _Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)
    # Filled by the service from the authenticated reviewer, never by the client.
    decided_by: int | None = None
    decided_by_username: str | None = None
    decided_at: str | None = None
    task_id: str | None = None


class LegalDecision(_Decision):
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


class ApprovalDecision(_Decision):
    """Finance review and critical sign-off: approve or reject, nothing to amend."""

    decision: Literal["approve", "reject"]
    amendments: list[str] = Field(default_factory=list, max_length=0)


DECISION_MODELS: dict[str, type[_Decision]] = {
    "legal": LegalDecision,
    "finance": ApprovalDecision,
    "signoff": ApprovalDecision,
}

OPTIONS: dict[str, list[str]] = {
    "legal": ["approve", "reject", "amend"],
    "finance": ["approve", "reject"],
    "signoff": ["approve", "reject"],
}
