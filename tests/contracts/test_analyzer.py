"""contracts/graph/analyzer/: each rule, negation and scope, spans, the score, the
readability checks, payment extraction, excerpts. Pure functions: no database, no graph."""

from __future__ import annotations

import math
from itertools import combinations

import pytest

from contracts.graph.analyzer import RULES, analyze_text
from contracts.graph.analyzer.patterns import PhraseError, phrase_compile
from contracts.graph.analyzer.rules import LEXICON
from contracts.graph.analyzer.text import LONG_TEXT_WORDS
from tests.contracts.corpus.contracts import LONG_HARMLESS_CONTRACT
from tests.factories import CRITICAL_RISK_TEXT, HIGH_RISK_TEXT, LARGE_PAYMENT_TEXT, LOW_RISK_TEXT

pytestmark = pytest.mark.embedded

GOVERNED = "This agreement is governed by the laws of England."
WEIGHTS = {rule.name: rule.weight for rule in RULES}


def findings_by_rule(text: str) -> dict[str, dict]:
    return {f["rule"]: f for f in analyze_text(text).findings}


@pytest.mark.parametrize(
    ("rule", "sentence"),
    [
        ("uncapped_liability", "Supplier shall have unlimited liability for any breach of this agreement."),
        ("uncapped_liability", "The Supplier's liability under this agreement shall not be limited in any way."),
        ("uncapped_liability", "Each party accepts liability without limitation of liability for data loss."),
        ("broad_indemnification", "Customer shall indemnify Supplier against any and all claims arising from use."),
        ("broad_indemnification", "Licensee shall hold harmless Licensor from all claims by third parties."),
        ("unilateral_termination", "Supplier may terminate this agreement at any time without notice."),
        ("unilateral_termination", "The Vendor may terminate the contract for convenience on written notice."),
        ("penalty_clause", "Late delivery incurs a penalty of 2% of the order value per week."),
        ("penalty_clause", "The Contractor shall pay liquidated damages for each day of delay."),
        ("auto_renewal", "This agreement renews automatically for successive one-year terms."),
        ("auto_renewal", "The subscription will automatically renew unless cancelled."),
    ],
)
def test_each_rule_fires_on_a_realistic_sentence(rule, sentence):
    text = f"SERVICES AGREEMENT. {GOVERNED} {sentence} Nothing else applies."
    found = findings_by_rule(text)
    assert set(found) == {rule}
    finding = found[rule]
    assert finding["weight"] == WEIGHTS[rule]
    assert finding["title"]
    # The excerpt is the whole sentence that triggered the rule, and only that one.
    assert finding["excerpt"] == sentence
    assert text.index(sentence) <= finding["start"] < text.index(sentence) + len(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "Supplier's liability is limited to the fees paid in the prior 12 months.",
        "Either party may terminate this agreement on 90 days written notice for material breach.",
        "Each party shall indemnify the other for losses caused by its own negligence.",
        "The term is one year; renewal requires a written amendment signed by both parties.",
    ],
)
def test_balanced_clauses_fire_nothing(sentence):
    assert analyze_text(f"{GOVERNED} {sentence}").findings == []


def test_missing_governing_law_fires_only_when_absent():
    absent = findings_by_rule("Each party keeps the other's information secret.")
    assert set(absent) == {"missing_governing_law"}
    assert absent["missing_governing_law"]["weight"] == WEIGHTS["missing_governing_law"]
    assert absent["missing_governing_law"]["excerpt"] == "" and absent["missing_governing_law"]["start"] == -1
    for clause in (
        GOVERNED,
        "This agreement shall be governed by and construed in accordance with the laws of New York.",
        "Governing law: Switzerland.",
    ):
        assert "missing_governing_law" not in findings_by_rule(f"Each party keeps secrets. {clause}")


def test_empty_text_scores_only_the_missing_governing_law():
    analysis = analyze_text("")
    assert [f["rule"] for f in analysis.findings] == ["missing_governing_law"]
    assert analysis.risk_score == 0.15
    assert analysis.payments == [] and analysis.max_payment == 0.0


def test_score_is_the_noisy_or_of_the_findings():
    analysis = analyze_text(HIGH_RISK_TEXT)
    weights = [f["weight"] for f in analysis.findings]
    assert sorted(f["rule"] for f in analysis.findings) == [
        "broad_indemnification",
        "uncapped_liability",
        "unilateral_termination",
    ]
    assert analysis.risk_score == pytest.approx(1 - math.prod(1 - w for w in weights), abs=1e-4)
    assert analysis.risk_score == pytest.approx(0.8245)


# One sentence per rule; `None` for the rule that fires on an absence.
RULE_SENTENCES = {
    "uncapped_liability": "Supplier shall have unlimited liability.",
    "broad_indemnification": "Customer shall indemnify Supplier against any and all claims.",
    "unilateral_termination": "Supplier may terminate this agreement at any time.",
    "penalty_clause": "Late delivery incurs a penalty.",
    "auto_renewal": "This agreement renews automatically.",
    "missing_governing_law": None,
}


