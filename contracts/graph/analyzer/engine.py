"""The engine that applies the rules of rules.py to a text (see its docstring for the
steps). Pure and deterministic: the same text always gives the same findings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from contracts.graph.analyzer.findings import Finding
from contracts.graph.analyzer.patterns import phrase_compile
from contracts.graph.analyzer.rules import LEXICON, RULES, SHARED_MASKS, Rule, Trigger
from contracts.graph.analyzer.text import Span, clauses, excerpt, normalise, sentences

# How far back from a match a negating word still governs it ("shall not be required to
# indemnify": five words).
NEGATION_WINDOW_WORDS = 5
_NEGATIONS = frozenset({"not", "no", "never", "neither", "nor", "nothing", "none", "cannot", "without"})
# A comma, a bracket or one of these words between the negation and the match ends its
# scope: "If the Supplier does not deliver, a penalty applies" is a penalty.
_SCOPE_ENDS = frozenset({"if", "unless", "when", "where", "whereas", "which", "who", "because", "until", "while", "that", "but"})
# Negating words that negate something else: "not less than 30 days", "whether or not".
_NOT_NEGATIONS = re.compile(
    r"\b(?:not|no)\s+(?:less|more|later|earlier|sooner|fewer|greater)\s+than\b|\bnot\s+(?:exceeding|only|to\s+exceed)\b"
    r"|\bwhether\s+or\s+not\b|\bif\s+not\b|\bbut\s+not\s+limited\b|\bwithout\s+(?:limiting|prejudice)\b",
    re.IGNORECASE,
)
_NEGATION_TOKENS = re.compile(r"\w+(?:n't|'t)?|[,:()\[\]]")


@dataclass(frozen=True)
class _Trigger:
    phrase: str
    pattern: re.Pattern[str]
    unless: tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    triggers: tuple[_Trigger, ...]
    unless: tuple[re.Pattern[str], ...]
    masks: tuple[re.Pattern[str], ...]
    mentions: tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class Hit:
    start: int
    end: int
    sentence: Span
    phrase: str


def _compile(phrases) -> tuple[re.Pattern[str], ...]:
    return tuple(phrase_compile(p, LEXICON) for p in phrases)


def rule_compile(rule: Rule) -> CompiledRule:
    triggers = []
    for trigger in rule.triggers:
        trigger = trigger if isinstance(trigger, Trigger) else Trigger(trigger)
        triggers.append(_Trigger(trigger.phrase, phrase_compile(trigger.phrase, LEXICON), _compile(trigger.unless)))
    return CompiledRule(rule, tuple(triggers), _compile(rule.unless), _compile(rule.masks), _compile(rule.mentions))


COMPILED_RULES: tuple[CompiledRule, ...] = tuple(rule_compile(rule) for rule in RULES)
_SHARED_MASKS = _compile(SHARED_MASKS)


def _masked(text: str, patterns: tuple[re.Pattern[str], ...]) -> str:
    """`text` with every match of `patterns` blanked to spaces (offsets unchanged)."""
    if not patterns:
        return text
    chars = list(text)
    for pattern in patterns:
        for match in pattern.finditer(text):
            chars[match.start() : match.end()] = " " * (match.end() - match.start())
    return "".join(chars)


def _negated(text: str, clause: Span, match_start: int) -> bool:
    """A negating word among the few words before the match, still in scope."""
    before = _NOT_NEGATIONS.sub(lambda m: " " * len(m.group(0)), text[clause.start : match_start])
    tokens = _NEGATION_TOKENS.findall(before)
    for token in reversed(tokens[-NEGATION_WINDOW_WORDS:]):
        lowered = token.lower()
        if not token[0].isalnum() or lowered in _SCOPE_ENDS:
            return False
        if lowered in _NEGATIONS or lowered.endswith("n't"):
            return True
    return False


_INNER_NEGATION = re.compile(r"\b(?:not|never|cannot)\b|n't\b", re.IGNORECASE)


def _cancelled(text: str, clause: Span, hit_start: int, hit_end: int, patterns) -> bool:
    """An `unless` phrase in the clause, outside the words that matched."""
    for pattern in patterns:
        for match in pattern.finditer(text, clause.start, clause.end):
            if match.end() <= hit_start or match.start() >= hit_end:
                return True
    return False


def _clause_hit(compiled: CompiledRule, original: str, masked: str, sentence: Span, clause: Span) -> Hit | None:
    best: Hit | None = None
    for trigger in compiled.triggers:
        for match in trigger.pattern.finditer(masked, clause.start, clause.end):
            if best is not None and match.start() >= best.start:
                break
            if compiled.rule.negatable and _negated(masked, clause, match.start()):
                continue
            if compiled.rule.negation_inside and _INNER_NEGATION.search(match.group(0)):
                continue
            if _cancelled(original, clause, match.start(), match.end(), compiled.unless + trigger.unless):
                continue
            best = Hit(match.start(), match.end(), sentence, trigger.phrase)
            break
    return best


def _first_hit(compiled: CompiledRule, normal: str, shared_masked: str, sentence_spans: list[Span]) -> Hit | None:
    masked = _masked(shared_masked, compiled.masks)
    for sentence in sentence_spans:
        for clause in clauses(normal, sentence):
            hit = _clause_hit(compiled, normal, masked, sentence, clause)
            if hit is not None:
                return hit
    return None


def _first_mention(compiled: CompiledRule, normal: str, sentence_spans: list[Span]) -> Hit | None:
    for sentence in sentence_spans:
        for pattern in compiled.mentions:
            match = pattern.search(normal, sentence.start, sentence.end)
            if match:
                return Hit(match.start(), match.end(), sentence, pattern.pattern)
    return None


def findings_of(text: str) -> tuple[list[dict], int]:
    """The rules' findings for `text` (one per rule that fires, in rule order) and the
    number of sentences it was read as."""
    normal = normalise(text)
    shared_masked = _masked(normal, _SHARED_MASKS)
    sentence_spans = sentences(normal)
    found = []
    for compiled in COMPILED_RULES:
        rule = compiled.rule
        hit = _first_hit(compiled, normal, shared_masked, sentence_spans)
        if rule.fires_when_absent:
            if hit is not None:
                continue
            # Nothing settles it; point at the wording that talks about it, if any
            # ("There is no governing law for this agreement").
            hit = _first_mention(compiled, normal, sentence_spans)
            if hit is None:
                found.append(_finding(rule, "", -1, -1))
                continue
        elif hit is None:
            continue
        found.append(_finding(rule, excerpt(text, hit.sentence), hit.start, hit.end))
    return found, len(sentence_spans)


def _finding(rule: Rule, excerpt_text: str, start: int, end: int) -> dict:
    finding = Finding(rule=rule.name, title=rule.title, weight=rule.weight, excerpt=excerpt_text, start=start, end=end)
    return finding.model_dump()
