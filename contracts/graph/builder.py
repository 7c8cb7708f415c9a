from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from contracts.graph import nodes
from contracts.graph.state import ContractState

# The graph's name where clients name it: LangGraph's graph_id, and the name of the one
# assistant the LangGraph-compatible API serves (contracts.platform).
GRAPH_ID = "contract_review"


def contract_graph_build(checkpointer: BaseCheckpointSaver | None) -> CompiledStateGraph:
    """analyze -> (legal_review || finance_review) -> reviews_done -> [signoff_review | amend] -> finalize"""
    graph = StateGraph(ContractState)
    graph.add_node("analyze", nodes.analyze)
    graph.add_node("legal_review", nodes.legal_review)
    graph.add_node("finance_review", nodes.finance_review)
    graph.add_node("reviews_done", nodes.reviews_done)
    graph.add_node("signoff_review", nodes.signoff_review)
    graph.add_node("amend", nodes.amend)
    graph.add_node("finalize", nodes.finalize)

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