def text_firing(rules: set[str]) -> str:
    sentences = [s for name, s in RULE_SENTENCES.items() if name in rules and s]
    if "missing_governing_law" not in rules:
        sentences.append(GOVERNED)
    return " ".join(sentences)


def test_score_stays_in_range_and_grows_with_every_finding():
    assert set(RULE_SENTENCES) == set(WEIGHTS)
    scores = {}
    for size in range(len(RULES) + 1):
        for chosen in combinations(WEIGHTS, size):
            analysis = analyze_text(text_firing(set(chosen)))
            assert {f["rule"] for f in analysis.findings} == set(chosen)
            expected = 1 - math.prod(1 - WEIGHTS[name] for name in chosen)
            assert analysis.risk_score == pytest.approx(expected, abs=1e-4)
            assert 0.0 <= analysis.risk_score < 1.0
            if chosen:
                assert analysis.risk_score >= max(WEIGHTS[name] for name in chosen) - 1e-4
            scores[frozenset(chosen)] = analysis.risk_score
    # One more finding always raises the score.
    for chosen, score in scores.items():
        for extra in set(WEIGHTS) - chosen:
            assert scores[chosen | {extra}] > score
    assert scores[frozenset()] == 0.0
    assert analyze_text(CRITICAL_RISK_TEXT).risk_score == scores[frozenset(WEIGHTS)]


@pytest.mark.parametrize("text", [HIGH_RISK_TEXT, CRITICAL_RISK_TEXT, LARGE_PAYMENT_TEXT, LOW_RISK_TEXT, ""])
def test_analysis_is_deterministic(text):
    assert analyze_text(text) == analyze_text(text)


@pytest.mark.parametrize(
    ("phrase", "amount", "currency"),
    [
        ("USD 250,000", 250_000.0, "USD"),
        ("$1.5 million", 1_500_000.0, "$"),
        ("€120k", 120_000.0, "€"),
        ("250,000 euros", 250_000.0, "EUROS"),
        ("GBP 1 000 000", 1_000_000.0, "GBP"),
        ("1.5 million dollars", 1_500_000.0, "DOLLARS"),
        ("EUR 2.5bn", 2_500_000_000.0, "EUR"),
        ("USD 99.50", 99.5, "USD"),
    ],
)
def test_payment_amounts_are_extracted_with_scale_and_currency(phrase, amount, currency):
    sentence = f"Buyer shall pay {phrase} within 30 days of delivery."
    text = f"PURCHASE ORDER. {GOVERNED} {sentence} Delivery is DDP."
    [payment] = analyze_text(text).payments
    assert payment["amount"] == amount
    assert payment["currency"] == currency
    assert payment["excerpt"] == sentence
    assert payment["start"] == text.index(phrase)


@pytest.mark.parametrize(
    ("phrase", "amount"),
    [
        pytest.param("EUR 1.000.000", 1_000_000.0, id="dot-thousands"),
        pytest.param("250,000 €", 250_000.0, id="symbol-after-amount"),
    ],
)
def test_european_amount_formats_are_read(phrase, amount):
    payments = analyze_text(f"{GOVERNED} Buyer shall pay {phrase} on delivery.").payments
    assert [p["amount"] for p in payments] == [amount]


def test_max_payment_is_the_largest_commitment():
    text = f"{GOVERNED} A deposit of USD 10,000 is due now. The balance of USD 240,000 is due on delivery."
    analysis = analyze_text(text)
    assert [p["amount"] for p in analysis.payments] == [10_000.0, 240_000.0]
    assert analysis.max_payment == 240_000.0


def test_a_decimal_point_inside_a_number_does_not_cut_the_excerpt():
    sentence = "Supplier shall have unlimited liability for losses up to $1.5 million per incident."
    text = f"{GOVERNED} The fee is 2.75 percent of sales. {sentence} Notices go to the registered office."
    [finding] = analyze_text(text).findings
    assert finding["excerpt"] == sentence
    [payment] = analyze_text(text).payments
    assert payment["excerpt"] == sentence
    assert payment["amount"] == 1_500_000.0


def test_excerpts_are_cut_to_200_characters():
    sentence = "Supplier shall have unlimited liability " + "for every conceivable loss " * 20 + "."
    [finding] = analyze_text(f"{GOVERNED} {sentence}").findings
    assert len(finding["excerpt"]) == 200
    assert finding["excerpt"].startswith("Supplier shall have unlimited liability")


# --- Negation and scope -----------------------------------------------------------------


@pytest.mark.parametrize(
    "sentence",
    [
        "The Supplier's liability shall not be limited.",
        "No cap shall apply.",
        "The Supplier's liability is not subject to any monetary limit.",
        (
            "The Supplier's liability is capped at the fees paid, save that liability for breach of Clause 8 "
            "shall be unlimited."
        ),
    ],
)
def test_negated_caps_are_uncapped_liability(sentence):
    assert "uncapped_liability" in findings_by_rule(f"{GOVERNED} {sentence}")


