"""The LangGraph-compatible API as Agent Inbox uses it, under /agent-inbox/<tenant-slug>/.

Agent Inbox answers only the first interrupt of a thread, with a bare `[HumanResponse]`,
so here every review task is a thread of its own (its id: the review task's id), whose
one interrupt is the task as a HumanInterrupt (reviews.agent_inbox). Parallel reviews
(legal and finance pending on one contract) are two threads, each answerable. The
answers go through the same run and resume services as the native prefix's; the
native prefix keeps the graph's interrupt values untranslated.

Agent Inbox's calls: threads.search({status, metadata: {graph_id}}), threads.get,
threads.getState (fallback), runs.stream(thread, graph, {command: {resume:
[HumanResponse]}, streamMode: "events"}), runs.create (ignore), threads.updateState
(thread, {values: null, asNode: "__end__"}) ("resolve": a tenant admin's cancel), and
GET /info without credentials.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from config.api_errors import InvalidInput, NotFound
from contracts.models import Run
from contracts.platform import apis
from contracts.platform import serializers as out
from contracts.platform.apis import (
    _IDEMPOTENCY_HEADERS,
    _RUN_ERRORS,
    _STREAM_RESPONSE,
    _WAIT_RESPONSE,
    PlatformView,
    _JoinStreamQuerySerializer,
    _pagination_headers,
    _RunListQuerySerializer,
    assistant_check,
    join_stream_query,
    run_nodes,
    run_paths,
    run_request,
    stream_response,
    wait_response,
)
from contracts.platform.serializers import (
    NODE_OF_KIND,
    RunCreateInputSerializer,
    StateUpdateInputSerializer,
    ThreadCountInputSerializer,
    ThreadSearchInputSerializer,
    detail_errors,
)
from contracts.platform.streams import DONE, RunProgress
from contracts.selectors import contract_thread_get, run_list, run_status
from contracts.services import contract_cancel
from reviews.agent_inbox import decision_from_responses, human_interrupt, inbox_thread_values
from reviews.models import ReviewStatus, ReviewTask
from reviews.selectors import (
    review_task_can_resume,
    review_task_thread_get,
    review_task_thread_list,
    review_tasks_get_many,
)
from tenants.apis import ADMIN_ROLES, PEOPLE_ROLES
from tenants.models import DECIDING_ROLES, AuditRecord, Tenant

INBOX_METADATA_KEYS = ("kind", "contract_id", "review_task_id")
_ORDERINGS = {
    "thread_id": "pk",
    "status": "thread_status",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "state_updated_at": "updated_at",
}


def _metadata(task: ReviewTask) -> dict[str, Any]:
    return {
        "graph_id": out.GRAPH_ID,
        "assistant_id": out.ASSISTANT_ID,
        "kind": task.kind,
        "contract_id": str(task.contract_id),
        "review_task_id": str(task.pk),
    }


def _interrupt(task: ReviewTask, *, can_decide: bool) -> dict[str, Any]:
    # The value is a list of one HumanInterrupt: the graph-side idiom Agent Inbox reads
    # (`response = interrupt([request])[0]`).
    return {
        "id": task.interrupt_id,
        "value": [human_interrupt(task, can_decide=can_decide)],
        "payload_digest": task.payload_digest,
    }


def inbox_thread_json(task: ReviewTask, *, can_decide: bool, select: list[str] | None = None) -> dict[str, Any]:
    pending = task.status == ReviewStatus.PENDING
    thread = {
        "thread_id": str(task.pk),
        "created_at": out.iso(task.created_at),
        "updated_at": out.iso(task.updated_at),
        "state_updated_at": out.iso(task.updated_at),
        "metadata": _metadata(task),
        "status": task.thread_status,
        "config": {},
        "values": inbox_thread_values(task),
        "error": out.thread_error(task.contract) if task.thread_status == "error" else None,
        "interrupts": {str(task.pk): [_interrupt(task, can_decide=can_decide)]} if pending else {},
    }
    return {key: thread[key] for key in select} if select else thread


class InboxView(PlatformView):
    via = AuditRecord.Interface.AGENT_INBOX

    def task(self, thread_id: UUID) -> ReviewTask:
        return review_task_thread_get(tenant=self.tenant, task_id=thread_id)

    def can_decide(self, task: ReviewTask) -> bool:
        return task.status == ReviewStatus.PENDING and review_task_can_resume(
            task=task, user=self.request.user, membership=self.membership
        )


class InboxThreadSearchApi(InboxView):
    roles = {"POST": PEOPLE_ROLES}

    @extend_schema(
        operation_id="agent_inbox_threads_search",
        request=ThreadSearchInputSerializer,
        responses={200: out.ThreadOutputSerializer(many=True), **detail_errors(400, 401, 403, 404, 422, 429)},
    )
    def post(self, request: Request, tenant_slug: str) -> Response:
        """The caller's inbox: the review tasks they may decide, one thread each, newest
        first; metadata filters on graph_id, assistant_id, kind, contract_id."""
        query = ThreadSearchInputSerializer(data=self.body())
        query.is_valid(raise_exception=True)
        q = query.validated_data
        tasks = self._tasks(q)
        if tasks is None:
            return Response([], headers=_pagination_headers(0, q["offset"], q["limit"]))
        total = tasks.count()
        page = list(tasks[q["offset"] : q["offset"] + q["limit"]])
        # Listed tasks are the caller's to decide (pending ones; four eyes is checked
        # when they answer).
        body = [
            inbox_thread_json(task, can_decide=task.status == ReviewStatus.PENDING, select=q.get("select"))
            for task in page
        ]
        return Response(body, headers=_pagination_headers(total, q["offset"], q["limit"]))

    def _tasks(self, q: dict):
        metadata = dict(q.get("metadata") or {})
        for key, ours in (("graph_id", out.GRAPH_ID), ("assistant_id", out.ASSISTANT_ID)):
            if key in metadata and metadata.pop(key) != ours:
                return None
        unknown = set(metadata) - set(INBOX_METADATA_KEYS)
        if unknown:
            return None  # no review task has such metadata
        tasks = review_task_thread_list(
            tenant=self.tenant,
            user=self.request.user,
            membership=self.membership,
            status=q.get("status"),
            kind=metadata.get("kind"),
        )
        try:
            if "contract_id" in metadata:
                tasks = tasks.filter(contract_id=UUID(str(metadata["contract_id"])))
            if "review_task_id" in metadata:
                tasks = tasks.filter(pk=UUID(str(metadata["review_task_id"])))
        except ValueError:
            return None
        if q.get("ids") is not None:
            tasks = tasks.filter(pk__in=q["ids"])
        if q.get("sort_by"):
            sign = "" if q.get("sort_order") == "asc" else "-"
            tasks = tasks.order_by(f"{sign}{_ORDERINGS[q['sort_by']]}", f"{sign}pk")
        elif q.get("sort_order") == "asc":
            tasks = tasks.order_by("created_at", "pk")
        return tasks


class InboxThreadCountApi(InboxThreadSearchApi):
    @extend_schema(
        operation_id="agent_inbox_threads_count",
        request=ThreadCountInputSerializer,
        responses={200: OpenApiTypes.INT, **detail_errors(400, 401, 403, 404, 422, 429)},
    )
    def post(self, request: Request, tenant_slug: str) -> Response:
        query = ThreadCountInputSerializer(data=self.body())
        query.is_valid(raise_exception=True)
        tasks = self._tasks(query.validated_data)
        return Response(0 if tasks is None else tasks.count())


class InboxThreadDetailApi(InboxView):
    roles = {"GET": PEOPLE_ROLES}

    @extend_schema(
        operation_id="agent_inbox_threads_get",
        parameters=[OpenApiParameter("include", str, many=True, required=False)],
        responses={200: out.ThreadOutputSerializer, **detail_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str, thread_id: UUID) -> Response:
        task = self.task(thread_id)
        return Response(inbox_thread_json(task, can_decide=self.can_decide(task)))


def inbox_state_json(task: ReviewTask, *, can_decide: bool) -> dict[str, Any]:
    thread_id = str(task.pk)
    pending = task.status == ReviewStatus.PENDING
    node = NODE_OF_KIND.get(task.kind, task.kind)
    interrupts = [_interrupt(task, can_decide=can_decide)] if pending else []
    tasks = (
        [
            {
                "id": thread_id,
                "name": node,
                "path": ["__pregel_pull", node],
                "error": None,
                "interrupts": interrupts,
                "checkpoint": None,
                "state": None,
                "result": None,
            }
        ]
        if pending
        else []
    )
    return {
        "values": inbox_thread_values(task),
        "next": [node] if pending else [],
        "tasks": tasks,
        "metadata": {**_metadata(task), "thread_id": thread_id},
        "created_at": out.iso(task.updated_at),
        "checkpoint": out.checkpoint_json(thread_id, None),
        "parent_checkpoint": None,
        "interrupts": interrupts,
        "checkpoint_id": None,
        "parent_checkpoint_id": None,
    }


class InboxThreadStateApi(InboxView):
    roles = {"GET": PEOPLE_ROLES, "POST": ADMIN_ROLES}

    @extend_schema(
        operation_id="agent_inbox_threads_get_state",
        parameters=[OpenApiParameter("subgraphs", bool, required=False)],
        responses={200: out.ThreadStateOutputSerializer, **detail_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str, thread_id: UUID) -> Response:
        task = self.task(thread_id)
        return Response(inbox_state_json(task, can_decide=self.can_decide(task)))

    @extend_schema(
        operation_id="agent_inbox_threads_update_state",
        request=StateUpdateInputSerializer,
        responses={200: out.StateUpdateOutputSerializer, **detail_errors(400, 401, 403, 404, 409, 422, 429)},
    )
    def post(self, request: Request, tenant_slug: str, thread_id: UUID) -> Response:
        """Agent Inbox's "resolve" ({values: null, as_node: "__end__"}): the task's
        contract is cancelled, every task of it closed, as a tenant admin's cancel
        through this task (which must still be pending)."""
        serializer = StateUpdateInputSerializer(data=self.body())
        serializer.is_valid(raise_exception=True)
        task = self.task(thread_id)
        contract_cancel(
            tenant=self.tenant, contract_id=task.contract_id, user=request.user, via=self.via, task_id=task.pk
        )
        return Response({"checkpoint": out.checkpoint_json(str(task.pk), None)})


def inbox_progress(*, tenant: Tenant, task_id: UUID, run_id: UUID) -> RunProgress:
    """As apis.native_progress, for a review task's thread: the run's tasks are read
    before the rows the output comes from (see there why)."""
    task = review_task_thread_get(tenant=tenant, task_id=task_id)
    run = _run_of_task(tenant, task, run_id)
    tasks = review_tasks_get_many(tenant=tenant, task_ids=run.task_ids)
    task = review_task_thread_get(tenant=tenant, task_id=task_id)
    contract = contract_thread_get(tenant=tenant, contract_id=task.contract_id)
    status = run_status(run=run, contract=contract, tasks=tasks)
    nodes = run_nodes(run, contract, tasks, [], status)
    if status not in DONE:
        return RunProgress(status=status, nodes=nodes)
    if status == "error":
        return RunProgress(status=status, output={"__error__": out.thread_error(contract)}, nodes=nodes)
    output = inbox_thread_values(task)
    if task.status == ReviewStatus.PENDING:
        output["__interrupt__"] = [{**_interrupt(task, can_decide=True), "response_schema": None}]
    return RunProgress(status=status, output=output, nodes=nodes)


def _run_of_task(tenant: Tenant, task: ReviewTask, run_id: UUID | str) -> Run:
    run = run_list(tenant=tenant, contract_id=task.contract_id).filter(pk=run_id).first()
    if run is None or str(task.pk) not in run.task_ids:
        raise NotFound()
    return run


class _InboxRunView(InboxView):
    roles = {"POST": DECIDING_ROLES}

    def run_create(self, thread_id: UUID) -> tuple[Run, ReviewTask, dict]:
        serializer = RunCreateInputSerializer(data=self.body())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        assistant_check(data["assistant_id"])
        task = self.task(thread_id)
        if data.get("input") is not None:
            raise InvalidInput(
                "input: threads here are review tasks; answer with command.resume, or submit "
                "contracts through the /langgraph/ prefix.",
                fields={"input": ["Not accepted here."]},
            )
        # Agent Inbox answers with a bare value: it is this thread's (this task's) one interrupt.
        run, _ = run_request(
            self,
            contract_id=task.contract_id,
            data=data,
            answers_for=lambda resume: ({task.interrupt_id: decision_from_responses(resume, task)}, None),
        )
        return run, task, data

    def poll(self, task: ReviewTask, run: Run):
        tenant = self.tenant
        return lambda: inbox_progress(tenant=tenant, task_id=task.pk, run_id=run.pk)

    def run_body(self, run: Run, task: ReviewTask) -> dict:
        contract = contract_thread_get(tenant=self.tenant, contract_id=task.contract_id)
        tasks = review_tasks_get_many(tenant=self.tenant, task_ids=run.task_ids)
        return out.run_json(run, thread_id=str(task.pk), status=run_status(run=run, contract=contract, tasks=tasks))


class InboxRunListCreateApi(_InboxRunView):
    roles = {"GET": PEOPLE_ROLES, "POST": DECIDING_ROLES}

    @extend_schema(
        operation_id="agent_inbox_runs_list",
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
        task = self.task(thread_id)
        contract = contract_thread_get(tenant=self.tenant, contract_id=task.contract_id)
        runs = [
            run for run in run_list(tenant=self.tenant, contract_id=contract.pk)[:500] if str(task.pk) in run.task_ids
        ]
        listed = []
        for run in runs:
            status = run_status(run=run, contract=contract, tasks=[task])
            if q.get("status") in (None, status):
                listed.append(out.run_json(run, thread_id=str(task.pk), status=status))
        return Response(listed[q["offset"] : q["offset"] + q["limit"]])

    @extend_schema(
        operation_id="agent_inbox_runs_create",
        request=RunCreateInputSerializer,
        parameters=_IDEMPOTENCY_HEADERS,
        responses={200: out.RunOutputSerializer, **_RUN_ERRORS},
    )
    def post(self, request: Request, tenant_slug: str, thread_id: UUID) -> Response:
        """Answer the task (Agent Inbox's "ignore" goes this way) and return the run."""
        run, task, _ = self.run_create(thread_id)
        return Response(
            self.run_body(run, task), headers={"Content-Location": run_paths(str(task.pk), str(run.pk))["run"]}
        )


class InboxRunWaitApi(_InboxRunView):
    @extend_schema(
        operation_id="agent_inbox_runs_wait",
        request=RunCreateInputSerializer,
        parameters=_IDEMPOTENCY_HEADERS,
        responses={200: _WAIT_RESPONSE, **_RUN_ERRORS},
    )
    def post(self, request: Request, tenant_slug: str, thread_id: UUID) -> StreamingHttpResponse:
        run, task, _ = self.run_create(thread_id)
        return wait_response(self.poll(task, run), thread_id=str(task.pk), run_id=str(run.pk))


class InboxRunStreamApi(_InboxRunView):
    @extend_schema(
        operation_id="agent_inbox_runs_stream",
        request=RunCreateInputSerializer,
        parameters=_IDEMPOTENCY_HEADERS,
        responses={(200, "text/event-stream"): _STREAM_RESPONSE, **_RUN_ERRORS},
    )
    def post(self, request: Request, tenant_slug: str, thread_id: UUID) -> StreamingHttpResponse:
        """Answer the task and stream the run (Agent Inbox sends streamMode "events")."""
        run, task, data = self.run_create(thread_id)
        return stream_response(
            self.poll(task, run), thread_id=str(task.pk), run_id=str(run.pk), modes=data["stream_mode"]
        )


class _InboxRunDetailView(_InboxRunView):
    roles = {"GET": PEOPLE_ROLES}

    def run_of(self, thread_id: UUID, run_id: UUID) -> tuple[Run, ReviewTask]:
        task = self.task(thread_id)
        return _run_of_task(self.tenant, task, run_id), task


class InboxRunDetailApi(_InboxRunDetailView):
    @extend_schema(
        operation_id="agent_inbox_runs_get",
        responses={200: out.RunOutputSerializer, **detail_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str, thread_id: UUID, run_id: UUID) -> Response:
        run, task = self.run_of(thread_id, run_id)
        return Response(self.run_body(run, task))


class InboxRunJoinApi(_InboxRunDetailView):
    @extend_schema(
        operation_id="agent_inbox_runs_join",
        parameters=[OpenApiParameter("cancel_on_disconnect", str, required=False)],
        responses={200: _WAIT_RESPONSE, **detail_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str, thread_id: UUID, run_id: UUID) -> StreamingHttpResponse:
        run, task = self.run_of(thread_id, run_id)
        return wait_response(self.poll(task, run), thread_id=str(task.pk), run_id=str(run.pk))


class InboxRunJoinStreamApi(_InboxRunDetailView):
    @extend_schema(
        operation_id="agent_inbox_runs_join_stream",
        parameters=[
            OpenApiParameter("stream_mode", str, many=True, required=False, enum=list(out.STREAM_MODES)),
            OpenApiParameter("cancel_on_disconnect", str, required=False),
        ],
        responses={(200, "text/event-stream"): _STREAM_RESPONSE, **detail_errors(400, 401, 403, 404, 422, 429)},
    )
    def get(self, request: Request, tenant_slug: str, thread_id: UUID, run_id: UUID) -> StreamingHttpResponse:
        query = _JoinStreamQuerySerializer(data=join_stream_query(request))
        query.is_valid(raise_exception=True)
        run, task = self.run_of(thread_id, run_id)
        modes = query.validated_data.get("stream_mode") or run.kwargs.get("stream_mode") or ["values"]
        return stream_response(self.poll(task, run), thread_id=str(task.pk), run_id=str(run.pk), modes=modes)


# --- What the prefix shares with the native one, under its own operation ids ----------


class InboxOkApi(apis.OkApi):
    @extend_schema(operation_id="agent_inbox_ok", responses={200: apis.OkSerializer})
    def get(self, request: Request, tenant_slug: str) -> Response:
        return super().get(request, tenant_slug)


class InboxInfoApi(apis.InfoApi):
    @extend_schema(operation_id="agent_inbox_info", responses={200: out.InfoOutputSerializer})
    def get(self, request: Request, tenant_slug: str) -> Response:
        return super().get(request, tenant_slug)


class InboxAssistantSearchApi(apis.AssistantSearchApi):
    via = AuditRecord.Interface.AGENT_INBOX

    @extend_schema(
        operation_id="agent_inbox_assistants_search",
        request=apis.AssistantSearchInputSerializer,
        responses={200: out.AssistantOutputSerializer(many=True), **detail_errors(400, 401, 403, 404, 422, 429)},
    )
    def post(self, request: Request, tenant_slug: str) -> Response:
        return super().post(request, tenant_slug)


class InboxAssistantDetailApi(apis.AssistantDetailApi):
    via = AuditRecord.Interface.AGENT_INBOX

    @extend_schema(
        operation_id="agent_inbox_assistants_get",
        responses={200: out.AssistantOutputSerializer, **detail_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, tenant_slug: str, assistant_id: str) -> Response:
        return super().get(request, tenant_slug, assistant_id)
