"""Whole contracts for the routing decisions, and a harmless one to put a clause into.

Plain data (no Django), like the rest of the corpus. `expected_rules` is the set of
findings the rules must produce; routing follows from it and the tenant's settings.
"""

from __future__ import annotations

# Nothing a lawyer would flag: capped liability, fault-based mutual indemnity, termination
# for breach, no penalties, a fixed term, a governing law. Place {clause} anywhere.
HARMLESS_SERVICES_AGREEMENT = (
    "SERVICES AGREEMENT. This Agreement is made between Northwind Ltd (the Supplier) and Contoso GmbH (the Buyer). "
    "1. Services. The Supplier shall provide the consulting services described in Schedule 1 with reasonable "
    "skill and care. "
    "2. Fees. The Buyer shall pay the fees set out in Schedule 2 within thirty days of a correct invoice. "
    "3. Liability. Each party's total liability under this Agreement shall not exceed the fees paid in the "
    "twelve months before the claim. "
    "4. Indemnity. Each party shall indemnify the other against third-party claims to the extent caused by its "
    "own negligence. "
    "{clause} "
    "5. Term. This Agreement starts on the Effective Date and ends after twelve months. "
    "6. Termination. Either party may terminate this Agreement by written notice if the other commits a material "
    "breach and fails to remedy it within thirty days. "
    "7. Governing law. This Agreement is governed by the laws of England and Wales."
)

# The clauses the rules used to wave through, and the rule each must trigger.
PARAPHRASED_RISKS: list[tuple[str, str]] = [
    ("The Supplier's liability under this Agreement shall be unlimited.", "uncapped_liability"),
    ("The Supplier accepts liability without limit for any breach of this Agreement.", "uncapped_liability"),
    ("Buyer reserves the right to terminate for convenience at any time.", "unilateral_termination"),
    ("The subscription will be extended automatically for a further 12 months.", "auto_renewal"),
    (
        "Supplier shall keep Buyer fully indemnified against all costs, claims and expenses of every description.",
        "broad_indemnification",
    ),
]

# A harmless contract of more than 800 words (text.LONG_TEXT_WORDS) with no finding at
# all: what "review when unsure" is for.
_BOILERPLATE = [
    "The Supplier shall perform the Services in accordance with the Specification and Good Industry Practice.",
    "The Buyer shall provide the Supplier with access to its premises and information reasonably required.",
    "Each party shall keep the other party's Confidential Information secret and use it only for this Agreement.",
    "The Supplier shall ensure that its personnel comply with the Buyer's reasonable site rules.",
    "All Intellectual Property Rights in the Deliverables shall vest in the Buyer on payment of the fees.",
    "The Supplier warrants that the Deliverables will conform to the Specification for ninety days after delivery.",
    "The Buyer shall notify the Supplier in writing of any defect within the warranty period.",
    "The Supplier shall correct any defect notified within the warranty period at its own cost.",
    "Invoices shall be issued monthly in arrears and shall state the purchase order number.",
    "The Buyer may withhold payment of any invoiced amount that it disputes in good faith.",
    "The parties shall meet monthly to review the progress of the Services against the plan.",
    "Each party shall appoint a representative with authority to take decisions on its behalf.",
    "Any change to the Services shall be agreed in writing through the change control procedure.",
    "The Supplier shall maintain complete and accurate records of the time spent on the Services.",
    "Each party shall comply with all applicable anti-bribery and anti-slavery legislation.",
    "The Supplier shall process personal data only on the documented instructions of the Buyer.",
    "Neither party shall assign this Agreement without the prior written consent of the other.",
    "Notices shall be given in writing and delivered by hand or by recorded delivery to the registered office.",
    "No failure or delay in exercising any right shall operate as a waiver of that right.",
    "If any provision of this Agreement is found invalid, the remaining provisions shall remain in force.",
    "This Agreement constitutes the entire agreement between the parties relating to its subject matter.",
    "Nothing in this Agreement creates a partnership or agency relationship between the parties.",
    "This Agreement may be executed in any number of counterparts, each of which is an original.",
    "A person who is not a party to this Agreement has no right to enforce any of its terms.",
]
LONG_HARMLESS_CONTRACT = (
    "FRAMEWORK SERVICES AGREEMENT. "
    + " ".join(f"{number}. {sentence}" for number, sentence in enumerate(_BOILERPLATE * 3, start=1))
    + " This Agreement is governed by the laws of Ireland."
)