@pytest.mark.parametrize(
    "sentence",
    [
        "The Supplier's liability is capped at the fees paid.",
        "The Supplier's liability shall in no event exceed EUR 1,000,000.",
        "The Supplier's liability, including without limitation for data loss, is limited to the fees.",
        "Nothing in this Agreement limits liability for death or personal injury caused by negligence.",
    ],
)
def test_caps_and_carve_outs_are_not_uncapped_liability(sentence):
    assert "uncapped_liability" not in findings_by_rule(f"{GOVERNED} {sentence}")


@pytest.mark.parametrize(
    ("rule", "sentence"),
    [
        ("unilateral_termination", "Neither party may terminate this Agreement for convenience."),
        ("unilateral_termination", "The Supplier may not terminate this Agreement at any time without cause."),
        ("penalty_clause", "The Customer may cancel without penalty."),
        ("auto_renewal", "This Agreement shall not renew automatically."),
        ("broad_indemnification", "The Licensee is not required to indemnify the Licensor against any and all claims."),
    ],
)
def test_a_negation_in_scope_cancels_the_rule(rule, sentence):
    assert rule not in findings_by_rule(f"{GOVERNED} {sentence}")


def test_a_negation_out_of_scope_does_not_cancel():
    # The "not" belongs to the condition, the comma ends its reach.
    text = f"{GOVERNED} If the Supplier does not deliver on time, a penalty of EUR 500 per day applies."
    assert "penalty_clause" in findings_by_rule(text)


def test_there_is_no_governing_law_counts_as_missing_and_points_at_the_sentence():
    sentence = "There is no governing law for this agreement."
    text = f"Each party keeps the other's information secret. {sentence}"
    finding = findings_by_rule(text)["missing_governing_law"]
    assert finding["excerpt"] == sentence
    assert text.index(sentence) <= finding["start"] < finding["end"] <= text.index(sentence) + len(sentence)


# --- Spans ------------------------------------------------------------------------------


def test_each_finding_spans_the_words_that_matched_in_the_original_text():
    # Curly quotes and a non-breaking space are normalised one for one: offsets still fit.
    text = (
        "SUPPLY AGREEMENT. The Supplier\u2019s liability under this Agreement shall\u00a0be unlimited. "
        "Buyer reserves the right to terminate for convenience at any time. "
        "This agreement is governed by the laws of England."
    )
    found = findings_by_rule(text)
    assert set(found) == {"uncapped_liability", "unilateral_termination"}
    liability = found["uncapped_liability"]
    assert text[liability["start"] : liability["end"]] == "liability under this Agreement shall\u00a0be unlimited"
    termination = found["unilateral_termination"]
    assert text[termination["start"] : termination["end"]] == "reserves the right to terminate for convenience"
    assert all(f["source"] == "rules" for f in found.values())


def test_a_phrase_that_does_not_parse_is_refused():
    with pytest.raises(PhraseError):
        phrase_compile("~3 liability", LEXICON)
    with pytest.raises(PhraseError):
        phrase_compile("{NO_SUCH_ENTRY} liability", LEXICON)


# --- Readability: when the analyser cannot vouch for its reading -------------------------


def unsure_codes(text: str) -> list[str]:
    return [reason["code"] for reason in analyze_text(text).unsure_reasons]


def test_reference_texts_are_read_without_doubt():
    for text in (HIGH_RISK_TEXT, CRITICAL_RISK_TEXT, LARGE_PAYMENT_TEXT, LOW_RISK_TEXT, ""):
        assert unsure_codes(text) == []


def test_a_long_text_without_any_clause_finding_is_unsure():
    analysis = analyze_text(LONG_HARMLESS_CONTRACT)
    assert analysis.findings == []
    assert analysis.stats["words"] >= LONG_TEXT_WORDS
    assert unsure_codes(LONG_HARMLESS_CONTRACT) == ["long_text_without_findings"]
    # One clause finding and the rules have read it: no longer unsure.
    with_finding = LONG_HARMLESS_CONTRACT + " This Agreement renews automatically each year."
    assert unsure_codes(with_finding) == []


@pytest.mark.parametrize(
    ("text", "code"),
    [
        pytest.param("Der Lieferant haftet unbeschr\u00e4nkt f\u00fcr Sch\u00e4den. " * 20, "not_english_prose", id="german"),
        pytest.param("x" * 5000, "not_words", id="one-long-token"),
        pytest.param(("the supplier shall deliver the goods " * 60).strip(), "no_sentences", id="no-punctuation"),
        pytest.param(
            "The Supplier\u00c3\u00a9s liability \ufffd\ufffd shall be \u00e2\u20ac\u0153limited\u00e2\u20ac. " * 5,
            "damaged_encoding",
            id="mojibake",
        ),
    ],
)
def test_a_text_the_analyser_cannot_read_well_says_why(text, code):
    reasons = analyze_text(text).unsure_reasons
    assert code in [reason["code"] for reason in reasons]
    assert all(reason["message"] for reason in reasons)
