"""Deterministic contract risk analysis: clause rules and payments, no network, no model.

Each rule that fires contributes one finding (rule, title, weight, excerpt, start, end,
source). Findings combine as independent risks ("noisy-or"): score = 1 - prod(1 - weight),
which stays in [0, 1], grows with every finding and never lets one rule alone exceed its
weight.

    rules.py     the rules as data: phrases, synonyms, near-misses, examples
    patterns.py  the phrase language the rules are written in
    text.py      normalising, sentences and clauses, readability
    engine.py    applies the rules (negation, scope)
    payments.py  payment commitments
    llm.py       the optional LLM analyser, merged with the rules
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from contracts.graph.analyzer.engine import findings_of
from contracts.graph.analyzer.payments import payments_of
from contracts.graph.analyzer.rules import RULE_NAMES, RULES, Rule
from contracts.graph.analyzer.text import LONG_TEXT_WORDS, readability

__all__ = ["RULES", "RULE_NAMES", "Analysis", "Rule", "analyze_text", "risk_score_of"]


@dataclass(frozen=True)
class Analysis:
    risk_score: float
    findings: list[dict]
    payments: list[dict]
    # Why the analyser cannot vouch for its reading ({"code", "message"}); see
    # text.readability and `unsure_reasons_of`.
    unsure_reasons: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def max_payment(self) -> float:
        return max((p["amount"] for p in self.payments), default=0.0)


def risk_score_of(findings: list[dict]) -> float:
    survival = 1.0
    for finding in findings:
        survival *= 1.0 - finding["weight"]
    return round(1.0 - survival, 4)


def unsure_reasons_of(findings: list[dict], stats: dict, unreadable: list[dict]) -> list[dict]:
    """Unreadable text, or a long text in which no clause rule found anything: a missing
    governing-law clause alone says nothing about how well the clauses were read."""
    reasons = list(unreadable)
    clause_findings = [f for f in findings if f["rule"] != "missing_governing_law"]
    if not clause_findings and stats["words"] >= LONG_TEXT_WORDS:
        reasons.append(
            {
                "code": "long_text_without_findings",
                "message": f"{stats['words']} words and not one clause finding: a contract this long usually has "
                "clauses the rules should have weighed, so their wording may be one the rules do not know",
            }
        )
    return reasons


def analyze_text(text: str) -> Analysis:
    findings, sentence_count = findings_of(text)
    stats, unreadable = readability(text, sentence_count)
    return Analysis(
        risk_score=risk_score_of(findings),
        findings=findings,
        payments=[asdict(p) for p in payments_of(text)],
        unsure_reasons=unsure_reasons_of(findings, stats, unreadable),
        stats=stats,
    )


