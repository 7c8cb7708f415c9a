// Agent Inbox's own calls, made with the client it uses (@langchain/langgraph-sdk), as
// its source makes them (src/lib/client.ts, components/agent-inbox/contexts/
// ThreadContext.tsx, contexts/utils.ts, hooks/use-interrupted-actions.tsx, utils.ts).
//
// Usage: node agent_inbox.mjs '<json plan>'
//   plan = {"url": deployment URL, "key": API key, "graphId": "contract_review",
//           "steps": [{"op": ...}, ...]}
// Prints one JSON line: {"results": [...]}, one result per step; a step that throws
// gives {"error": {"name", "message", "status"}} and the plan goes on.
import { Client } from "@langchain/langgraph-sdk";

const plan = JSON.parse(process.argv[2]);

// src/lib/client.ts: the API key in `x-api-key`, nothing else.
const client = new Client({ apiUrl: plan.url, defaultHeaders: { "x-api-key": plan.key } });

// contexts/utils.ts getInterruptFromThread, for the shape Agent Inbox renders: each
// value of thread.interrupts is a list whose first item's value is [HumanInterrupt].
function interruptsOf(thread) {
  if (!thread.interrupts || Object.values(thread.interrupts).length === 0) return undefined;
  return Object.values(thread.interrupts).flatMap((interrupt) => {
    const value = interrupt?.[0]?.value;
    if (Array.isArray(value) && value[0]?.action_request && value[0]?.config) return value;
    return [{ action_request: { action: "improper_schema", args: {} }, config: {} }];
  });
}

// utils.ts createDefaultHumanResponse + use-interrupted-actions handleSubmit: the
// response Agent Inbox sends for the chosen submit type.
function humanResponse(interrupt, answer) {
  if (answer.type === "accept") return { type: "accept", args: interrupt.action_request };
  if (answer.type === "edit") {
    // Every argument is edited as a string.
    const args = Object.fromEntries(Object.entries({ ...interrupt.action_request.args, ...answer.args })
      .map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
    return { type: "edit", args: { ...interrupt.action_request, args } };
  }
  if (answer.type === "response") return { type: "response", args: answer.text };
  return { type: "ignore", args: null };
}

async function thread(threadId) {
  return client.threads.get(threadId);
}

const steps = {
  // utils.ts fetchDeploymentInfo: no API key, a JSON content type (so a browser sends a
  // CORS preflight first).
  async info() {
    const response = await fetch(`${plan.url.replace(/\/$/, "")}/info`, {
      method: "GET", headers: { "Content-Type": "application/json" },
    });
    return { status: response.status, body: await response.json() };
  },
  // ThreadContext.tsx fetchThreads: status of the inbox tab, metadata {graph_id}.
  async search(step) {
    const threads = await client.threads.search({
      offset: step.offset ?? 0, limit: step.limit ?? 10,
      ...(step.status ? { status: step.status } : {}),
      metadata: { graph_id: plan.graphId },
    });
    return threads.map((t) => ({ thread_id: t.thread_id, status: t.status, metadata: t.metadata,
                                 interrupts: interruptsOf(t) ?? null }));
  },
  async get(step) {
    const t = await thread(step.threadId);
    return { thread_id: t.thread_id, status: t.status, values: t.values, interrupts: interruptsOf(t) ?? null };
  },
  async state(step) {
    const state = await client.threads.getState(step.threadId);
    const lastTask = state.tasks[state.tasks.length - 1];
    return { next: state.next, last_interrupt: lastTask?.interrupts?.[lastTask.interrupts.length - 1] ?? null };
  },
  // use-interrupted-actions handleSubmit: the first interrupt of the thread, answered
  // with [HumanResponse] through runs.stream in "events" mode; it shows the node of
  // each on_chain_start, and an error event as an error.
  async respond(step) {
    const t = await thread(step.threadId);
    const [interrupt] = interruptsOf(t);
    const chunks = client.runs.stream(step.threadId, plan.graphId, {
      command: { resume: [humanResponse(interrupt, step.answer)] },
      streamMode: "events",
    });
    const nodes = [], events = [], errors = [];
    for await (const chunk of chunks) {
      events.push(chunk.event);
      if (chunk.data?.event === "on_chain_start" && chunk.data?.metadata?.langgraph_node) {
        nodes.push(chunk.data.metadata.langgraph_node);
      } else if (typeof chunk.event === "string" && chunk.event === "error") {
        errors.push(chunk.data);
      }
    }
    // fetchSingleThread afterwards.
    const after = await thread(step.threadId);
    return { nodes, events, errors, status_after: after.status };
  },
  // handleIgnore: runs.create with [{type: "ignore", args: null}].
  async ignore(step) {
    const run = await client.runs.create(step.threadId, plan.graphId, {
      command: { resume: [{ type: "ignore", args: null }] },
    });
    return { run_id: run.run_id, status: run.status };
  },
  // handleResolve -> ignoreThread: updateState(values null, asNode END).
  async resolve(step) {
    return client.threads.updateState(step.threadId, { values: null, asNode: "__end__" });
  },
};

const results = [];
for (const step of plan.steps) {
  try {
    results.push(await steps[step.op](step));
  } catch (error) {
    results.push({ error: { name: error?.name, message: String(error?.message ?? error), status: error?.status ?? null } });
  }
}
console.log(JSON.stringify({ results }));
