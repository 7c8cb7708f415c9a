"""What the LangGraph SDKs send and what they read back.

Inputs are DRF serializers that refuse what they do not know (a field LangGraph Platform
has and we do not serve is a 422 naming it, never silently ignored). Outputs are built
by plain functions from our rows (the system of record) and, for get_state, LangGraph's
own state snapshot; the *OutputSerializer classes only document them (the OpenAPI
schema, which the schemathesis test checks every answer against).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from importlib.metadata import version
from typing import Any

from rest_framework import serializers

from contracts.apis import ContractListCreateApi
from contracts.graph.builder import GRAPH_ID
from contracts.graph.nodes import NODE_KINDS
from contracts.models import FINAL_STATUSES, Contract, ContractStatus, Run
from contracts.selectors import THREAD_STATUSES
from tenants.apis import StrictInputSerializer
from tenants.models import Tenant

# The one assistant: LangGraph's system assistant id for a graph, uuid5(NAMESPACE_URL,
# graph_id), so clients that compute it (or pass the graph's name) both find it.
ASSISTANT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, GRAPH_ID))
ASSISTANT_NAMES = frozenset({ASSISTANT_ID, GRAPH_ID})
RUN_STATUSES = ("pending", "running", "error", "success", "timeout", "interrupted")
STREAM_MODES = (
    "values",
    "updates",
    "events",
    "messages",
    "messages-tuple",
    "custom",
    "debug",
    "tasks",
    "checkpoints",
    "tools",
    "lifecycle",
)
MAX_PAGE = 100
MAX_METADATA_KEYS = 64
NODE_OF_KIND = {kind: node for node, kind in NODE_KINDS.items()}
API_VERSION = "1.0.0"
LANGGRAPH_VERSION = version("langgraph")


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- Inputs -----------------------------------------------------------------------------


def _metadata_field(**kwargs: Any) -> serializers.DictField:
    return serializers.DictField(child=serializers.JSONField(), required=False, **kwargs)


def _metadata_check(value: dict) -> dict:
    if len(value) > MAX_METADATA_KEYS:
        raise serializers.ValidationError(f"At most {MAX_METADATA_KEYS} keys.")
    return value


class NotSupported(serializers.JSONField):
    """A field LangGraph Platform has and this server does not serve: accepted only when
    absent, null or empty, so a client relying on it learns so (422 naming it)."""

    def __init__(self, why: str, **kwargs: Any) -> None:
        self.why = why
        super().__init__(required=False, allow_null=True, **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if data not in (None, "", [], {}, False, 0):
            raise serializers.ValidationError(f"Not supported: {self.why}")
        return None


class AssistantSearchInputSerializer(StrictInputSerializer):
    graph_id = serializers.CharField(required=False, allow_null=True, max_length=200)
    name = serializers.CharField(required=False, allow_null=True, max_length=200)
    metadata = _metadata_field(allow_null=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE, default=10)
    offset = serializers.IntegerField(required=False, min_value=0, default=0)
    sort_by = serializers.ChoiceField(
        required=False, allow_null=True, choices=["assistant_id", "graph_id", "name", "created_at", "updated_at"]
    )
    sort_order = serializers.ChoiceField(required=False, allow_null=True, choices=["asc", "desc"])
    select = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, allow_null=True, max_length=20
    )
    response_format = serializers.ChoiceField(required=False, allow_null=True, choices=["array", "object"])


class ThreadCreateInputSerializer(StrictInputSerializer):
    thread_id = serializers.UUIDField(
        required=False, allow_null=True, help_text="A thread is a contract: its id is a UUID."
    )
    metadata = _metadata_field(allow_null=True)
    if_exists = serializers.ChoiceField(choices=["raise", "do_nothing"], required=False, default="raise")
    ttl = NotSupported("threads are contracts, kept with their audit trail")
    supersteps = NotSupported("a thread's state is written by its graph alone")

    def validate_metadata(self, value: dict | None) -> dict:
        return _metadata_check(value or {})


class ThreadPatchInputSerializer(StrictInputSerializer):
    metadata = _metadata_field(allow_null=True)
    ttl = NotSupported("threads are contracts, kept with their audit trail")

    def validate_metadata(self, value: dict | None) -> dict:
        return _metadata_check(value or {})


class ThreadSearchInputSerializer(StrictInputSerializer):
    metadata = _metadata_field(allow_null=True)
    ids = serializers.ListField(child=serializers.UUIDField(), required=False, allow_null=True, max_length=MAX_PAGE)
    status = serializers.ChoiceField(choices=THREAD_STATUSES, required=False, allow_null=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE, default=10)
    offset = serializers.IntegerField(required=False, min_value=0, default=0)
    sort_by = serializers.ChoiceField(
        choices=["thread_id", "status", "created_at", "updated_at", "state_updated_at"], required=False, allow_null=True
    )
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], required=False, allow_null=True)
    select = serializers.ListField(
        child=serializers.ChoiceField(
            choices=[
                "thread_id",
                "created_at",
                "updated_at",
                "state_updated_at",
                "metadata",
                "status",
                "values",
                "interrupts",
                "config",
                "error",
            ]
        ),
        required=False,
        allow_null=True,
    )
    values = NotSupported("filter on metadata or status")
    extract = NotSupported("read the thread's values")


class ThreadCountInputSerializer(StrictInputSerializer):
    metadata = _metadata_field(allow_null=True)
    status = serializers.ChoiceField(choices=THREAD_STATUSES, required=False, allow_null=True)
    values = NotSupported("filter on metadata or status")


class StateUpdateInputSerializer(StrictInputSerializer):
    """Only Agent Inbox's "resolve": {values: null, as_node: "__end__"}, which ends the
    thread, i.e. cancels its contract. Any other write to a thread's state would let a
    client skip or rewrite a review; the graph writes its state alone."""

    values = serializers.JSONField(required=False, allow_null=True)
    as_node = serializers.CharField(required=False, allow_null=True, max_length=100)
    checkpoint = NotSupported("the state is only ever ended, at its latest checkpoint")
    checkpoint_id = NotSupported("the state is only ever ended, at its latest checkpoint")

    def validate(self, attrs: dict) -> dict:
        if attrs.get("values") is not None:
            raise serializers.ValidationError({"values": ["Only null: the graph writes a thread's state alone."]})
        if attrs.get("as_node") != "__end__":
            raise serializers.ValidationError({"as_node": ['Only "__end__", which ends (cancels) the thread.']})
        return attrs


class CommandField(serializers.JSONField):
    """`command`: only `resume` (review decisions); `goto` and `update` would move or
    rewrite the graph past a review."""

    def to_internal_value(self, data: Any) -> Any:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise serializers.ValidationError('Expected an object like {"resume": ...}.')
        unknown = sorted(set(data) - {"resume", "goto", "update"})
        if unknown:
            raise serializers.ValidationError(f"{unknown[0]}: unknown key.")
        for key in ("goto", "update"):
            if data.get(key) not in (None, [], {}, ""):
                raise serializers.ValidationError(f"{key}: not supported; only resume (a review decision).")
        if "resume" not in data:
            raise serializers.ValidationError("resume: required.")
        return {"resume": data["resume"]}


class StreamModeField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> list[str]:
        if data is None:
            return ["values"]
        modes = [data] if isinstance(data, str) else data
        if not isinstance(modes, list) or not modes or not all(isinstance(m, str) for m in modes):
            raise serializers.ValidationError("A stream mode or a list of them.")
        unknown = [m for m in modes if m not in STREAM_MODES]
        if unknown:
            raise serializers.ValidationError(f"{unknown[0]}: unknown stream mode; one of {', '.join(STREAM_MODES)}.")
        return list(dict.fromkeys(modes))


class RunCreateInputSerializer(StrictInputSerializer):
    """A run: `input` (the contract: the graph's own keys `title` and `contract_text`)
    on a thread that has none yet, or `command.resume` (review decisions)."""

    assistant_id = serializers.CharField(max_length=200)
    input = serializers.JSONField(required=False, allow_null=True)
    command = CommandField(required=False, allow_null=True)
    metadata = _metadata_field(allow_null=True)
    config = serializers.JSONField(required=False, allow_null=True)
    stream_mode = StreamModeField(required=False, allow_null=True)
    stream_subgraphs = serializers.BooleanField(required=False, allow_null=True)
    stream_resumable = serializers.BooleanField(required=False, allow_null=True)
    feedback_keys = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, allow_null=True, max_length=50
    )
    multitask_strategy = serializers.ChoiceField(
        choices=["reject", "enqueue", "interrupt", "rollback"], required=False, allow_null=True
    )
    if_not_exists = serializers.ChoiceField(choices=["reject", "create"], required=False, allow_null=True)
    on_disconnect = serializers.ChoiceField(choices=["cancel", "continue"], required=False, allow_null=True)
    on_completion = serializers.ChoiceField(
        choices=["keep"], required=False, allow_null=True, help_text="Threads are contracts and are kept."
    )
    durability = serializers.ChoiceField(choices=["sync", "async", "exit"], required=False, allow_null=True)
    checkpoint_during = serializers.BooleanField(required=False, allow_null=True)
    strict_resume = serializers.BooleanField(
        required=False,
        allow_null=True,
        help_text="Always on here: an answer to an interrupt that is not pending is refused (409).",
    )
    langsmith_tracer = serializers.JSONField(required=False, allow_null=True)
    context = NotSupported("the graph takes its settings from the tenant")
    interrupt_before = NotSupported("the graph interrupts where a human must decide")
    interrupt_after = NotSupported("the graph interrupts where a human must decide")
    webhook = NotSupported("follow the run with wait, join or stream, or the queue's websocket")
    checkpoint = NotSupported("a thread is only advanced from its latest checkpoint")
    checkpoint_id = NotSupported("a thread is only advanced from its latest checkpoint")
    after_seconds = NotSupported("a run starts as soon as a worker takes it")

    def validate_input(self, value: Any) -> dict[str, str] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise serializers.ValidationError('Expected an object: {"contract_text": ..., "title": ...}.')
        unknown = sorted(set(value) - {"contract_text", "title"})
        if unknown:
            raise serializers.ValidationError(f"{unknown[0]}: unknown key; the input is contract_text and title.")
        # The REST API's own rules for a contract's title and text.
        contract = ContractListCreateApi.ContractSubmitInputSerializer(
            data={"title": value.get("title"), "text": value.get("contract_text")}
        )
        if not contract.is_valid():
            raise serializers.ValidationError(
                {"contract_text" if name == "text" else name: errors for name, errors in contract.errors.items()}
            )
        return dict(contract.validated_data)

    def validate_config(self, value: Any) -> dict | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise serializers.ValidationError("Expected an object.")
        configurable = value.get("configurable")
        if configurable:
            raise serializers.ValidationError(
                "configurable: not supported; the graph takes its settings from the tenant."
            )
        return value

    def validate(self, attrs: dict) -> dict:
        if attrs.get("input") is not None and attrs.get("command") is not None:
            raise serializers.ValidationError({"command": ["Give input or command, not both."]})
        if attrs.get("input") is None and attrs.get("command") is None:
            raise serializers.ValidationError(
                {"input": ["Give the contract as input, or review decisions as command.resume."]}
            )
        if attrs.get("multitask_strategy") in ("interrupt", "rollback"):
            raise serializers.ValidationError(
                {"multitask_strategy": ["Only reject or enqueue: a run in flight is never cut short."]}
            )
        attrs["stream_mode"] = attrs.get("stream_mode") or ["values"]
        return attrs


def run_kwargs(data: dict) -> dict:
    """What a Run keeps of its request: the options, not the contract's text."""
    kept = {
        key: data.get(key)
        for key in ("stream_mode", "config", "multitask_strategy", "on_disconnect", "durability", "feedback_keys")
    }
    kept["input"] = {"title": data["input"]["title"]} if data.get("input") else None
    kept["command"] = data.get("command")
    return {key: value for key, value in kept.items() if value is not None}


# --- Outputs ----------------------------------------------------------------------------


def assistant_json(tenant: Tenant) -> dict[str, Any]:
    created = iso(tenant.created_at)
    return {
        "assistant_id": ASSISTANT_ID,
        "graph_id": GRAPH_ID,
        "name": GRAPH_ID,
        "description": "Contract review: risk analysis, then legal, finance and sign-off reviews by people.",
        "config": {},
        "context": {},
        "metadata": {"created_by": "system"},
        "version": 1,
        "created_at": created,
        "updated_at": created,
    }


def interrupt_json(task, *, always_schema: bool = False) -> dict[str, Any]:
    """A pending review task as LangGraph's Interrupt: its value untranslated (the
    payload as the graph produced it), plus the digest a decision is bound to."""
    item: dict[str, Any] = {"id": task.interrupt_id, "value": task.payload}
    if task.response_schema is not None or always_schema:
        item["response_schema"] = task.response_schema
    item["payload_digest"] = task.payload_digest
    return item


def thread_metadata(contract: Contract) -> dict[str, Any]:
    return {**contract.thread_metadata, "graph_id": GRAPH_ID, "assistant_id": ASSISTANT_ID}


def thread_values(contract: Contract) -> dict[str, Any] | None:
    """The graph's values as the contract's row keeps them (the drive copies them from
    each pass's checkpoint): cheap to show for a page of threads. None before the
    thread has its input. get_state reads the checkpoint itself."""
    if contract.status == ContractStatus.CREATED:
        return None
    values: dict[str, Any] = {"title": contract.title, "contract_text": contract.text}
    if contract.risk_score is not None:
        values.update(
            risk_score=contract.risk_score,
            findings=contract.findings,
            payments=contract.payments,
            analysis=contract.analysis,
        )
    if contract.decision_history:
        values["history"] = contract.decision_history
    if contract.amendments:
        values.update(amendments=contract.amendments, amended_text=contract.amended_text)
    if contract.status in FINAL_STATUSES:
        values["human_decision"] = contract.status
    return values


def thread_error(contract: Contract) -> dict[str, str] | None:
    if contract.status != ContractStatus.FAILED:
        return None
    return {"error": "RunError", "message": contract.last_error}


def thread_json(contract: Contract, pending: list, *, select: list[str] | None = None) -> dict[str, Any]:
    """A contract as a Thread. `interrupts` is keyed by our review task's id (the thing a
    reviewer acts on, GET /api/v1/tenants/<slug>/reviews/<id>/), each with its one
    interrupt, in the thread's interrupt order."""
    thread = {
        "thread_id": str(contract.pk),
        "created_at": iso(contract.created_at),
        "updated_at": iso(contract.updated_at),
        "state_updated_at": iso(contract.updated_at),
        "metadata": thread_metadata(contract),
        "status": contract.thread_status,
        "config": {},
        "values": thread_values(contract),
        "error": thread_error(contract),
        "interrupts": {str(task.pk): [interrupt_json(task)] for task in pending},
    }
    return {key: thread[key] for key in select} if select else thread


def checkpoint_json(thread_id: str, checkpoint_id: str | None) -> dict[str, Any]:
    return {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}


def state_json(contract: Contract, state, pending: list) -> dict[str, Any]:
    """A ThreadState: LangGraph's own view of the thread (values, next, tasks,
    checkpoint, metadata) with the interrupts our rows say wait for a human: a task's
    interrupts are those of its interrupts that still have a pending review task, and
    the top-level `interrupts` lists every pending one, in the thread's order."""
    thread_id = str(contract.pk)
    rows = {task.interrupt_id: task for task in pending}
    meta = {"graph_id": GRAPH_ID, "assistant_id": ASSISTANT_ID, "thread_id": thread_id}
    if state is None:
        return {
            "values": {},
            "next": [],
            "tasks": [],
            "metadata": meta,
            "created_at": None,
            "checkpoint": checkpoint_json(thread_id, None),
            "parent_checkpoint": None,
            "interrupts": [interrupt_json(task) for task in pending],
            "checkpoint_id": None,
            "parent_checkpoint_id": None,
        }
    checkpoint_id = (state.config or {}).get("configurable", {}).get("checkpoint_id")
    parent_id = (state.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    meta.update({key: state.metadata[key] for key in ("source", "step") if key in (state.metadata or {})})
    tasks = [
        {
            "id": task.id,
            "name": task.name,
            "path": [str(part) for part in task.path],
            "error": str(task.error) if task.error else None,
            "interrupts": [interrupt_json(rows[item.id]) for item in task.interrupts if item.id in rows],
            "checkpoint": None,
            "state": None,
            "result": task.result if isinstance(task.result, dict) else None,
        }
        for task in state.tasks
    ]
    return {
        "values": dict(state.values),
        "next": list(state.next),
        "tasks": tasks,
        "metadata": meta,
        "created_at": state.created_at,
        "checkpoint": checkpoint_json(thread_id, checkpoint_id),
        "parent_checkpoint": checkpoint_json(thread_id, parent_id) if parent_id else None,
        "interrupts": [interrupt_json(task) for task in pending],
        "checkpoint_id": checkpoint_id,
        "parent_checkpoint_id": parent_id,
    }


def run_json(run: Run, *, thread_id: str, status: str) -> dict[str, Any]:
    return {
        "run_id": str(run.pk),
        "thread_id": thread_id,
        "assistant_id": ASSISTANT_ID,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.created_at),
        "status": status,
        "metadata": run.metadata,
        "kwargs": run.kwargs,
        "multitask_strategy": run.multitask_strategy,
    }


def run_output(values: dict | None, pending: list, *, error: dict | None) -> dict[str, Any]:
    """What runs.wait / join return and the last `values` event carries: the thread's
    values, with `__interrupt__` while it waits for people, or `__error__` if it failed."""
    if error is not None:
        return {"__error__": error}
    output = dict(values or {})
    if pending:
        output["__interrupt__"] = [interrupt_json(task, always_schema=True) for task in pending]
    return output


def info_json() -> dict[str, Any]:
    return {
        "version": API_VERSION,
        "langgraph_py_version": LANGGRAPH_VERSION,
        "flags": {"assistants": True, "crons": False, "langsmith": False, "strict_resume": True},
        # No tenant or project here: /info answers without credentials, the same for
        # every slug, so it tells a stranger nothing.
        "host": {
            "kind": "self-hosted",
            "project_id": None,
            "tenant_id": None,
            "revision_id": None,
            "host_revision_id": None,
        },
    }


# --- Documentation only (the OpenAPI schema) ----------------------------------------------


class InterruptOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    value = serializers.JSONField()
    response_schema = serializers.JSONField(required=False, allow_null=True)
    payload_digest = serializers.CharField(
        help_text="sha256 of the canonical JSON of the payload the review task shows; send it back as If-Match."
    )


class AssistantOutputSerializer(serializers.Serializer):
    assistant_id = serializers.CharField()
    graph_id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField(allow_null=True)
    config = serializers.JSONField()
    context = serializers.JSONField()
    metadata = serializers.JSONField()
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ThreadOutputSerializer(serializers.Serializer):
    thread_id = serializers.CharField()
    created_at = serializers.DateTimeField(required=False)
    updated_at = serializers.DateTimeField(required=False)
    state_updated_at = serializers.DateTimeField(required=False)
    metadata = serializers.JSONField(required=False)
    status = serializers.ChoiceField(choices=THREAD_STATUSES, required=False)
    config = serializers.JSONField(required=False)
    values = serializers.JSONField(required=False, allow_null=True)
    error = serializers.JSONField(required=False, allow_null=True)
    interrupts = serializers.DictField(
        child=InterruptOutputSerializer(many=True), required=False, help_text="Review task id -> its interrupt."
    )


class CheckpointOutputSerializer(serializers.Serializer):
    thread_id = serializers.CharField()
    checkpoint_ns = serializers.CharField(allow_blank=True)
    checkpoint_id = serializers.CharField(allow_null=True)


class ThreadTaskOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    path = serializers.ListField(child=serializers.CharField())
    error = serializers.CharField(allow_null=True)
    interrupts = InterruptOutputSerializer(many=True)
    checkpoint = serializers.JSONField(allow_null=True)
    state = serializers.JSONField(allow_null=True)
    result = serializers.JSONField(allow_null=True)


class ThreadStateOutputSerializer(serializers.Serializer):
    values = serializers.JSONField()
    next = serializers.ListField(child=serializers.CharField())
    tasks = ThreadTaskOutputSerializer(many=True)
    metadata = serializers.JSONField()
    created_at = serializers.CharField(allow_null=True)
    checkpoint = CheckpointOutputSerializer()
    parent_checkpoint = CheckpointOutputSerializer(allow_null=True)
    interrupts = InterruptOutputSerializer(many=True)
    checkpoint_id = serializers.CharField(allow_null=True)
    parent_checkpoint_id = serializers.CharField(allow_null=True)


class StateUpdateOutputSerializer(serializers.Serializer):
    checkpoint = CheckpointOutputSerializer()


class RunOutputSerializer(serializers.Serializer):
    run_id = serializers.CharField()
    thread_id = serializers.CharField()
    assistant_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=RUN_STATUSES)
    metadata = serializers.JSONField()
    kwargs = serializers.JSONField()
    multitask_strategy = serializers.CharField()


class InfoOutputSerializer(serializers.Serializer):
    version = serializers.CharField()
    langgraph_py_version = serializers.CharField()
    flags = serializers.JSONField()
    host = serializers.JSONField()


class DetailErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)
    pending_ids = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="On a 409 about interrupts: the ids still pending, in order.",
    )
    interrupt_ids = serializers.ListField(child=serializers.CharField(), required=False)


_ERROR_TEXTS = {
    400: "Malformed request (JSON that does not parse; a resume without a thread).",
    401: "No or invalid credentials (x-api-key or Authorization: Bearer).",
    403: "Your role or permissions do not allow this.",
    404: "No such thread, run or assistant in this tenant (the same for another tenant's).",
    405: "Method not allowed.",
    409: "Conflict: the interrupt is answered, unknown, changed or claimed; the thread is busy (reject); "
    "the thread has its input already.",
    413: "Request body too large.",
    415: "The body's media type is not JSON.",
    422: "Invalid input; `fields` names each failing field.",
    429: "Too many requests; see Retry-After.",
}


def detail_errors(*codes: int) -> dict:
    from drf_spectacular.utils import OpenApiResponse

    return {code: OpenApiResponse(DetailErrorSerializer, description=_ERROR_TEXTS[code]) for code in codes}
