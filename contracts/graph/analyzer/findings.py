"""The shape of a finding, one for every analyser: the rules produce it, the LLM is
asked for it (as its structured output), and the merge compares like with like."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from contracts.graph.analyzer.rules import RULE_NAMES

RuleName = Literal[RULE_NAMES]  # type: ignore[valid-type]


class Finding(BaseModel):
    rule: RuleName = Field(description="Which risk this is: one of the rule names listed in the instructions.")
    title: str = Field(default="", description="A short title; may be left empty.")
    weight: float = Field(ge=0.0, le=1.0, description="How serious it is, 0 to 1 (the rule's usual weight is given).")
    excerpt: str = Field(description="The clause that shows the risk, copied word for word from the contract.")
    start: int = Field(default=-1, description="Character offset of the words that show it; -1 if unknown.")
    end: int = Field(default=-1, description="Character offset just after those words; -1 if unknown.")
    source: Literal["rules", "llm"] = Field(default="rules", description="Which analyser found it.")


class FindingList(BaseModel):
    """Every risk found in one contract (an empty list when there is none)."""

    findings: list[Finding] = Field(default_factory=list)
