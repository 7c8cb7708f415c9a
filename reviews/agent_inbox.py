"""Review tasks as Agent Inbox shows them, and its answers as our decisions.

Agent Inbox (langchain-ai/agent-inbox) renders an interrupt whose value is a list of
HumanInterrupt (`action_request` {action, args}, `config` {allow_accept, allow_edit,
allow_respond, allow_ignore}, a markdown `description`) and answers `interrupts[0]` of a
thread with `[HumanResponse]` ({type: accept | edit | response | ignore, args}). It only
ever answers the first interrupt of a thread, with a bare value, so the Agent Inbox
prefix shows every review task as a thread of its own (contracts.platform.inbox_apis):
legal and finance pending together are two items, each answerable.

The translation, both ways (also in the README):

    HumanResponse                         our decision
    accept                                approve
    edit     args.args.decision/          decision as given (approve, reject, amend),
             amendments/comment           amendments one per line, the comment
    response args: text                   reject, with the text as the comment
    ignore                                reject (the action is not taken)

Every answer then goes through the same resume service as the REST API's, which
validates it against the task's schema and records it once.
"""

from __future__ import annotations

import json
import re
from typing import Any

from config.api_errors import InvalidInput
from contracts.graph.decisions import OPTIONS
from reviews.apis import CONTRACT_EXCERPT_CHARS
from reviews.models import ReviewKind, ReviewTask

ACTIONS = {ReviewKind.LEGAL: "legal_review", ReviewKind.FINANCE: "finance_review", ReviewKind.SIGNOFF: "signoff_review"}
_TITLES = {
    ReviewKind.LEGAL: "Legal review",
    ReviewKind.FINANCE: "Finance approval",
    ReviewKind.SIGNOFF: "Critical sign-off",
}
RESPONSE_TYPES = ("accept", "edit", "response", "ignore")


def _options(task: ReviewTask) -> list[str]:
    return list(task.payload.get("options") or OPTIONS[task.kind])


def _fenced(text: str) -> str:
    """Contract text in a code fence longer than any run of backticks in it: shown as
    written, never rendered as markdown (no links, images or headings of its own)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _inline(text: str) -> str:
    return " ".join(str(text).split()).replace("`", "'")


def task_description(task: ReviewTask) -> str:
    """The markdown Agent Inbox shows above the answer: what is asked, the risk, the
    recommendation, the findings (or payments, or the first signer) and an excerpt."""
    payload = task.payload
    contract = task.contract
    lines = [f"## {_TITLES.get(task.kind, task.kind)}: {_inline(contract.title) or 'untitled contract'}", ""]
    lines.append(f"**Risk score:** {float(payload.get('risk_score') or 0):.2f}  ")
    if payload.get("recommendation"):
        lines.append(f"**Recommendation:** {_inline(payload['recommendation'])}")
    lines.append("")
    findings = payload.get("findings") or []
    if findings:
        lines += ["### Findings", ""]
        for finding in findings:
            excerpt = f": `{_inline(finding['excerpt'])}`" if finding.get("excerpt") else ""
            lines.append(
                f"- **{_inline(finding.get('title', finding.get('rule', '')))}** "
                f"(weight {float(finding.get('weight') or 0):.2f}){excerpt}"
            )
        lines.append("")
    if payload.get("unsure_reasons"):
        lines += ["### Why the analyser is unsure", ""]
        lines += [f"- {_inline(reason.get('message', reason))}" for reason in payload["unsure_reasons"]]
        lines.append("")
    if payload.get("payments"):
        lines += [f"### Payments at or above the limit ({float(payload.get('finance_limit') or 0):,.2f})", ""]
        for payment in payload["payments"]:
            excerpt = f": `{_inline(payment['excerpt'])}`" if payment.get("excerpt") else ""
            lines.append(f"- **{payment.get('currency') or ''} {float(payment.get('amount') or 0):,.2f}**{excerpt}")
        lines.append("")
    if payload.get("first_signer"):
        lines += [
            f"Approved by legal: **{_inline(payload['first_signer'].get('username') or '?')}**; "
            "the sign-off must come from someone else.",
            "",
        ]
    lines += ["### Contract excerpt", "", _fenced(contract.text[:CONTRACT_EXCERPT_CHARS]), ""]
    options = _options(task)
    lines += ["### How to answer", "", "- **Accept**: approve."]
    choices = " or ".join([", ".join(options[:-1]), options[-1]] if len(options) > 1 else options)
    lines.append(
        f"- **Edit**: set `decision` to {choices}"
        + (" (amend: one amendment per line in `amendments`)" if "amend" in options else "")
        + ", with an optional `comment`."
    )
    lines += [
        "- **Respond**: reject, with your text as the comment.",
        "- **Ignore**: reject.",
        "",
        f"Review task `{task.pk}` of contract `{task.contract_id}`.",
    ]
    return "\n".join(lines)


def human_interrupt(task: ReviewTask, *, can_decide: bool) -> dict[str, Any]:
    """The task as one HumanInterrupt. `args` are what an edit changes: the decision
    (approve by default), the amendments (legal review) and a comment, as strings
    (Agent Inbox edits every argument as text)."""
    options = _options(task)
    args = {"decision": "approve"}
    if "amend" in options:
        args["amendments"] = ""
    args["comment"] = ""
    return {
        "action_request": {"action": ACTIONS.get(task.kind, task.kind), "args": args},
        "config": {
            "allow_accept": can_decide and "approve" in options,
            "allow_edit": can_decide,
            "allow_respond": can_decide and "reject" in options,
            "allow_ignore": can_decide and "reject" in options,
        },
        "description": task_description(task),
    }


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", fields={field: [message]})


def _amendments(value: Any, field: str) -> list[str]:
    """Amendments as Agent Inbox sends them (a string: one per line, or a JSON list), or
    a list already."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise _invalid(field, "one amendment per line.")
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise _invalid(field, "a JSON list that does not parse; or give one amendment per line.") from None
        if isinstance(parsed, list):
            return parsed
    return [line.strip() for line in text.splitlines() if line.strip()]


