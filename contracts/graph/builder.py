from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from contracts.graph import nodes
from contracts.graph.state import ContractState

# The graph's name where clients name it: LangGraph's graph_id, and the name of the one
# assistant the LangGraph-compatible API serves (contracts.platform).
GRAPH_ID = "contract_review"


def _hooked(name: str, node: Callable, hook: Callable[[str], None] | None) -> Callable:
    if hook is None:
        return node

    @wraps(node)
    def run(state):
        hook(name)
        return node(state)

    return run


def contract_graph_build(
    checkpointer: BaseCheckpointSaver | None, *, node_hook: Callable[[str], None] | None = None
) -> CompiledStateGraph:
    """analyze -> (legal_review || finance_review) -> reviews_done -> [signoff_review | amend] -> finalize

    `node_hook(name)` runs as each node starts (the recovery tests' kill points)."""
    graph = StateGraph(ContractState)
    for name, node in [
        ("analyze", nodes.analyze),
        ("legal_review", nodes.legal_review),
        ("finance_review", nodes.finance_review),
        ("reviews_done", nodes.reviews_done),
        ("signoff_review", nodes.signoff_review),
        ("amend", nodes.amend),
        ("finalize", nodes.finalize),
    ]:
        graph.add_node(name, _hooked(name, node, node_hook))

    graph.add_edge(START, "analyze")
    graph.add_conditional_edges("analyze", nodes.route_reviews, ["legal_review", "finance_review", "finalize"])
    # Both branches lead to one join node; when both ran in the same step it runs once,
    # after both interrupts are answered.
    graph.add_edge("legal_review", "reviews_done")
    graph.add_edge("finance_review", "reviews_done")
    graph.add_conditional_edges("reviews_done", nodes.route_after_reviews, ["signoff_review", "amend", "finalize"])
    graph.add_edge("signoff_review", "finalize")
    graph.add_edge("amend", "finalize")
    graph.add_edge("finalize", END)
    return graph.compile(checkpointer=checkpointer)
