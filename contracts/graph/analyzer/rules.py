"""The clause rules, as data: what each risk sounds like, what only looks like it, and
examples of both. The engine that reads them is engine.py; the phrase language is
described in patterns.py.

How a rule decides, clause by clause (a clause is a sentence cut at ";" and before
"but", "except", "save that", "provided that", ...):
  1. `masks` (and the shared ones below) blank out wording that only looks risky
     ("including without limitation", "limited liability company", "indemnity insurance").
  2. A `trigger` phrase matches in the clause.
  3. Negation: with `negatable`, a negating word in the few words before the match, with
     no comma or "if"/"unless"/"which" between ("Neither party may terminate ...",
     "shall not be required to indemnify", "without penalty"), cancels it. A rule whose
     risk *is* a negation ("shall not be limited") writes it into the trigger.
  4. Scope: an `unless` phrase elsewhere in the same clause cancels it (a mutual right,
     a cause for termination, a fault-based limit). A trigger may carry its own.
The first match left standing is the finding (one per rule; the score is per rule).

Weights are unchanged from the first analyser: tests/factories.py's reference texts, and
the tenants' thresholds chosen against them, depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Trigger:
    phrase: str
    # Phrases that cancel this trigger only (in the same clause, outside the match).
    unless: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    name: str
    title: str
    weight: float
    triggers: tuple[str | Trigger, ...]
    unless: tuple[str, ...] = ()
    masks: tuple[str, ...] = ()
    negatable: bool = True
    # Also a "not" inside the match cancels it ("The Supplier may not terminate ... for
    # convenience"), for rules whose triggers never contain one of their own.
    negation_inside: bool = False
    # Fires when no trigger is found anywhere (e.g. no governing-law clause): the triggers
    # then say what presence looks like, and `mentions` what talking about the subject
    # without settling it looks like ("There is no governing law"), for the excerpt.
    fires_when_absent: bool = False
    mentions: tuple[str, ...] = ()
    examples: tuple[str, ...] = field(default=(), repr=False)
    counter_examples: tuple[str, ...] = field(default=(), repr=False)


# Synonyms and variants, shared by the rules. An entry is a list of phrases.
LEXICON: dict[str, list[str]] = {
    "LIABILITY": ["liability|liabilities|liable"],
    "UNLIMITED": ["unlimited|uncapped|unrestricted|limitless|unbounded"],
    "CAP": ["cap|caps|limit|limits|limitation|limitations|ceiling|ceilings|maximum|restriction|restrictions"],
    "CAPPED": ["limited|capped|restricted|confined", "subject to ~3 {CAP}"],
    "NOT": ["not|never", "in no way", "in no manner"],
    "INDEMNIFY": ["indemnif*|indemnit*", "harmless"],
    "LOSS": [
        "loss|losses|claim|claims|cost|costs|expense|expenses|liability|liabilities|damage|damages|demand|demands",
        "action|actions|proceeding|proceedings|fine|fines|penalty|penalties|judgment|judgments|charges|suits",
    ],
    "EVERY": ["all|every|any"],
    "BROAD": [
        "any and all",
        "whatsoever|howsoever|whatever",
        "however|whenever ~1 arising|arise|arises|caused|occurring|incurred",
        "of every|any ~1 kind|description|nature|sort",
        "from any cause",
        "regardless|irrespective ~1 of ~3 fault|negligence|cause|how|whether",
        "whether or not ~3 caused|arising|due",
        "even if ~4 caused|negligen*",
        "including ~6 own negligence",
        "fully|full ~1 indemnified|indemnify|indemnity",
        "indemnified|indemnify ~1 in full",
        "on a full indemnity basis",
    ],
    "PARTY_NOUN": ["party|parties"],
    "RIGHT": [
        "may|can|might",
        "reserves|reserve ~2 right to",
        "has|have|retains ~2 right|option to",
        "entitled|free|permitted to",
        "at its option",
    ],
    "ANY_TIME": ["at any time", "whenever"],
    "END": ["terminate|terminated|cancel|cancelled|canceled|end|ended|discontinue|discontinued|withdraw|revoke|revoked|rescind|rescinded"],
    "AT_WILL": [
        "for any reason|cause",
        "for no reason",
        "without ~2 cause|reason|reasons|grounds|justification",
        "without stating|giving|assigning|providing ~2 reason|reasons|grounds",
        "in|at its|their|our ~1 sole|absolute|own|complete ~1 discretion",
        "at will",
        "for its|their|our? convenience",
        "for convenience",
        "whenever ~2 wish|wishes|chooses|choose|likes|wants",
        "at its option",
        "without liability|compensation",
    ],
    "MUTUAL": [
        "either|each|both ~1 party|parties",
        "either|each ~1 of the parties",
        "the parties",
        "mutual|mutually",
        "by|upon|with ~1 written? agreement|consent",
    ],
    "CAUSE_EVENT": [
        "breach|breaches|insolven*|bankrupt*|default|defaults|fails|failure|ceases|ceasing|non-payment|unpaid",
        "change of control",
        "force majeure",
        "conviction|convicted",
    ],
    "PERIOD": ["period|periods|term|terms|year|years|month|months|renewal|renewals"],
    "SUCCESSIVE": ["successive|consecutive|additional|further|another|subsequent|similar|identical|like"],
    "RENEW": ["renew|renews|renewed|renewal|extend|extends|extended|extension|prolong|prolonged|prolongs|continue|continues|continued|roll|rolls|rolled"],
    "JURISDICTION": [
        "the? state|commonwealth|province|canton|republic|kingdom|principality|emirate|region ~1 of the? CAP",
        "the? CAP",
    ],
    "GOVERNS": ["govern|governs|governed|governing|construed|interpreted|subject|applies|apply|applicable|submit|submits|made"],
}

# Wording that only looks like a risk, blanked before every rule's triggers are matched.
SHARED_MASKS: tuple[str, ...] = (
    "including|include|includes ~1 without limitation",
    "including but not limited to",
    "without limiting|prejudice",
    "limited liability company|partnership|corporation",
    "CAP limited|ltd",
)

UNCAPPED_LIABILITY = Rule(
    name="uncapped_liability",
    title="Liability is not capped",
    weight=0.55,
    triggers=(
        "{UNLIMITED} {LIABILITY}",
        "{LIABILITY} ~10 {UNLIMITED}",
        "{LIABILITY} ~8 {NOT} be? ~1 {CAPPED}",
        "{LIABILITY} ~8 without ~2 {CAP}",
        "{LIABILITY} ~8 with? no ~2 {CAP}",
        "no ~2 {CAP} ~8 {LIABILITY}",
        "no ~2 {CAP} ~2 apply|applies|applicable",
        "{CAP} ~3 {LIABILITY} ~10 not ~1 apply|applies|benefit",
        "waive|waives|waived ~6 limit|limits|limitation|limitations ~4 {LIABILITY}",
        "nothing ~10 limit|limits|restrict|restricts ~6 {LIABILITY}",
    ),
    # Liability that the law itself does not let anyone cap is not a negotiated risk.
    unless=(
        "death|injury|fraud|fraudulent",
        "gross negligence",
        "in no event|circumstances ~4 exceed",
        "not exceed",
    ),
    masks=(
        "{UNLIMITED} ~1 number|access|use|users|user|copies|storage|bandwidth|seats|revisions|downloads|support|quantity|usage|licence|license",
        "{LIABILITY} insurance|insurer|policy",
    ),
    examples=(
        "The Supplier's liability under this Agreement shall be unlimited.",
        "The Supplier accepts liability without limit.",
        "No cap shall apply.",
        "The Vendor's liability is not subject to any monetary limit.",
    ),
    counter_examples=(
        "The Supplier's liability is capped at the fees paid.",
        "The Supplier's liability shall in no event exceed EUR 1,000,000.",
        "Nothing in this Agreement limits liability for death or personal injury caused by negligence.",
        "The Customer may create an unlimited number of users.",
    ),
)

BROAD_INDEMNIFICATION = Rule(
    name="broad_indemnification",
    title="Broad indemnification",
    weight=0.40,
    triggers=(
        # Words that make any indemnity broad, whatever else the clause says, except an
        # explicit fault limit ("to the extent caused by its negligence").
        Trigger("{INDEMNIFY} ~12 {BROAD}", unless=("to the extent", "only|solely ~4 caused|arising|result|resulting")),
        Trigger("{BROAD} ~6 {INDEMNIFY}", unless=("to the extent", "only|solely ~4 caused|arising|result|resulting")),
        # "all claims", "every loss": broad unless narrowed to a cause or a subject.
        Trigger(
            "{INDEMNIFY} ~10 {EVERY} ~3 {LOSS}",
            unless=(
                "to the extent",
                "caused|arising|arise|resulting|result|attributable|due ~4 its|their|his|her|own|negligent|negligence|wilful|willful|misconduct|breach",
                "caused|arising|resulting|result|attributable|due ~3 CAP s ~2 breach|negligence|negligent|wilful|willful|misconduct|act|acts|default",
                "infringe|infringes|infringing|infringement|alleging|alleges",
                "only|solely",
                "reasonable|direct",
            ),
        ),
    ),
    masks=(
        "{INDEMNIFY} insurance|policy|cover|policies",
        "limit of indemnity",
        "indemnifying|indemnified ~1 {PARTY_NOUN}",
        "claim|claims ~2 for indemnification|indemnity",
    ),
    examples=(
        "Supplier shall keep Buyer fully indemnified against all costs, claims and expenses of every description.",
        "Customer shall indemnify Supplier against any and all claims arising from the services.",
    ),
    counter_examples=(
        "Each party shall indemnify the other for losses caused by its own negligence.",
        "The Supplier shall indemnify the Customer against any claim that the Software infringes a patent.",
        "Neither party shall be required to indemnify the other.",
    ),
)

UNILATERAL_TERMINATION = Rule(
    name="unilateral_termination",
    title="One party may terminate unilaterally",
    weight=0.35,
    triggers=(
        # Without a reason, at discretion, for convenience: unilateral whatever follows.
        "{RIGHT} ~4 {END} ~12 {AT_WILL}",
        "{RIGHT} ~4 {AT_WILL} ~4 {END}",
        "termination|terminate|cancellation ~2 for its? convenience",
        # "At any time" is unilateral unless the clause names a cause ("if the other party
        # commits a material breach").
        Trigger(
            "{RIGHT} ~4 {END} ~12 {ANY_TIME}",
            unless=("if|where|when|upon|following|should ~8 {CAUSE_EVENT}", "in the event of|that ~8 {CAUSE_EVENT}"),
        ),
        Trigger("{RIGHT} ~3 {ANY_TIME} ~4 {END}", unless=("if|where|when|upon|should ~8 {CAUSE_EVENT}",)),
    ),
    unless=(
        "{MUTUAL}",
        "{NOT} ~2 permitted|allowed|available|apply|possible",
    ),
    masks=("without prejudice ~6 right|rights",),
    negation_inside=True,
    examples=(
        "Buyer reserves the right to terminate for convenience at any time.",
        "Supplier may terminate this agreement at any time without cause.",
    ),
    counter_examples=(
        "Either party may terminate this agreement on 90 days written notice for material breach.",
        "Neither party may terminate this Agreement for convenience.",
        "The Customer may terminate this Agreement at any time if the Supplier commits a material breach.",
    ),
)

PENALTY_CLAUSE = Rule(
    name="penalty_clause",
    title="Penalty or liquidated damages",
    weight=0.30,
    triggers=(
        "penalty|penalties",
        "liquidated ~3 damages",
        "agreed|delay|fixed ~1 damages",
        "forfeit|forfeits|forfeited|forfeiture",
        "fine|fines ~1 of|equal",
        "pay ~3 fine|fines",
        "early? termination|cancellation|break|exit|break-up ~1 fee|fees|charge|charges|payment",
        "pay|pays|deduct|deducts|liable ~10 per|each|every ~1 day|week|hour|month ~4 delay|late|lateness|incomplete|overdue|downtime|beyond|after",
        "for each|every ~1 day|week|hour ~12 pay|pays|deduct",
    ),
    masks=(
        "under penalty ~2 perjury",
        "penalty-free",
        "free of ~1 penalty|charge",
        "criminal|civil|statutory|regulatory|tax|administrative|governmental ~1 penalty|penalties|fines",
        "penalty|penalties|fine|fines ~4 imposed ~2 by ~4 authority|authorities|regulator|regulators|court|law|laws|government",
    ),
    examples=(
        "Late delivery incurs a penalty of 2% of the order value per week.",
        "The Contractor shall pay liquidated damages for each day of delay.",
    ),
    counter_examples=(
        "The Customer may cancel the Order without penalty.",
        "This declaration is made under penalty of perjury.",
        "There are no liquidated damages under this Contract.",
    ),
)

AUTO_RENEWAL = Rule(
    name="auto_renewal",
    title="Renews automatically",
    weight=0.20,
    triggers=(
        Trigger("automatic|automatically|auto ~3 {RENEW}", unless=("by ~2 period|duration|length ~1 of|during",)),
        Trigger("{RENEW} ~3 automatically|automatic", unless=("by ~2 period|duration|length ~1 of|during",)),
        "auto-renew|auto-renews|auto-renewal|auto-renewed|autorenew*",
        "evergreen",
        "tacit|tacitly|deemed ~2 {RENEW}",
        "{RENEW} ~2 tacitly|tacit",
        Trigger(
            "{RENEW} ~6 {SUCCESSIVE} ~3 {PERIOD}",
            unless=(
                "may ~2 {RENEW}",
                "mutual|mutually",
                "by|upon|with ~1 written? agreement|consent",
                "agreement of ~2 parties",
                "written agreement|amendment",
                "option|request|discretion|consent",
                "new ~2 order|agreement",
            ),
        ),
        "{RENEW} itself",
        "{RENEW} ~6 period|term ~2 equal|identical",
        "from year to year",
        "from month to month",
        "year-to-year|month-to-month",
        "rolling ~2 basis",
        "roll|rolls|rolled over",
        "notice of non-renewal",
        "non-renewal notice",
        "{RENEW} ~4 at a time",
    ),
    unless=("{NOT} ~1 apply|applies",),
    masks=("renewable energy",),
    negation_inside=True,
    examples=(
        "The subscription will be extended automatically for a further 12 months.",
        "This agreement renews automatically for successive one-year terms.",
    ),
    counter_examples=(
        "This Agreement shall not renew automatically.",
        "The parties may renew this Agreement for a further term by mutual written agreement.",
        "The delivery date shall be extended by the duration of any Force Majeure Event.",
    ),
)

MISSING_GOVERNING_LAW = Rule(
    name="missing_governing_law",
    title="No governing-law clause",
    weight=0.15,
    fires_when_absent=True,
    # What a real choice of law looks like: a named jurisdiction, in a governing sense.
    triggers=(
        "{GOVERNS} ~8 law|laws ~2 of|in ~3 {JURISDICTION}",
        "{GOVERNS} ~8 CAP law|laws",
        "CAP law|laws ~3 govern|governs|governed|applies|apply|shall|will",
        "law|laws ~2 of|in ~3 {JURISDICTION} ~4 govern|governs|apply|applies|applicable|shall|will",
        "governing|applicable|proper|choice ~1 of? law|laws : ~4 CAP",
    ),
    unless=("comply|compliance|complies|observe",),
    # A heading with nothing settled after it is no choice of law.
    masks=("tbd|tbc|none", "not applicable|specified|agreed", "to be agreed|determined|inserted|confirmed"),
    mentions=(
        "governing|applicable|proper ~1 law|laws",
        "choice of law",
        "law|laws ~3 govern|governs|chosen|applies",
    ),
    negatable=True,
    examples=("There is no governing law for this agreement.", "Each party keeps the other's information secret."),
    counter_examples=(
        "This agreement is governed by the laws of England.",
        "This Agreement shall be governed by and construed in accordance with the laws of New York.",
        "Governing law: Switzerland.",
    ),
)

RULES: tuple[Rule, ...] = (
    UNCAPPED_LIABILITY,
    BROAD_INDEMNIFICATION,
    UNILATERAL_TERMINATION,
    PENALTY_CLAUSE,
    AUTO_RENEWAL,
    MISSING_GOVERNING_LAW,
)
RULE_NAMES: tuple[str, ...] = tuple(rule.name for rule in RULES)
