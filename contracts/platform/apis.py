"""The LangGraph-compatible API of one tenant, under /langgraph/<tenant-slug>/.

Thin views: input serializer, one service or selector (the same ones the REST API and
the admin call), output builder. The tenant comes from the URL and is resolved against
the caller's memberships before any handler runs (TenantAPIView): another tenant's
thread, run or assistant is a 404 exactly like a missing one.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_errors import Conflict, Forbidden, InvalidInput, NotFound
from contracts.models import FINAL_STATUSES, Contract, ContractStatus, Run, RunKind
from contracts.platform import serializers as out
from contracts.platform.auth import PlatformTokenAuthentication
from contracts.platform.errors import BadRequest, platform_exception_handler
from contracts.platform.serializers import (
    ASSISTANT_NAMES,
    NODE_OF_KIND,
    AssistantSearchInputSerializer,
    RunCreateInputSerializer,
    StateUpdateInputSerializer,
    ThreadCountInputSerializer,
    ThreadCreateInputSerializer,
    ThreadPatchInputSerializer,
    ThreadSearchInputSerializer,
    detail_errors,
)
from contracts.platform.streams import DONE, RunProgress, event_stream, wait_stream
from contracts.selectors import contract_thread_get, contract_thread_list, run_get, run_list, run_status
from contracts.services import (
    contract_cancel,
    contract_thread_create,
    contract_thread_metadata_update,
    thread_run_create,
)
from contracts.graph import runner
from reviews.apis import request_fingerprint
from reviews.selectors import review_tasks_get_many, review_tasks_pending_for_thread, review_tasks_pending_for_threads
from tenants.apis import ADMIN_ROLES, MEMBER_ROLES, TenantAPIView
from tenants.models import DECIDING_ROLES, SUBMITTING_ROLES, AuditRecord, Tenant

RUNNING_ROLES = SUBMITTING_ROLES | DECIDING_ROLES  # may ask for a run at all; the kind of run decides the rest
INTERRUPT_ID = re.compile(r"[0-9a-f]{32}")
_THREAD_ORDERINGS = {
    "thread_id": "pk",
    "status": "thread_status",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "state_updated_at": "updated_at",
}


class EventStreamRenderer(BaseRenderer):
    """Lets a client that asks for `Accept: text/event-stream` (the Python SDK's
    streams) through content negotiation; the events themselves are a streaming
    response, and an error before them is JSON (PlatformView.finalize_response)."""

    media_type = "text/event-stream"
    format = "sse"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return JSONRenderer().render(data)


class PlatformView(TenantAPIView):
    """A tenant's LangGraph-compatible API: token auth as LangGraph's clients send it,
    errors as LangGraph Platform answers them."""

    authentication_classes = [PlatformTokenAuthentication]
    renderer_classes = [JSONRenderer, EventStreamRenderer]
    via = AuditRecord.Interface.LANGGRAPH

    def get_exception_handler(self):
        return platform_exception_handler

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and isinstance(
            getattr(request, "accepted_renderer", None), EventStreamRenderer
        ):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    def body(self) -> dict[str, Any]:
        data = self.request.data
        if not isinstance(data, dict):
            raise InvalidInput("The body must be a JSON object.", fields={"non_field_errors": ["Expected an object."]})
        return data

    def role_check(self, roles: frozenset[str], what: str) -> None:
        if self.membership.role not in roles:
            raise Forbidden(f"Your role may not {what}.")


# --- Unauthenticated: /ok and /info ---------------------------------------------------


class _OpenView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    def get_exception_handler(self):
        return platform_exception_handler


OkSerializer = inline_serializer("LangGraphOk", {"ok": serializers.BooleanField()})


class OkApi(_OpenView):
    @extend_schema(operation_id="langgraph_ok", responses={200: OkSerializer})
    def get(self, request: Request, tenant_slug: str) -> Response:
        return Response({"ok": True})


class InfoApi(_OpenView):
    """What the server supports. Agent Inbox reads it without credentials, so it says
    the same for every slug, existing or not: nothing about any tenant."""

    @extend_schema(operation_id="langgraph_info", responses={200: out.InfoOutputSerializer})
    def get(self, request: Request, tenant_slug: str) -> Response:
        return Response(out.info_json())


# --- Assistants -----------------------------------------------------------------------


def assistant_check(assistant_id: str) -> None:
    if assistant_id not in ASSISTANT_NAMES:
        raise NotFound(f"Assistant {assistant_id} not found.")


class AssistantSearchApi(PlatformView):
    roles = {"POST": MEMBER_ROLES}

    @extend_schema(
        operation_id="langgraph_assistants_search",
        request=AssistantSearchInputSerializer,
        responses={200: out.AssistantOutputSerializer(many=True), **detail_errors(400, 401, 403, 404, 422, 429)},
    )
    def post(self, request: Request, tenant_slug: str) -> Response:
        query = AssistantSearchInputSerializer(data=self.body())
        query.is_valid(raise_exception=True)
        q = query.validated_data
        assistant = out.assistant_json(self.tenant)
        matches = all(
            [
                q.get("graph_id") in (None, assistant["graph_id"]),
                q.get("name") in (None, assistant["name"]),
                all(assistant["metadata"].get(k) == v for k, v in (q.get("metadata") or {}).items()),
            ]
        )
        found = [assistant] if matches else []
        page = found[q["offset"] : q["offset"] + q["limit"]]
        if q.get("select"):
            page = [{key: a[key] for key in q["select"] if key in a} for a in page]
        return Response(page, headers={"X-Pagination-Total": str(len(found))})


class AssistantDetailApi(PlatformView):
    roles = {"GET": MEMBER_ROLES}

    @extend_schema(
        operation_id="langgraph_assistants_get",
        responses={200: out.AssistantOutputSerializer, **detail_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str, assistant_id: str) -> Response:
        assistant_check(assistant_id)
        return Response(out.assistant_json(self.tenant))


# --- Threads --------------------------------------------------------------------------


def _thread(tenant: Tenant, contract_id: UUID) -> dict[str, Any]:
    contract = contract_thread_get(tenant=tenant, contract_id=contract_id)
    return out.thread_json(contract, review_tasks_pending_for_thread(tenant=tenant, contract_id=contract.pk))


def _user_metadata(metadata: dict) -> dict:
    """The client's metadata without graph_id and assistant_id, which every thread has
    (there is one graph) and are never stored; another graph is not served here."""
    for key, ours in (("graph_id", out.GRAPH_ID), ("assistant_id", out.ASSISTANT_ID)):
        if key in metadata and metadata[key] != ours:
            raise InvalidInput(
                f"metadata.{key}: this server runs one graph, {out.GRAPH_ID}.",
                fields={f"metadata.{key}": [f"Only {ours}."]},
            )
    return {key: value for key, value in metadata.items() if key not in ("graph_id", "assistant_id")}


class ThreadCreateApi(PlatformView):
    roles = {"POST": SUBMITTING_ROLES}

    @extend_schema(
        operation_id="langgraph_threads_create",
        request=ThreadCreateInputSerializer,
        responses={200: out.ThreadOutputSerializer, **detail_errors(400, 401, 403, 404, 409, 422, 429)},
    )
    def post(self, request: Request, tenant_slug: str) -> Response:
        """A thread before its contract: the first run's `input` brings the contract."""
        serializer = ThreadCreateInputSerializer(data=self.body())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        metadata = _user_metadata(data.get("metadata") or {})
        thread_id = data.get("thread_id")
        if thread_id is not None and data["if_exists"] == "do_nothing":
            existing = contract_thread_list(tenant=self.tenant, ids=[thread_id]).first()
            if existing is not None:
                return Response(_thread(self.tenant, existing.pk))
        contract = contract_thread_create(
            tenant=self.tenant, created_by=request.user, metadata=metadata, contract_id=thread_id
        )
        return Response(_thread(self.tenant, contract.pk))


