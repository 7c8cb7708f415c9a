"""The LangGraph-Platform-compatible HTTP API, one per tenant.

`/langgraph/<tenant-slug>/` speaks the API that `langgraph-sdk` (`get_client(url=...)`)
and `@langchain/langgraph-sdk` call: assistants, threads, runs, `command.resume`.
`/agent-inbox/<tenant-slug>/` is the same API as Agent Inbox uses it, with every review
task shown as a thread of its own whose interrupt is a HumanInterrupt (the translation
lives beside the decisions it translates, in reviews.agent_inbox).

Transport only: every view calls the services and selectors that the REST API, the
admin and the websocket call (contracts.services, reviews.services, the selectors), so
the rules (who may decide, exactly once, four eyes, claims, the interrupt a decision is
bound to, the audit trail) exist once. A thread is a contract's thread, its public id
the contract's id; a run is a request to advance it (contracts.models.Run), carried out
by a worker, never in the request.
"""