def _edited(args: Any, task: ReviewTask, field: str) -> dict[str, Any]:
    # `args` is the ActionRequest Agent Inbox edited ({action, args: {...}}), or its args.
    if isinstance(args, dict) and isinstance(args.get("args"), dict):
        action = args.get("action")
        if action not in (None, ACTIONS.get(task.kind)):
            raise _invalid(f"{field}.action", f"this task's action is {ACTIONS.get(task.kind)}.")
        args, field = args["args"], f"{field}.args"
    if not isinstance(args, dict):
        raise _invalid(field, "the edited action request, {action, args: {decision, amendments, comment}}.")
    unknown = sorted(set(args) - {"decision", "amendments", "comment"})
    if unknown:
        raise _invalid(f"{field}.{unknown[0]}", "unknown argument; edit decision, amendments or comment.")
    decision: dict[str, Any] = {"decision": str(args.get("decision") or "").strip().lower()}
    if args.get("amendments") not in (None, "", []):
        decision["amendments"] = _amendments(args["amendments"], f"{field}.amendments")
    if args.get("comment"):
        decision["comment"] = str(args["comment"])
    return decision


def decision_from_responses(resume: Any, task: ReviewTask) -> dict[str, Any]:
    """Agent Inbox's answer (`[HumanResponse]`, one HumanResponse, or the HITL
    middleware's `{"decisions": [...]}` it sends for interrupts of that shape) as our
    decision data, for the resume service to validate and record."""
    field = "command.resume"
    if isinstance(resume, dict) and "decisions" in resume:
        resume, field = resume["decisions"], "command.resume.decisions"
    if isinstance(resume, list):
        if len(resume) != 1:
            raise _invalid(field, "one response: each review task is a thread with one question.")
        resume, field = resume[0], f"{field}.0"
    if not isinstance(resume, dict) or not isinstance(resume.get("type"), str):
        raise _invalid(field, 'a HumanResponse, {"type": "accept" | "edit" | "response" | "ignore", "args": ...}.')
    kind, args = resume["type"], resume.get("args")
    if kind == "reject":  # the HITL middleware's rejection, with an optional message
        message = resume.get("message") or (args if isinstance(args, str) else "")
        return {"decision": "reject", **({"comment": message} if message else {})}
    # The middleware's names for the same answers.
    kind = {"approve": "accept", "respond": "response"}.get(kind, kind)
    if kind == "accept":
        return {"decision": "approve"}
    if kind == "ignore":
        return {"decision": "reject"}
    if kind == "response":
        text = args if isinstance(args, str) else (resume.get("message") or "")
        if not isinstance(text, str) or not text.strip():
            raise _invalid(f"{field}.args", "the text of your response.")
        return {"decision": "reject", "comment": text}
    if kind == "edit":
        return _edited(args if args is not None else (resume.get("edited_action") or {}), task, f"{field}.args")
    raise _invalid(f"{field}.type", f"one of {', '.join(RESPONSE_TYPES)}.")


def inbox_thread_values(task: ReviewTask) -> dict[str, Any]:
    """A review task's thread values: what Agent Inbox's state view shows."""
    decision = task.decision or {}
    return {
        "review_task_id": str(task.pk),
        "kind": task.kind,
        "status": task.status,
        "contract_id": str(task.contract_id),
        "title": task.contract.title,
        "risk_score": task.risk_score,
        "recommendation": task.payload.get("recommendation"),
        "decision": {
            key: decision[key]
            for key in ("decision", "amendments", "comment", "decided_by_username", "decided_at")
            if key in decision
        }
        or None,
    }
