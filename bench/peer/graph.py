"""The product's contract-review graph, served by a stock `langgraph dev` (bench/peer.py).
No checkpointer here: the dev server brings its own (in memory)."""

from contracts.graph.builder import contract_graph_build

graph = contract_graph_build(None)
