"""Payment commitments in a contract: every amount with a currency, scaled ("1.5 million",
"120k") and read in the usual national formats ("1,000,000.50", "1 000 000",
"1.000.000,50")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

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
class Payment:
    amount: float
    currency: str
    excerpt: str
    start: int


_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)|\n")


def _excerpt(text: str, start: int, end: int, width: int = 200) -> str:
    """The sentence around a match (a period inside "1.5" does not end it), cut to `width`."""
    left = 0
    for boundary in _SENTENCE_END.finditer(text, 0, start):
        left = boundary.end()
    after = _SENTENCE_END.search(text, end)
    right = after.end() if after else len(text)
    return " ".join(text[left:right].split())[:width]


def payments_of(text: str) -> list[Payment]:
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
