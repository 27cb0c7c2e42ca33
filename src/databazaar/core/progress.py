"""Progress reporting that is quiet when nobody watches.

Library code takes an optional ``progress`` callable ``(advance: int) -> None``; the CLI
passes one bound to a Rich progress bar. :func:`progress_bar` builds that bar and turns
itself off when stderr is not a terminal or ``quiet`` is set.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ProgressFn = Callable[[int], None]


def _noop(_: int) -> None:
    return None


@contextmanager
def progress_bar(
    description: str, total: int | None, *, quiet: bool = False
) -> Iterator[ProgressFn]:
    """Yield an ``advance(n)`` callable driving a Rich bar (a no-op when disabled)."""
    if quiet or not sys.stderr.isatty():
        yield _noop
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)

        yield advance
