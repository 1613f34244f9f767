"""The show stage: what a person reads.

- :mod:`~tapfinder.show.drawing`: :func:`~tapfinder.render`, annotated graphviz drawings;
- :mod:`~tapfinder.show.report`: the text and JSON reports of candidates and taps;
- :mod:`~tapfinder.show.page`: one self-contained, interactive HTML page of graph and taps.
"""
