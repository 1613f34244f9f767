"""The taps stage: transition-point candidates, the rules that find them, the guards no tap may
break, and the choice of K well-spaced taps.

- :mod:`~tapfinder.taps.candidates`: :class:`~tapfinder.Candidate` and the rule registry;
- :mod:`~tapfinder.taps.rules`: one rule module per kind of transition point;
- :mod:`~tapfinder.taps.guards`: nodes that must never be taps, and why;
- :mod:`~tapfinder.taps.selection`: :func:`~tapfinder.select_taps` and :class:`~tapfinder.Tap`,
  with :mod:`~tapfinder.taps.positions` for the position policies;
- :mod:`~tapfinder.taps.quality`: how good a set of taps is, from structure alone.
"""
