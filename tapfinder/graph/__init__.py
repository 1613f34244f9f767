"""The graph stage: a traced model as an annotated ``networkx`` graph.

- :mod:`~tapfinder.graph.arch_graph`: the :class:`ArchGraph` container, its serialisation and
  its data-flow facts;
- :mod:`~tapfinder.graph.annotate`: building one from a traced model (channels, strides, layer
  index, depth, main path), with :mod:`~tapfinder.graph.layouts` and
  :mod:`~tapfinder.graph.tokens` for tensor layouts and token grids;
- :mod:`~tapfinder.graph.node_kinds`: what one node is (an activation, a norm, a sum, ...);
- :mod:`~tapfinder.graph.structure`: what the graph's parts are (blocks, stages, residual
  units, canonical nodes, base distances), each defined once.
"""

from .arch_graph import ArchGraph, NodeAttributes, carries_tensors, data_flow_dominators

__all__ = ["ArchGraph", "NodeAttributes", "carries_tensors", "data_flow_dominators"]
