"""Reading a contract: a normalised copy of the text, its sentences and clauses, and
how well it can be read at all.

Every offset is an offset into the original text: normalising only swaps characters one
for one (curly quotes, dashes, odd spaces), never adds or removes any, so a span found
in the copy highlights the same words in the original.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

_ONE_FOR_ONE = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
        "\u00a0": " ", "\u2007": " ", "\u2009": " ", "\u202f": " ", "\t": " ",
    }
)


def normalise(text: str) -> str:
    return text.translate(_ONE_FOR_ONE)


# A sentence ends at . ! or ? followed by a space or the end, unless the word before is
# an abbreviation ("No. 5", "Ltd.", "e.g.") or a single letter or a clause number
# ("12."); a blank line or a line break before a numbered or lettered item also ends it.
_ABBREVIATIONS = frozenset(
    "no nos art arts sec secs cl cll para paras p pp ltd inc co corp plc llc bv gmbh ag sa st mr mrs ms dr prof "
    "vs etc eg ie al approx fig ref dept est jan feb mar apr jun jul aug sep sept oct nov dec u.s e.g i.e".split()
)
_END = re.compile(r"[.!?](?=[\"')\]]*(?:\s|$))")
_HARD_BREAK = re.compile(r"\n\s*\n|\n(?=\s*(?:\(?[0-9]{1,3}[.)]|\(?[a-z]{1,3}\)|[-*\u2022]\s))")
_WORD_BEFORE = re.compile(r"([\w.]+)$")

# Inside a sentence, a clause ends at ";" and before the words that open an exception or a
# contrast: a cap stated before ", save that" does not cover what follows it.
_CLAUSE_BREAK = re.compile(
    r";|,\s*(?=(?:but|except|save that|save where|provided that|provided,? however|however|whereas|"
    r"and provided|subject only to)\b)",
    re.IGNORECASE,
)
# A run-on "sentence" longer than this is cut, so a text without punctuation is still
# matched in pieces of bounded size (and flagged as hard to read, see `readability`).
_MAX_SEGMENT_CHARS = 1200

_WORDS = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def sentences(text: str) -> list[Span]:
    """Sentence spans of `text`, leading and trailing spaces trimmed."""
    cuts: set[int] = {0, len(text)}
    for match in _HARD_BREAK.finditer(text):
        cuts.add(match.start())
    for match in _END.finditer(text):
        # Only the word just before: searching from 0 would make this quadratic.
        before = _WORD_BEFORE.search(text, max(0, match.start() - 40), match.start())
        word = before.group(1).lower() if before else ""
        if word and (word.rstrip(".") in _ABBREVIATIONS or len(word) == 1 or word.isdigit()):
            continue
        cuts.add(match.end())
    ordered = sorted(cuts)
    spans = []
    for start, end in pairwise(ordered):
        spans.extend(_trimmed_pieces(text, start, end))
    return spans


def _trimmed_pieces(text: str, start: int, end: int) -> list[Span]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start >= end:
        return []
    pieces = []
    while end - start > _MAX_SEGMENT_CHARS:
        cut = text.rfind(" ", start, start + _MAX_SEGMENT_CHARS)
        cut = cut if cut > start else start + _MAX_SEGMENT_CHARS
        pieces.append(Span(start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    pieces.append(Span(start, end))
    return pieces


def clauses(text: str, sentence: Span) -> list[Span]:
    """The clauses of one sentence (see _CLAUSE_BREAK)."""
    spans, start = [], sentence.start
    for match in _CLAUSE_BREAK.finditer(text, sentence.start, sentence.end):
        if match.start() > start:
            spans.append(Span(start, match.start()))
        start = match.end()
    if start < sentence.end:
        spans.append(Span(start, sentence.end))
    return spans


def excerpt(text: str, span: Span, width: int = 200) -> str:
    return " ".join(text[span.start : span.end].split())[:width]


# --- How well the text can be read ----------------------------------------------------

# Common English words. In English contract prose about a third of the words are among
# them; in another language, OCR noise, base64 or a spreadsheet dump almost none are.
_COMMON_ENGLISH = frozenset(
    "the of and to a an in on at by for or be is are was were shall will may must not no any all this that "
    "these those such each either other with without from as under its their it which who party parties "
    "agreement contract term terms if than upon within after before has have had been being does do".split()
)
LONG_TEXT_WORDS = 800  # "long": about two pages; shorter texts with no finding are common
MIN_ENGLISH_SHARE = 0.15
MIN_WORDS_TO_JUDGE = 40  # below this, shares say nothing
MAX_AVERAGE_SENTENCE_WORDS = 80
MAX_DAMAGED_SHARE = 0.005
MAX_CHARACTERS_PER_WORD = 15  # prose has about 6; base64 or a dump of symbols far more
_DAMAGE = re.compile(r"\ufffd|\u00c3[\u0080-\u00bf]|\u00e2\u20ac")


def readability(text: str, sentence_count: int) -> tuple[dict, list[dict]]:
    """Figures about the text, and why the analyser cannot vouch for its reading (empty
    when it can). Each reason is {"code", "message"}; the criteria are the constants above."""
    words = _WORDS.findall(text)
    english = sum(1 for word in words if word.lower() in _COMMON_ENGLISH)
    share = english / len(words) if words else 0.0
    damaged = len(_DAMAGE.findall(text))
    stats = {
        "characters": len(text),
        "words": len(words),
        "sentences": sentence_count,
        "common_english_share": round(share, 3),
    }
    reasons = []
    if len(words) >= MIN_WORDS_TO_JUDGE and share < MIN_ENGLISH_SHARE:
        reasons.append(
            {
                "code": "not_english_prose",
                "message": f"only {share:.0%} of the words are common English words: the rules read English "
                "contract language, and this text is in another language or is not prose",
            }
        )
    if len(words) >= MIN_WORDS_TO_JUDGE and len(words) / max(sentence_count, 1) > MAX_AVERAGE_SENTENCE_WORDS:
        reasons.append(
            {
                "code": "no_sentences",
                "message": f"{len(words)} words in {sentence_count} sentence(s): the text cannot be split into "
                "sentences, so the rules cannot tell which words belong together",
            }
        )
    visible = len(text) - sum(1 for ch in text if ch.isspace())
    if visible >= MIN_WORDS_TO_JUDGE * 5 and visible / max(len(words), 1) > MAX_CHARACTERS_PER_WORD:
        reasons.append(
            {
                "code": "not_words",
                "message": f"{visible} characters but only {len(words)} words: the text is mostly not words "
                "(encoded data, numbers or symbols)",
            }
        )
    if text and damaged / len(text) > MAX_DAMAGED_SHARE:
        reasons.append(
            {
                "code": "damaged_encoding",
                "message": f"{damaged} damaged characters (a wrong text encoding): words may be unreadable",
            }
        )
    return stats, reasons
