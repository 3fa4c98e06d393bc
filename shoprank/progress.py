"""Progress display for long commands (on stderr, so stdout keeps only the summary)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

Advance = Callable[..., None]


@contextmanager
def progress_bar(label: str) -> Iterator[Advance]:
    """Show a live progress line; yields ``advance(done, what="", total=None)``.

    ``done`` is added to the count; ``total`` (when known) turns the spinner into a bar.
    Nothing is drawn when stderr is not a terminal.
    """
    console = Console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, what: str = "", total: int | None = None) -> None:
            bar.update(task, advance=done, total=total, description=f"{label} {what}".strip())

        yield advance