def _pagination_headers(total: int, offset: int, limit: int) -> dict[str, str]:
    headers = {"X-Pagination-Total": str(total)}
    if offset + limit < total:
        headers["X-Pagination-Next"] = str(offset + limit)
    return headers


class ThreadSearchApi(PlatformView):
    roles = {"POST": MEMBER_ROLES}

    @extend_schema(
        operation_id="langgraph_threads_search",
        request=ThreadSearchInputSerializer,
        responses={200: out.ThreadOutputSerializer(many=True), **detail_errors(400, 401, 403, 404, 422, 429)},
    )
    def post(self, request: Request, tenant_slug: str) -> Response:
        """Threads by status and metadata (`graph_id`, `assistant_id`: every thread;
        other keys: equal to the thread's), newest first by default."""
        query = ThreadSearchInputSerializer(data=self.body())
        query.is_valid(raise_exception=True)
        q = query.validated_data
        threads = self._threads(q)
        if threads is None:
            return Response([], headers=_pagination_headers(0, q["offset"], q["limit"]))
        total = threads.count()
        page = list(threads[q["offset"] : q["offset"] + q["limit"]])
        pending = review_tasks_pending_for_threads(tenant=self.tenant, contract_ids=[c.pk for c in page])
        body = [out.thread_json(c, pending[c.pk], select=q.get("select")) for c in page]
        return Response(body, headers=_pagination_headers(total, q["offset"], q["limit"]))

    def _threads(self, q: dict):
        metadata = dict(q.get("metadata") or {})
        for key, ours in (("graph_id", out.GRAPH_ID), ("assistant_id", out.ASSISTANT_ID)):
            if key in metadata and metadata.pop(key) != ours:
                return None  # a graph this server does not run: no thread is of it
        field = _THREAD_ORDERINGS[q.get("sort_by") or "created_at"]
        sign = "" if q.get("sort_order") == "asc" else "-"
        return contract_thread_list(
            tenant=self.tenant,
            status=q.get("status"),
            ids=q.get("ids"),
            metadata=metadata,
            ordering=[f"{sign}{field}", f"{sign}pk"],
        )


