"""Deterministic contract risk analysis: clause rules, no network, no model.

Each rule that fires contributes a finding (rule, title, weight, excerpt). Findings
combine as independent risks ("noisy-or"): score = 1 - prod(1 - weight), which stays
in [0, 1], grows with every finding and never lets one rule alone exceed its weight.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation

_FLAGS = re.IGNORECASE | re.DOTALL


@dataclass(frozen=True)
class Rule:
    name: str
    title: str
    weight: float
    pattern: re.Pattern[str]
    # A rule that fires when the pattern is *absent* (e.g. no governing-law clause).
    fires_when_absent: bool = False


RULES: tuple[Rule, ...] = (
    Rule(
        "uncapped_liability",
        "Liability is not capped",
        0.55,
        re.compile(
            r"unlimited liability|liability[^.]{0,80}(?:shall not be|is not|will not be) (?:limited|capped)"
            r"|without (?:any )?limit(?:ation)? (?:of|on|to) liability|uncapped liability",
            _FLAGS,
        ),
    ),
    Rule(
        "broad_indemnification",
        "Broad indemnification",
        0.40,
        re.compile(
            r"indemnify[^.]{0,120}(?:any and all|all claims|all losses|whatsoever|however arising)"
            r"|hold harmless[^.]{0,80}(?:any and all|all claims)",
            _FLAGS,
        ),
    ),
    Rule(
        "unilateral_termination",
        "One party may terminate unilaterally",
        0.35,
        re.compile(
            r"may terminate[^.]{0,120}(?:at any time|for any reason|without cause|sole discretion|for convenience)",
            _FLAGS,
        ),
    ),
    Rule(
        "penalty_clause",
        "Penalty or liquidated damages",
        0.30,
        re.compile(r"\bpenalt(?:y|ies)\b|liquidated damages", _FLAGS),
    ),
    Rule(
        "auto_renewal",
        "Renews automatically",
        0.20,
        re.compile(r"automatic(?:ally)? renew|auto-?renew|renew(?:s|ed)? automatically|evergreen", _FLAGS),
    ),
    Rule(
        "missing_governing_law",
        "No governing-law clause",
        0.15,
        re.compile(r"governed by (?:and construed in accordance with )?the laws? of|governing law", _FLAGS),
        fires_when_absent=True,
    ),
)

_CURRENCY = r"(?:USD|EUR|GBP|CHF|JPY|CAD|AUD|US\$|\$|€|£|¥)"
# "1,000,000.50", "1 000 000", "1.000.000,50" (dot-grouped needs two groups: "1.500" is
# ambiguous, "1.500.000" is not), "250000", "1.5".
_DOT_GROUPED = r"\d{1,3}(?:\.\d{3}){2,}(?:,\d+)?"
_NUMBER = rf"{_DOT_GROUPED}|\d{{1,3}}(?:[,\u00a0 ]\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE_WORDS = r"million|mio|m|thousand|k|billion|bn"
# "USD 250,000", "$1.5 million", "€120k" or "250,000 euros", "1.5 million dollars", "250,000 €".
_AMOUNT = re.compile(
    rf"(?P<cur1>{_CURRENCY})\s?(?P<num1>{_NUMBER})(?:\s?(?P<scale1>{_SCALE_WORDS})\b)?"
    rf"|(?P<num2>{_NUMBER})(?:\s?(?P<scale2>{_SCALE_WORDS})\b)?\s?"
    r"(?P<cur2>(?:USD|EUR|GBP|CHF|JPY|CAD|AUD|dollars|euros|pounds)\b|[€£$¥])",
    re.IGNORECASE,
)
_SCALES = {"thousand": 1_000, "k": 1_000, "million": 1_000_000, "mio": 1_000_000, "m": 1_000_000, "billion": 10**9, "bn": 10**9}


@dataclass(frozen=True)
class Finding:
    rule: str
    title: str
    weight: float
    excerpt: str
    start: int


@dataclass(frozen=True)
class Payment:
    amount: float
    currency: str
    excerpt: str
    start: int


@dataclass(frozen=True)
class Analysis:
    risk_score: float
    findings: list[dict]
    payments: list[dict]

    @property
    def max_payment(self) -> float:
        return max((p["amount"] for p in self.payments), default=0.0)


_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)|\n")


def _excerpt(text: str, start: int, end: int, width: int = 200) -> str:
    """The sentence around a match (a period inside "1.5" does not end it), cut to `width`."""
    left = 0
    for boundary in _SENTENCE_END.finditer(text, 0, start):
        left = boundary.end()
    after = _SENTENCE_END.search(text, end)
    right = after.end() if after else len(text)
    return " ".join(text[left:right].split())[:width]


def _payments(text: str) -> list[Payment]:
    found: list[Payment] = []
    for match in _AMOUNT.finditer(text):
        raw = match.group("num1") or match.group("num2")
        currency = (match.group("cur1") or match.group("cur2") or "").upper()
        scale_word = (match.group("scale1") or match.group("scale2") or "").lower()
        if re.fullmatch(_DOT_GROUPED, raw):
            raw = raw.replace(".", "").replace(",", ".")
        try:
            amount = Decimal(re.sub(r"[,\u00a0 ]", "", raw))
        except InvalidOperation:
            continue
        amount *= _SCALES.get(scale_word, 1)
        found.append(Payment(float(amount), currency, _excerpt(text, match.start(), match.end()), match.start()))
    return found


def analyze_text(text: str) -> Analysis:
    findings: list[Finding] = []
    for rule in RULES:
        match = rule.pattern.search(text)
        if rule.fires_when_absent:
            if match is None:
                findings.append(Finding(rule.name, rule.title, rule.weight, "", -1))
        elif match is not None:
            findings.append(Finding(rule.name, rule.title, rule.weight, _excerpt(text, match.start(), match.end()), match.start()))
    survival = 1.0
    for finding in findings:
        survival *= 1.0 - finding.weight
    score = round(1.0 - survival, 4)
    return Analysis(
        risk_score=score,
        findings=[asdict(f) for f in findings],
        payments=[asdict(p) for p in _payments(text)],
    )
