"""Both prefixes' routes, without trailing slashes (the SDKs join these paths to the
base URL they are given: http://host/langgraph/<slug>)."""

from django.urls import path

from contracts.platform import apis, inbox_apis

run = "threads/<uuid:thread_id>/runs/<uuid:run_id>"

langgraph_urlpatterns = [
    path("ok", apis.OkApi.as_view(), name="langgraph-ok"),
    path("info", apis.InfoApi.as_view(), name="langgraph-info"),
    path("assistants/search", apis.AssistantSearchApi.as_view(), name="langgraph-assistant-search"),
    path("assistants/<str:assistant_id>", apis.AssistantDetailApi.as_view(), name="langgraph-assistant-detail"),
    path("threads", apis.ThreadCreateApi.as_view(), name="langgraph-thread-create"),
    path("threads/search", apis.ThreadSearchApi.as_view(), name="langgraph-thread-search"),
    path("threads/count", apis.ThreadCountApi.as_view(), name="langgraph-thread-count"),
    path("threads/<uuid:thread_id>", apis.ThreadDetailApi.as_view(), name="langgraph-thread-detail"),
    path("threads/<uuid:thread_id>/state", apis.ThreadStateApi.as_view(), name="langgraph-thread-state"),
    path("threads/<uuid:thread_id>/runs", apis.ThreadRunListCreateApi.as_view(), name="langgraph-run-list"),
    path("threads/<uuid:thread_id>/runs/wait", apis.ThreadRunWaitApi.as_view(), name="langgraph-run-wait"),
    path("threads/<uuid:thread_id>/runs/stream", apis.ThreadRunStreamApi.as_view(), name="langgraph-run-stream"),
    path(run, apis.RunDetailApi.as_view(), name="langgraph-run-detail"),
    path(f"{run}/join", apis.RunJoinApi.as_view(), name="langgraph-run-join"),
    path(f"{run}/stream", apis.RunJoinStreamApi.as_view(), name="langgraph-run-join-stream"),
    path(f"{run}/cancel", apis.RunCancelApi.as_view(), name="langgraph-run-cancel"),
    path("runs", apis.StatelessRunCreateApi.as_view(), name="langgraph-stateless-run"),
    path("runs/wait", apis.StatelessRunWaitApi.as_view(), name="langgraph-stateless-run-wait"),
    path("runs/stream", apis.StatelessRunStreamApi.as_view(), name="langgraph-stateless-run-stream"),
]

agent_inbox_urlpatterns = [
    path("ok", inbox_apis.InboxOkApi.as_view(), name="agent-inbox-ok"),
    path("info", inbox_apis.InboxInfoApi.as_view(), name="agent-inbox-info"),
    path("assistants/search", inbox_apis.InboxAssistantSearchApi.as_view(), name="agent-inbox-assistant-search"),
    path(
        "assistants/<str:assistant_id>",
        inbox_apis.InboxAssistantDetailApi.as_view(),
        name="agent-inbox-assistant-detail",
    ),
    path("threads/search", inbox_apis.InboxThreadSearchApi.as_view(), name="agent-inbox-thread-search"),
    path("threads/count", inbox_apis.InboxThreadCountApi.as_view(), name="agent-inbox-thread-count"),
    path("threads/<uuid:thread_id>", inbox_apis.InboxThreadDetailApi.as_view(), name="agent-inbox-thread-detail"),
    path("threads/<uuid:thread_id>/state", inbox_apis.InboxThreadStateApi.as_view(), name="agent-inbox-thread-state"),
    path("threads/<uuid:thread_id>/runs", inbox_apis.InboxRunListCreateApi.as_view(), name="agent-inbox-run-list"),
    path("threads/<uuid:thread_id>/runs/wait", inbox_apis.InboxRunWaitApi.as_view(), name="agent-inbox-run-wait"),
    path("threads/<uuid:thread_id>/runs/stream", inbox_apis.InboxRunStreamApi.as_view(), name="agent-inbox-run-stream"),
    path(run, inbox_apis.InboxRunDetailApi.as_view(), name="agent-inbox-run-detail"),
    path(f"{run}/join", inbox_apis.InboxRunJoinApi.as_view(), name="agent-inbox-run-join"),
    path(f"{run}/stream", inbox_apis.InboxRunJoinStreamApi.as_view(), name="agent-inbox-run-join-stream"),
]