WHOLE_CONTRACTS: list[dict] = [
    {
        "name": "capped SaaS subscription",
        "text": (
            "SOFTWARE AS A SERVICE AGREEMENT. The Provider grants the Customer a non-exclusive right to use the "
            "Platform for an unlimited number of users. The Provider's aggregate liability shall in no event exceed "
            "the Subscription Fees paid in the preceding twelve months, and nothing in this Agreement limits "
            "liability for death or personal injury caused by negligence. The Provider shall indemnify the Customer "
            "against any claim that the Platform infringes a third party's intellectual property rights. Either party "
            "may terminate for material breach on thirty days' notice. The Subscription ends at the end of the Term "
            "unless renewed by a new Order Form. This Agreement is governed by the laws of the State of New York."
        ),
        "expected_rules": set(),
    },
    {
        "name": "one-sided distribution agreement",
        "text": (
            "DISTRIBUTION AGREEMENT. The Distributor's liability under this Agreement is not subject to any monetary "
            "limit. The Distributor shall indemnify and hold harmless the Manufacturer from and against any and all "
            "losses howsoever arising. The Manufacturer may terminate this Agreement at any time in its sole "
            "discretion. This Agreement is governed by Swiss law."
        ),
        "expected_rules": {"uncapped_liability", "broad_indemnification", "unilateral_termination"},
    },
    {
        "name": "construction contract with delay damages",
        "text": (
            "CONSTRUCTION CONTRACT. The Contractor shall complete the Works by the Completion Date. If it fails to do "
            "so, the Contractor shall pay liquidated damages of EUR 10,000 for each day of delay. The Employer's "
            "liability is capped at the Contract Price. This Contract shall be governed by the laws of the Netherlands."
        ),
        "expected_rules": {"penalty_clause"},
    },
    {
        "name": "everything a lawyer dreads",
        "text": (
            "SUPPLY AGREEMENT. No cap shall apply to the Supplier's liability. The Supplier shall keep the Buyer fully "
            "indemnified against all losses of every description. The Buyer reserves the right to cancel any order for "
            "any reason. A contractual penalty of 5% of the order value is payable for each late delivery. The Agreement "
            "renews automatically for successive periods of one year. There is no governing law for this agreement."
        ),
        "expected_rules": {
            "uncapped_liability", "broad_indemnification", "unilateral_termination", "penalty_clause", "auto_renewal",
            "missing_governing_law",
        },
    },
    {
        "name": "auto-renewing maintenance without a governing law",
        "text": (
            "MAINTENANCE AGREEMENT. The Contractor shall maintain the Equipment in good working order. This Agreement "
            "shall continue from year to year unless terminated by either party on three months' notice. The "
            "Contractor's liability shall be limited to the annual maintenance charge."
        ),
        "expected_rules": {"auto_renewal", "missing_governing_law"},
    },
    {
        "name": "negations a keyword match gets wrong",
        "text": (
            "LICENCE AGREEMENT. Neither party may terminate this Agreement for convenience. No penalty or liquidated "
            "damages shall be payable for late delivery. This Agreement shall not renew automatically. The Licensee "
            "is not required to indemnify the Licensor for any loss. The Licensor's liability is capped at the licence "
            "fee. This Agreement shall be governed by and construed in accordance with the laws of Sweden."
        ),
        "expected_rules": set(),
    },
]
