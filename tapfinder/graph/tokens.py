"""Token sequences laid back on the image grid they came from."""

from __future__ import annotations

import math

__all__ = ["token_grid"]

_MAX_EXTRA_TOKENS = 8  # class and register tokens in front of the patch tokens


def token_grid(tokens: int, image_size: tuple[int, ...]) -> tuple[int, int, int] | None:
    """``(extra, height, width)``: how ``tokens`` tokens lie on a grid with the image's aspect
    ratio after ``extra`` leading tokens, or ``None`` when no such grid exists.

    >>> token_grid(197, (224, 224))
    (1, 14, 14)
    """
    if len(image_size) != 2:
        return None
    height_in, width_in = image_size
    for extra in range(min(_MAX_EXTRA_TOKENS, tokens - 1) + 1):
        count = tokens - extra
        for divisor in range(1, math.isqrt(count) + 1):
            if count % divisor:
                continue
            for height, width in ((divisor, count // divisor), (count // divisor, divisor)):
                if height * width_in == width * height_in:
                    return extra, height, width
    return None
