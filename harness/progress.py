"""Progress output: phase lines and tqdm bars, silenced by ``--quiet`` (``HARNESS_QUIET=1``).

Bars use tqdm's ``disable=None``: they switch themselves off when the output is not a terminal (a CI log, a pipe),
and ``HARNESS_NO_PROGRESS=1`` turns them off everywhere.
"""

from __future__ import annotations

import os


def quiet() -> bool:
    return os.environ.get("HARNESS_QUIET") == "1"


def say(message: str) -> None:
    """One progress line on standard output, unless quiet."""
    if not quiet():
        print(message, flush=True)


def bar_disable(enabled: bool = True) -> bool | None:
    """tqdm's ``disable`` argument: True when bars are off, None (= only on a terminal) otherwise."""
    if not enabled or quiet() or os.environ.get("HARNESS_NO_PROGRESS") == "1":
        return True
    return None
