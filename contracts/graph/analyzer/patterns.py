"""A small phrase language for the rules, compiled to regular expressions.

Rules are written as phrases a lawyer can read ("{LIABILITY} ~8 not be limited"),
not as regular expressions. A phrase is a sequence of items separated by spaces:

    word        a whole word, any case; "-" inside it also matches a space or nothing
                ("auto-renew" matches "auto-renew", "auto renew", "autorenew")
    word*       a word starting with these letters ("indemnif*": indemnify, indemnified)
    a|b|c       one of these words
    item?       the item may be missing
    {NAME}      one of the phrases of the lexicon entry NAME (synonyms, variants)
    ~N          up to N other words in between (~ alone: up to 6)
    CAP         a word written with a capital letter (a proper name: "England")
    :           punctuation written in a phrase must be there ("Governing law: ...")

Words are separated by spaces or punctuation other than ";" (a clause boundary), so
"including, without limitation" matches the phrase "including without limitation".
Matching is done within one clause at a time (see text.py), so a gap never crosses one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Between two words: anything that is not a word character and not a clause boundary.
_SEP = r"[^\w;]+"
_DEFAULT_GAP = 6
_WORD = re.compile(r"^[\w'-]+\*?$")


# A capitalised word that is a name, not a sentence's first word or a defined term's
# article ("The", "No", "Any"): case-sensitive inside a case-insensitive pattern.
_NOT_NAMES = (
    "The|This|That|These|Those|No|Any|All|Each|Every|Such|Its|Their|Our|Your|Other|Either|Neither|None|Applicable|"
    "Local|Relevant|Governing|Law|Laws|Agreement|Contract|Party|Parties|Clause|Section|Schedule|Customer|Supplier"
)
_CAPITALISED = rf"(?-i:(?!(?:{_NOT_NAMES})\b)[A-Z][\w'-]*)"


class PhraseError(ValueError):
    """A rule's phrase does not parse; raised at import, so a typo never ships."""


def _word(token: str) -> str:
    prefix = token.endswith("*")
    stem = token[:-1] if prefix else token
    body = r"[-\s]?".join(re.escape(part) for part in stem.split("-"))
    return body + (r"\w*" if prefix else r"\b")


def _item(token: str, lexicon: Mapping[str, list[str]], depth: int) -> tuple[str, str]:
    """(regex, kind) for one item; kind is "word", "gap" or "punct"."""
    if token.startswith("~"):
        size = int(token[1:]) if len(token) > 1 else _DEFAULT_GAP
        return rf"(?:\w+{_SEP}){{0,{size}}}?", "gap"
    if token.startswith("{") and token.endswith("}"):
        name = token[1:-1]
        if name not in lexicon:
            raise PhraseError(f"unknown lexicon entry {{{name}}}")
        if depth > 4:
            raise PhraseError(f"lexicon entry {{{name}}} nests too deep")
        alternatives = [phrase_regex(p, lexicon, depth=depth + 1) for p in lexicon[name]]
        return "(?:" + "|".join(alternatives) + ")", "word"
    if token == "CAP":
        return _CAPITALISED, "word"
    if all(_WORD.match(t) for t in token.split("|")):
        return "(?:" + "|".join(_word(t) for t in token.split("|")) + ")", "word"
    if not any(ch.isalnum() for ch in token):
        return rf"[^\w;]*{re.escape(token)}[^\w;]*", "punct"
    raise PhraseError(f"cannot read {token!r}")


def phrase_regex(phrase: str, lexicon: Mapping[str, list[str]], depth: int = 0) -> str:
    """The regular expression (as text) that a phrase stands for."""
    tokens = phrase.split()
    if not tokens:
        raise PhraseError("empty phrase")
    out = ""
    # True right after a word: the next word needs a separator first. A gap ends on a
    # separator and punctuation brings its own spacing, so after those it does not.
    after_word = False
    for index, token in enumerate(tokens):
        optional = token.endswith("?") and len(token) > 1
        if optional:
            token = token[:-1]
        regex, kind = _item(token, lexicon, depth)
        if kind == "gap":
            if index in (0, len(tokens) - 1):
                raise PhraseError(f"a gap cannot start or end {phrase!r}")
            out += (_SEP if after_word else "") + regex
            after_word = False
        elif kind == "punct":
            out += f"(?:{regex})" + ("?" if optional else "")
            after_word = False
        elif optional:
            out += f"(?:{_SEP}{regex})?" if after_word else f"(?:{regex}{_SEP})?"
        else:
            out += (_SEP if after_word else "") + f"(?:{regex})"
            after_word = True
    return out


def phrase_compile(phrase: str, lexicon: Mapping[str, list[str]]) -> re.Pattern[str]:
    # \b at both ends: a phrase never starts or stops inside a word.
    return re.compile(rf"(?<!\w){phrase_regex(phrase, lexicon)}", re.IGNORECASE)
