"""Review tasks as Agent Inbox's HumanInterrupt, and its HumanResponse as our decisions
(reviews.agent_inbox): the translation alone, on tasks the real graph made."""

from __future__ import annotations

import pytest

from config.api_errors import InvalidInput
from reviews.agent_inbox import decision_from_responses, human_interrupt, inbox_thread_values, task_description
from reviews.services import review_decision_validate
from tests.api_flow import pending, submit
from tests.factories import CRITICAL_RISK_TEXT, HIGH_RISK_LARGE_PAYMENT_TEXT

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def tasks(acme):
    return pending(submit(acme, HIGH_RISK_LARGE_PAYMENT_TEXT, title="Supply MSA"))


def test_a_task_is_one_human_interrupt_with_what_an_edit_changes(tasks):
    legal = human_interrupt(tasks["legal"], can_decide=True)
    assert legal["action_request"] == {
        "action": "legal_review",
        "args": {"decision": "approve", "amendments": "", "comment": ""},
    }
    assert legal["config"] == {"allow_accept": True, "allow_edit": True, "allow_respond": True, "allow_ignore": True}
    # Finance has nothing to amend.
    finance = human_interrupt(tasks["finance"], can_decide=True)
    assert finance["action_request"] == {"action": "finance_review", "args": {"decision": "approve", "comment": ""}}


def test_a_caller_who_may_not_decide_is_offered_nothing(tasks):
    assert set(human_interrupt(tasks["legal"], can_decide=False)["config"].values()) == {False}


def test_the_description_says_risk_recommendation_findings_and_shows_an_excerpt(tasks):
    legal = tasks["legal"]
    text = task_description(legal)
    assert text.startswith("## Legal review: Supply MSA")
    assert "**Risk score:** 0.82" in text
    assert legal.payload["recommendation"] in text
    for finding in legal.payload["findings"]:
        assert finding["title"] in text
    assert "```text\nMASTER SERVICES AGREEMENT." in text
    assert f"Review task `{legal.pk}`" in text
    finance = task_description(tasks["finance"])
    assert "USD 500,000.00" in finance and "Finance approval" in finance
    assert "`decision` to approve or reject," in finance


def test_contract_text_cannot_inject_markdown(acme):
    """The excerpt is fenced by more backticks than any run in the text, so nothing in
    a contract renders as a heading, a link or an image in the reviewer's inbox."""
    text = HIGH_RISK_LARGE_PAYMENT_TEXT + " ```` ## Sign here ![x](https://evil.example/p.png) ````"
    legal = pending(submit(acme, text))["legal"]
    description = task_description(legal)
    excerpt = description.split("### Contract excerpt\n\n", 1)[1]
    assert excerpt.startswith("`````text\n")
    assert "\n`````\n" in excerpt


def test_signoff_names_the_first_signer(acme):
    from tests.api_flow import resume

    legal = pending(submit(acme, CRITICAL_RISK_TEXT))["legal"]
    assert resume(acme.reviewer, acme, legal).status_code == 202
    signoff = pending(legal.contract)["signoff"]
    assert "Approved by legal: **acme-reviewer**" in task_description(signoff)


@pytest.mark.parametrize(
    ("response", "decision"),
    [
        (
            [{"type": "accept", "args": {"action": "legal_review", "args": {"decision": "approve"}}}],
            {"decision": "approve"},
        ),
        ([{"type": "ignore", "args": None}], {"decision": "reject"}),
        (
            [{"type": "response", "args": "Cap the liability first."}],
            {"decision": "reject", "comment": "Cap the liability first."},
        ),
        (
            [
                {
                    "type": "edit",
                    "args": {
                        "action": "legal_review",
                        "args": {
                            "decision": "amend",
                            "amendments": "Cap liability at fees paid.\n\nDelete the indemnity.\n",
                            "comment": "see 2",
                        },
                    },
                }
            ],
            {
                "decision": "amend",
                "amendments": ["Cap liability at fees paid.", "Delete the indemnity."],
                "comment": "see 2",
            },
        ),
        (
            [
                {
                    "type": "edit",
                    "args": {
                        "action": "legal_review",
                        "args": {"decision": "Amend", "amendments": '["Cap liability."]', "comment": ""},
                    },
                }
            ],
            {"decision": "amend", "amendments": ["Cap liability."]},
        ),
        (
            [
                {
                    "type": "edit",
                    "args": {
                        "action": "legal_review",
                        "args": {"decision": "reject", "amendments": "", "comment": "no"},
                    },
                }
            ],
            {"decision": "reject", "comment": "no"},
        ),
        # One HumanResponse on its own, and the HITL middleware's wrapper.
        ({"type": "accept", "args": None}, {"decision": "approve"}),
        ({"decisions": [{"type": "approve"}]}, {"decision": "approve"}),
        ({"decisions": [{"type": "reject", "message": "too risky"}]}, {"decision": "reject", "comment": "too risky"}),
    ],
)
def test_human_responses_become_our_decisions(tasks, response, decision):
    translated = decision_from_responses(response, tasks["legal"])
    assert translated == decision
    # ... and each is a decision the legal review's schema accepts.
    review_decision_validate(kind="legal", data=translated)


@pytest.mark.parametrize(
    ("response", "field"),
    [
        ([], "command.resume"),
        ([{"type": "accept"}, {"type": "ignore"}], "command.resume"),
        ("approve", "command.resume"),
        ([{"type": "maybe", "args": None}], "command.resume.0.type"),
        ([{"type": "response", "args": "  "}], "command.resume.0.args"),
        (
            [{"type": "edit", "args": {"action": "finance_review", "args": {"decision": "approve"}}}],
            "command.resume.0.args.action",
        ),
        (
            [
                {
                    "type": "edit",
                    "args": {"action": "legal_review", "args": {"decision": "approve", "status": "resolved"}},
                }
            ],
            "command.resume.0.args.args.status",
        ),
        ([{"type": "edit", "args": "approve"}], "command.resume.0.args"),
        (
            [{"type": "edit", "args": {"args": {"decision": "amend", "amendments": "[not json"}}}],
            "command.resume.0.args.args.amendments",
        ),
    ],
)
def test_a_malformed_response_names_its_field(tasks, response, field):
    with pytest.raises(InvalidInput) as refused:
        decision_from_responses(response, tasks["legal"])
    assert field in refused.value.fields, refused.value.fields
    assert refused.value.message.startswith(field)


def test_thread_values_show_the_task_and_its_decision(acme, tasks):
    from tests.api_flow import resume

    legal = tasks["legal"]
    values = inbox_thread_values(legal)
    assert values["decision"] is None and values["status"] == "pending" and values["kind"] == "legal"
    assert resume(acme.reviewer, acme, legal, {"decision": "reject", "comment": "no"}).status_code == 202
    legal.refresh_from_db()
    decided = inbox_thread_values(legal)["decision"]
    assert decided["decision"] == "reject" and decided["comment"] == "no"
    assert decided["decided_by_username"] == "acme-reviewer"
    assert "decided_by" not in decided  # the user's id stays on the server
