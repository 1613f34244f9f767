"""The capture stage: from a model and example inputs to a traced graph with shapes.

- :mod:`~tapfinder.capture.tracing`: the public :func:`~tapfinder.trace`;
- :mod:`~tapfinder.capture.fx_tracer`: the ``torch.fx`` tracer (module scopes, auto-leaf);
- :mod:`~tapfinder.capture.call_binding`: how example inputs bind to ``forward``'s parameters;
- :mod:`~tapfinder.capture.example_inputs`: example inputs given as tensors, shapes or
  :class:`~tapfinder.Inputs`;
- :mod:`~tapfinder.capture.eager_record`: one eager run recorded as a graph, where fx cannot
  trace the root;
- :mod:`~tapfinder.capture.shape_propagation` and :mod:`~tapfinder.capture.shape_formulas`:
  shapes without compute (meta and fake tensors, per-layer formulas);
- :mod:`~tapfinder.capture.model_state`: the user's model put back exactly as it was.
"""
