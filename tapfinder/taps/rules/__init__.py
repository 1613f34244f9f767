"""Built-in rules, one transition-point kind per module (importing them registers them)."""

from . import (  # noqa: F401
    attention,
    bottleneck,
    downsampling,
    fusion,
    norm_act,
    skip_join,
    stage_boundary,
)
