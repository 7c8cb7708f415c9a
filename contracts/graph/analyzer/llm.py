"""The optional LLM analyser (RISK_ANALYZER=llm): any LangChain chat model, asked for the
same findings as the rules, merged with them.

- The model comes from `init_chat_model(RISK_LLM_MODEL, model_provider=RISK_LLM_PROVIDER)`;
  its key is whatever the provider's integration reads from the environment
  (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...). The integration package is an extra
  (pyproject.toml's `llm-*`), not a required install.
- It is asked for a `FindingList` (findings.py): through the model's structured output
  where it has one, else through format instructions and a parser.
- The rules always run first. A finding from either counts; when both found the same
  rule the higher weight wins, so the merged score is never below either one's.
- A call that fails, returns something unusable, or takes longer than
  RISK_LLM_TIMEOUT_SECONDS leaves the rules' findings alone, and the fallback is
  recorded (the `analysis` of the graph state, then the contract).

This runs in the graph's `analyze` node, which never interrupts: its result is
checkpointed once and never recomputed on resume, so the model's answer cannot change
under a reviewer. Nothing here touches the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from contracts.graph.analyzer.findings import Finding, FindingList
from contracts.graph.analyzer.rules import RULES

logger = logging.getLogger(__name__)

# How much of a long contract the model is shown; the rules read all of it.
MAX_PROMPT_CHARS = 100_000


class LLMAnalysisFailed(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # "timeout", "error" or "unusable"
        self.detail = detail


def risk_chat_model():
    """The chat model the settings name. Imported lazily: the rules-only default never
    loads LangChain's model machinery."""
    from django.conf import settings
    from langchain.chat_models import init_chat_model

    return init_chat_model(settings.RISK_LLM_MODEL, model_provider=settings.RISK_LLM_PROVIDER or None)


def _instructions() -> str:
    lines = [
        "You review commercial contracts for risks a lawyer must see before signing.",
        "Report each of these risks that the contract contains (at most one finding per rule):",
    ]
    for rule in RULES:
        if rule.fires_when_absent:
            what = f"the contract has no clause choosing a governing law (e.g. {rule.examples[0]!r})"
        else:
            what = f"e.g. {'; '.join(repr(e) for e in rule.examples[:2])}"
        not_it = "; ".join(repr(e) for e in rule.counter_examples[:2])
        lines.append(f"- {rule.name} ({rule.title}, usual weight {rule.weight}): {what}. Not this: {not_it}.")
    lines += [
        "Read negations and exceptions carefully: 'shall not be limited' is uncapped, 'shall in no event exceed' is capped.",
        "For each finding copy the clause word for word into `excerpt` and give a weight between 0 and 1.",
        "Report nothing that is not in the contract. An empty list is a valid answer.",
    ]
    return "\n".join(lines)


def _ask(model: Any, text: str) -> FindingList:
    messages: list[tuple[str, str]] = [("system", _instructions()), ("human", text[:MAX_PROMPT_CHARS])]
    try:
        structured = model.with_structured_output(FindingList)
    except NotImplementedError:
        structured = None
    if structured is not None:
        result = structured.invoke(messages)
        return result if isinstance(result, FindingList) else FindingList.model_validate(result)
    # A model without tool calling: ask for JSON, parse it with the same model class.
    from langchain_core.output_parsers import PydanticOutputParser

    parser = PydanticOutputParser(pydantic_object=FindingList)
    messages[0] = ("system", _instructions() + "\n\n" + parser.get_format_instructions())
    return parser.invoke(model.invoke(messages))


def _with_deadline(call: Callable[[], FindingList], timeout: float) -> FindingList:
    """`call()`, or LLMAnalysisFailed("timeout") after `timeout` seconds. The call runs in
    a daemon thread: a hung provider cannot hold the worker (and its run lease) past the
    deadline; the thread is abandoned and ends when the provider's own timeout fires."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller's thread as is
            box["error"] = exc

    thread = threading.Thread(target=run, name="risk-llm-call", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise LLMAnalysisFailed("timeout", f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _located(finding: Finding, text: str) -> dict:
    """The LLM's finding with the rule's title and, when its excerpt is in the text, its
    span (a model's offsets are not trusted; an excerpt that is not found keeps -1)."""
    rule = next(r for r in RULES if r.name == finding.rule)
    excerpt = " ".join(finding.excerpt.split())
    start = text.find(finding.excerpt) if finding.excerpt else -1
    end = start + len(finding.excerpt) if start >= 0 else -1
    return Finding(
        rule=finding.rule, title=rule.title, weight=finding.weight, excerpt=excerpt[:200], start=start, end=end,
        source="llm",
    ).model_dump()


def llm_findings(text: str, *, model: Any, timeout: float) -> list[dict]:
    """The model's findings for `text`, or LLMAnalysisFailed."""
    try:
        answer = _with_deadline(lambda: _ask(model, text), timeout)
    except LLMAnalysisFailed:
        raise
    except Exception as exc:
        # Provider errors, refusals, malformed JSON: the reason is kept, the run goes on.
        reason = "timeout" if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower() else "error"
        raise LLMAnalysisFailed(reason, f"{type(exc).__name__}: {exc}"[:500]) from exc
    return [_located(finding, text) for finding in answer.findings]


def findings_merge(rules: list[dict], llm: list[dict]) -> list[dict]:
    """One finding per rule, in the rules' order: either analyser's counts, the higher
    weight wins (the rules' on a tie: their span is exact)."""
    best: dict[str, dict] = {}
    for finding in [*rules, *llm]:
        kept = best.get(finding["rule"])
        if kept is None or finding["weight"] > kept["weight"]:
            best[finding["rule"]] = finding
    order = {rule.name: index for index, rule in enumerate(RULES)}
    return sorted(best.values(), key=lambda f: order[f["rule"]])


def findings_with_llm(
    text: str, rules: list[dict], *, timeout: float, model_factory: Callable[[], Any] | None = None
) -> tuple[list[dict], dict]:
    """The merged findings and what happened: {"sources": [...], "fallback": None or
    {"reason", "detail"}}. Never raises: on any failure the rules' findings stand."""
    try:
        # Looked up at call time, so a test can swap `risk_chat_model` for a fake.
        model = (model_factory or risk_chat_model)()
        found = llm_findings(text, model=model, timeout=timeout)
    except LLMAnalysisFailed as failure:
        logger.warning("LLM risk analysis failed (%s), the rules' findings stand: %s", failure.reason, failure.detail)
        return rules, {"sources": ["rules"], "fallback": {"reason": failure.reason, "detail": failure.detail}}
    except Exception as exc:  # the model could not even be built (missing package, bad name)
        detail = f"{type(exc).__name__}: {exc}"[:500]
        logger.warning("LLM risk analyser unavailable, the rules' findings stand: %s", detail)
        return rules, {"sources": ["rules"], "fallback": {"reason": "error", "detail": detail}}
    return findings_merge(rules, found), {"sources": ["rules", "llm"], "fallback": None, "llm_findings": len(found)}
