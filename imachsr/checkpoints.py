"""Files that survive a crash: every checkpoint and artefact is written to a temporary file in
the same folder, flushed to disk, then renamed over the old one, so a run killed (or a disk
filled) in the middle of a write leaves the previous file whole.

>>> save_atomically({"step": 1}, "state.pt")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["save_atomically", "write_text_atomically"]


def _replace_atomically(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, flush it to disk and rename it over
    ``path`` (atomic on POSIX and Windows within one folder); on any error the temporary file
    goes and ``path`` is as it was."""
    target = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                             dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_atomically(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)``, atomically: ``path`` holds the old file or the new one,
    never a truncated one."""
    _replace_atomically(path, lambda file: torch.save(obj, file))


def write_text_atomically(text: str, path: str | os.PathLike[str]) -> None:
    """``Path(path).write_text(text)`` (UTF-8), atomically."""
    _replace_atomically(path, lambda file: file.write(text.encode("utf-8")))