class ThreadCountApi(ThreadSearchApi):
    @extend_schema(
        operation_id="langgraph_threads_count",
        request=ThreadCountInputSerializer,
        responses={200: OpenApiTypes.INT, **detail_errors(400, 401, 403, 404, 422, 429)},
    )
    def post(self, request: Request, tenant_slug: str) -> Response:
        query = ThreadCountInputSerializer(data=self.body())
        query.is_valid(raise_exception=True)
        threads = self._threads({**query.validated_data, "sort_by": None})
        return Response(0 if threads is None else threads.count())


class ThreadDetailApi(PlatformView):
    roles = {"GET": MEMBER_ROLES, "PATCH": SUBMITTING_ROLES}

    @extend_schema(
        operation_id="langgraph_threads_get",
        parameters=[OpenApiParameter("include", str, many=True, required=False)],
        responses={200: out.ThreadOutputSerializer, **detail_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str, thread_id: UUID) -> Response:
        return Response(_thread(self.tenant, thread_id))

    @extend_schema(
        operation_id="langgraph_threads_update",
        request=ThreadPatchInputSerializer,
        responses={200: out.ThreadOutputSerializer, **detail_errors(400, 401, 403, 404, 422, 429)},
    )
    def patch(self, request: Request, tenant_slug: str, thread_id: UUID) -> Response:
        """Merge metadata keys into the thread's."""
        serializer = ThreadPatchInputSerializer(data=self.body())
        serializer.is_valid(raise_exception=True)
        metadata = _user_metadata(serializer.validated_data.get("metadata") or {})
        contract_thread_metadata_update(tenant=self.tenant, contract_id=thread_id, metadata=metadata)
        if request.headers.get("Prefer") == "return=minimal":
            return Response(status=204)
        return Response(_thread(self.tenant, thread_id))


class ThreadStateApi(PlatformView):
    roles = {"GET": MEMBER_ROLES, "POST": ADMIN_ROLES}

    @extend_schema(
        operation_id="langgraph_threads_get_state",
        parameters=[OpenApiParameter("subgraphs", bool, required=False)],
        responses={200: out.ThreadStateOutputSerializer, **detail_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str, thread_id: UUID) -> Response:
        """LangGraph's own state of the thread (read from the checkpointer), with the
        interrupts our review tasks say wait for a human."""
        contract = contract_thread_get(tenant=self.tenant, contract_id=thread_id)
        state = runner.thread_state_read(contract.thread_id)
        pending = review_tasks_pending_for_thread(tenant=self.tenant, contract_id=contract.pk)
        return Response(out.state_json(contract, state, pending))

    @extend_schema(
        operation_id="langgraph_threads_update_state",
        request=StateUpdateInputSerializer,
        responses={200: out.StateUpdateOutputSerializer, **detail_errors(400, 401, 403, 404, 409, 422, 429)},
    )
    def post(self, request: Request, tenant_slug: str, thread_id: UUID) -> Response:
        """Only `{values: null, as_node: "__end__"}` (Agent Inbox's "resolve"): ends the
        thread, i.e. cancels its contract, as a tenant admin's cancel."""
        serializer = StateUpdateInputSerializer(data=self.body())
        serializer.is_valid(raise_exception=True)
        contract = contract_thread_get(tenant=self.tenant, contract_id=thread_id)
        contract_cancel(tenant=self.tenant, contract_id=contract.pk, user=request.user, via=self.via)
        return Response({"checkpoint": out.checkpoint_json(str(contract.pk), None)})


# --- Runs -----------------------------------------------------------------------------


def resume_split(resume: Any) -> tuple[dict[str, dict] | None, dict | None]:
    """command.resume as (answers by interrupt id, None) or (None, one bare answer), as
    LangGraph reads it: a map whose keys are all interrupt ids, or a single value."""
    if isinstance(resume, dict) and resume and all(isinstance(k, str) and INTERRUPT_ID.fullmatch(k) for k in resume):
        for interrupt_id, answer in resume.items():
            if not isinstance(answer, dict):
                raise InvalidInput(
                    f'command.resume.{interrupt_id}: expected a decision object like {{"decision": "approve"}}.',
                    fields={f"command.resume.{interrupt_id}": ["Expected an object."]},
                )
        return resume, None
    if isinstance(resume, dict) and resume:
        if any(isinstance(k, str) and INTERRUPT_ID.fullmatch(k) for k in resume):
            raise InvalidInput(
                "command.resume: mixes interrupt ids and decision fields.",
                fields={"command.resume": ["Either {interrupt id: decision} or one decision."]},
            )
        return None, resume
    raise InvalidInput(
        'command.resume: expected {"<interrupt id>": {"decision": ...}} or one {"decision": ...}.',
        fields={"command.resume": ["Expected a decision object, or a map of them by interrupt id."]},
    )


def seen_digests(request: Request) -> frozenset[str] | None:
    """If-Match: the payload digests the client saw ("d1", "d2"); None without it."""
    value = request.headers.get("If-Match", "").strip()
    if not value or value == "*":
        return None
    return frozenset(part.strip().removeprefix("W/").strip('"') for part in value.split(",") if part.strip())


def idempotency_of(request: Request) -> tuple[str, str] | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not key.isprintable() or not key.isascii():
        raise InvalidInput(
            "Idempotency-Key: 1 to 200 printable ASCII characters.",
            fields={"Idempotency-Key": ["1 to 200 printable ASCII characters."]},
        )
    return key, request_fingerprint(request)


def run_request(view: PlatformView, *, contract_id: UUID | None, data: dict, answers_for=None,
                create_thread: bool = False) -> tuple[Run, bool]:
    """Carry out a validated run request on the contract's thread: the contract's input
    (submitters) or review decisions (deciders; each one checked by the resume service).
    `answers_for`: how the prefix turns command.resume into decisions (the native one
    takes ours as they are; Agent Inbox's translates its HumanResponse). `create_thread`:
    the thread is made for an input run when it does not exist (thread_run_create)."""
    request = view.request
    common = dict(
        tenant=view.tenant,
        contract_id=contract_id,
        user=request.user,
        via=view.via,
        metadata=data.get("metadata") or {},
        kwargs=out.run_kwargs(data),
        multitask_strategy=data.get("multitask_strategy") or "enqueue",
        idempotency=idempotency_of(request),
    )
    if data.get("input") is not None:
        view.role_check(SUBMITTING_ROLES, "submit a contract")
        return thread_run_create(**common, input=data["input"], create_thread=create_thread)
    view.role_check(DECIDING_ROLES, "decide reviews")
    answers, bare = (answers_for or resume_split)(data["command"]["resume"])
    try:
        return thread_run_create(**common, answers=answers, bare=bare, seen_digests=seen_digests(request))
    except InvalidInput as exc:
        raise _named_after_resume(exc, bare is not None) from None


def _named_after_resume(exc: InvalidInput, bare: bool) -> InvalidInput:
    """A decision's field errors, named where the client put the decision."""
    ids = exc.extra.get("interrupt_ids") or []
    prefix = "command.resume" if bare or not ids else f"command.resume.{ids[0]}"
    fields = {
        f"{prefix}.{name}" if name != "non_field_errors" else prefix: messages for name, messages in exc.fields.items()
    }
    first = next(iter(fields.items()), (prefix, [exc.message]))
    return InvalidInput(f"{first[0]}: {first[1][0]}", fields=fields, extra=exc.extra)


def run_nodes(run: Run, contract: Contract, tasks: list, pending: list, status: str) -> list[str]:
    """The graph nodes a run is known to have reached, from our rows: for the `events`
    stream mode, which shows progress (the worker's graph run is not observed live)."""
    if status == "pending":
        return []
    nodes = ["analyze"] if run.kind == RunKind.INPUT else [NODE_OF_KIND[task.kind] for task in tasks]
    if status == "success":
        nodes += [NODE_OF_KIND[task.kind] for task in pending if task.created_at >= run.created_at]
        if contract.status == ContractStatus.AMENDED:
            nodes.append("amend")
        if contract.status in FINAL_STATUSES:
            nodes.append("finalize")
    return list(dict.fromkeys(nodes))


def native_progress(*, tenant: Tenant, contract_id: UUID, run_id: UUID) -> RunProgress:
    """Where a run stands, and once it has ended its output (values, with __interrupt__
    when the thread waits for people), from our rows.

    Read in this order because each statement sees what has committed by then: the
    run's tasks (whose applied_at says a resume is done) before the contract whose
    values are the output. The drive writes both in one transaction, so a task seen
    applied means the contract read after it has that pass's outcome."""
    run = run_get(tenant=tenant, contract_id=contract_id, run_id=run_id)
    tasks = review_tasks_get_many(tenant=tenant, task_ids=run.task_ids)
    contract = contract_thread_get(tenant=tenant, contract_id=contract_id)
    status = run_status(run=run, contract=contract, tasks=tasks)
    if status not in DONE:
        return RunProgress(status=status, nodes=run_nodes(run, contract, tasks, [], status))
    pending = review_tasks_pending_for_thread(tenant=tenant, contract_id=contract.pk)
    output = out.run_output(
        out.thread_values(contract), pending, error=out.thread_error(contract) if status == "error" else None
    )
    return RunProgress(status=status, output=output, nodes=run_nodes(run, contract, tasks, pending, status))


def run_paths(thread_id: str, run_id: str) -> dict[str, str]:
    """Run URLs relative to the client's base URL (`/threads/...`), as the SDKs join them
    to their base (the Python SDK follows Location for reconnects, the JS SDK too)."""
    run = f"/threads/{thread_id}/runs/{run_id}"
    return {"run": run, "join": f"{run}/join", "stream": f"{run}/stream"}


def wait_response(poll, *, thread_id: str, run_id: str) -> StreamingHttpResponse:
    paths = run_paths(thread_id, run_id)
    response = StreamingHttpResponse(wait_stream(poll), content_type="application/json")
    response["Location"] = paths["join"]
    response["Content-Location"] = paths["run"]
    response["Cache-Control"] = "no-store"
    return response


def stream_response(poll, *, thread_id: str, run_id: str, modes: list[str]) -> StreamingHttpResponse:
    paths = run_paths(thread_id, run_id)
    response = StreamingHttpResponse(
        event_stream(poll, run_id=run_id, thread_id=thread_id, modes=modes),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Location"] = paths["stream"]
    response["Content-Location"] = paths["run"]
    response["Cache-Control"] = "no-store"
    # Tell a buffering proxy (nginx) to pass events through as they come.
    response["X-Accel-Buffering"] = "no"
    return response


_RUN_ERRORS = detail_errors(400, 401, 403, 404, 409, 422, 429)
_IDEMPOTENCY_HEADERS = [
    OpenApiParameter(
        "Idempotency-Key",
        str,
        OpenApiParameter.HEADER,
        required=False,
        description="A retry with the same key and body gets the first run back, with no second effect.",
    ),
    OpenApiParameter(
        "If-Match",
        str,
        OpenApiParameter.HEADER,
        required=False,
        description='Payload digests of the interrupts as you saw them ("d1", "d2"): a decision on '
        "an interrupt that shows something else now is refused (409).",
    ),
]


class _RunCreateView(PlatformView):
    """POST a run: create it, then answer as the endpoint does (the Run, its output when
    it ends, or its events)."""

    roles = {"POST": RUNNING_ROLES}

    def run_create(self, thread_id: UUID | None) -> tuple[Run, Contract, dict]:
        serializer = RunCreateInputSerializer(data=self.body())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        assistant_check(data["assistant_id"])
        if thread_id is None and data.get("input") is None:
            raise BadRequest("You must provide a thread_id when resuming.")
        # A run without a thread, or on a thread id it may create, gets its thread made
        # by the run's own service (once, also when the request is retried).
        run, _ = run_request(self, contract_id=thread_id, data=data,
                             create_thread=thread_id is None or data.get("if_not_exists") == "create")
        return run, run.contract, data

    def poll(self, contract: Contract, run: Run):
        tenant = self.tenant
        return lambda: native_progress(tenant=tenant, contract_id=contract.pk, run_id=run.pk)

    def run_body(self, run: Run, contract: Contract) -> dict:
        contract = contract_thread_get(tenant=self.tenant, contract_id=contract.pk)
        tasks = review_tasks_get_many(tenant=self.tenant, task_ids=run.task_ids)
        return out.run_json(run, thread_id=str(contract.pk), status=run_status(run=run, contract=contract, tasks=tasks))


class ThreadRunListCreateApi(_RunCreateView):
    roles = {"GET": MEMBER_ROLES, "POST": RUNNING_ROLES}

    @extend_schema(
        operation_id="langgraph_runs_list",
        parameters=[
            OpenApiParameter("limit", int, required=False),
            OpenApiParameter("offset", int, required=False),
            OpenApiParameter("status", str, required=False, enum=list(out.RUN_STATUSES)),
        ],
        responses={200: out.RunOutputSerializer(many=True), **detail_errors(400, 401, 403, 404, 422, 429)},
    )
    def get(self, request: Request, tenant_slug: str, thread_id: UUID) -> Response:
        query = _RunListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        contract = contract_thread_get(tenant=self.tenant, contract_id=thread_id)
        runs = list(run_list(tenant=self.tenant, contract_id=contract.pk)[:500])
        tasks = {
            str(t.pk): t
            for t in review_tasks_get_many(tenant=self.tenant, task_ids=[i for r in runs for i in r.task_ids])
        }
        listed = []
        for run in runs:
            status = run_status(run=run, contract=contract, tasks=[tasks[i] for i in run.task_ids if i in tasks])
            if q.get("status") in (None, status):
                listed.append(out.run_json(run, thread_id=str(contract.pk), status=status))
        return Response(listed[q["offset"] : q["offset"] + q["limit"]])

    @extend_schema(
        operation_id="langgraph_runs_create",
        request=RunCreateInputSerializer,
        parameters=_IDEMPOTENCY_HEADERS,
        responses={200: out.RunOutputSerializer, **_RUN_ERRORS},
    )
    def post(self, request: Request, tenant_slug: str, thread_id: UUID | None = None) -> Response:
        """Start a run and answer at once with it (pending: a worker carries it out)."""
        run, contract, _ = self.run_create(thread_id)
        return Response(
            self.run_body(run, contract), headers={"Content-Location": run_paths(str(contract.pk), str(run.pk))["run"]}
        )


class _RunListQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=out.MAX_PAGE, default=10)
    offset = serializers.IntegerField(required=False, min_value=0, default=0)
    status = serializers.ChoiceField(choices=out.RUN_STATUSES, required=False)
    select = serializers.CharField(required=False)


_WAIT_RESPONSE = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="The run's output once it ends: the thread's values, with `__interrupt__` (the pending interrupts) "
    "when it waits for people, or `__error__`. Newlines are sent every few seconds until then.",
)
_STREAM_RESPONSE = OpenApiResponse(
    OpenApiTypes.STR,
    description="Server-sent events: `metadata`, then per stream mode `events` (on_chain_start per node), `updates`, "
    "`values` (with `__interrupt__`), or `error`; `: heartbeat` comments while the run goes on.",
)


class ThreadRunWaitApi(_RunCreateView):
    @extend_schema(
        operation_id="langgraph_runs_wait",
        request=RunCreateInputSerializer,
        parameters=_IDEMPOTENCY_HEADERS,
        responses={200: _WAIT_RESPONSE, **_RUN_ERRORS},
    )
    def post(self, request: Request, tenant_slug: str, thread_id: UUID | None = None) -> StreamingHttpResponse:
        """Start a run and answer with its output when it ends (streamed, newline
        keep-alives meanwhile; `Location` rejoins it)."""
        run, contract, _ = self.run_create(thread_id)
        return wait_response(self.poll(contract, run), thread_id=str(contract.pk), run_id=str(run.pk))


class ThreadRunStreamApi(_RunCreateView):
    @extend_schema(
        operation_id="langgraph_runs_stream",
        request=RunCreateInputSerializer,
        parameters=_IDEMPOTENCY_HEADERS,
        responses={(200, "text/event-stream"): _STREAM_RESPONSE, **_RUN_ERRORS},
    )
    def post(self, request: Request, tenant_slug: str, thread_id: UUID | None = None) -> StreamingHttpResponse:
        """Start a run and stream its events until it ends."""
        run, contract, data = self.run_create(thread_id)
        return stream_response(
            self.poll(contract, run), thread_id=str(contract.pk), run_id=str(run.pk), modes=data["stream_mode"]
        )


class StatelessRunCreateApi(ThreadRunListCreateApi):
    """POST /runs: a run with a new thread of its own (an input only)."""

    roles = {"POST": RUNNING_ROLES}
    http_method_names = ["post", "options"]

    @extend_schema(
        operation_id="langgraph_runs_create_stateless",
        request=RunCreateInputSerializer,
        responses={200: out.RunOutputSerializer, **_RUN_ERRORS},
    )
    def post(self, request: Request, tenant_slug: str) -> Response:
        return super().post(request, tenant_slug, None)


class StatelessRunWaitApi(ThreadRunWaitApi):
    @extend_schema(
        operation_id="langgraph_runs_wait_stateless",
        request=RunCreateInputSerializer,
        responses={200: _WAIT_RESPONSE, **_RUN_ERRORS},
    )
    def post(self, request: Request, tenant_slug: str) -> StreamingHttpResponse:
        return super().post(request, tenant_slug, None)


class StatelessRunStreamApi(ThreadRunStreamApi):
    @extend_schema(
        operation_id="langgraph_runs_stream_stateless",
        request=RunCreateInputSerializer,
        responses={(200, "text/event-stream"): _STREAM_RESPONSE, **_RUN_ERRORS},
    )
    def post(self, request: Request, tenant_slug: str) -> StreamingHttpResponse:
        return super().post(request, tenant_slug, None)


class _RunView(_RunCreateView):
    def run_of(self, thread_id: UUID, run_id: UUID) -> tuple[Run, Contract]:
        contract = contract_thread_get(tenant=self.tenant, contract_id=thread_id)
        return run_get(tenant=self.tenant, contract_id=contract.pk, run_id=run_id), contract


class RunDetailApi(_RunView):
    roles = {"GET": MEMBER_ROLES}

    @extend_schema(
        operation_id="langgraph_runs_get", responses={200: out.RunOutputSerializer, **detail_errors(401, 403, 404, 429)}
    )
    def get(self, request: Request, tenant_slug: str, thread_id: UUID, run_id: UUID) -> Response:
        run, contract = self.run_of(thread_id, run_id)
        return Response(self.run_body(run, contract))


class RunJoinApi(_RunView):
    roles = {"GET": MEMBER_ROLES}

    @extend_schema(
        operation_id="langgraph_runs_join",
        parameters=[OpenApiParameter("cancel_on_disconnect", str, required=False)],
        responses={200: _WAIT_RESPONSE, **detail_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str, thread_id: UUID, run_id: UUID) -> StreamingHttpResponse:
        """The run's output when it ends, as runs.wait answers it."""
        run, contract = self.run_of(thread_id, run_id)
        return wait_response(self.poll(contract, run), thread_id=str(contract.pk), run_id=str(run.pk))


class _JoinStreamQuerySerializer(serializers.Serializer):
    stream_mode = serializers.ListField(child=serializers.ChoiceField(choices=out.STREAM_MODES), required=False)
    cancel_on_disconnect = serializers.CharField(required=False)


def join_stream_query(request: Request) -> dict:
    """The stream modes asked for; the Python SDK sends an empty `stream_mode=` when it
    has none (httpx's rendering of None), which means the run's own."""
    modes = [mode for mode in request.query_params.getlist("stream_mode") if mode]
    return {"stream_mode": modes} if modes else {}


class RunJoinStreamApi(_RunView):
    roles = {"GET": MEMBER_ROLES}

    @extend_schema(
        operation_id="langgraph_runs_join_stream",
        parameters=[
            OpenApiParameter("stream_mode", str, many=True, required=False, enum=list(out.STREAM_MODES)),
            OpenApiParameter("cancel_on_disconnect", str, required=False),
        ],
        responses={(200, "text/event-stream"): _STREAM_RESPONSE, **detail_errors(400, 401, 403, 404, 422, 429)},
    )
    def get(self, request: Request, tenant_slug: str, thread_id: UUID, run_id: UUID) -> StreamingHttpResponse:
        """The run's events from now until it ends (no replay: events carry no ids)."""
        query = _JoinStreamQuerySerializer(data=join_stream_query(request))
        query.is_valid(raise_exception=True)
        run, contract = self.run_of(thread_id, run_id)
        modes = query.validated_data.get("stream_mode") or run.kwargs.get("stream_mode") or ["values"]
        return stream_response(self.poll(contract, run), thread_id=str(contract.pk), run_id=str(run.pk), modes=modes)


class RunCancelApi(_RunView):
    roles = {"POST": RUNNING_ROLES}

    @extend_schema(
        operation_id="langgraph_runs_cancel",
        request=None,
        parameters=[OpenApiParameter("wait", str, required=False), OpenApiParameter("action", str, required=False)],
        responses={409: detail_errors(409)[409], **detail_errors(401, 403, 404, 429)},
    )
    def post(self, request: Request, tenant_slug: str, thread_id: UUID, run_id: UUID) -> Response:
        """Refused: a run here is a contract's input or review decisions, recorded once
        and audited; it is carried out, never taken back. To stop a contract, end its
        thread (update_state with as_node "__end__": a tenant admin's cancel)."""
        run, contract = self.run_of(thread_id, run_id)
        status = self.run_body(run, contract)["status"]
        if status in DONE:
            raise Conflict("The run has ended already.", extra={"reason": "run_ended", "status": status})
        raise Conflict(
            "A run cannot be cancelled here: its input or decisions are recorded and carried out once. "
            'End the thread instead (update_state with as_node "__end__", tenant admins).',
            extra={"reason": "not_cancellable", "status": status},
        )
