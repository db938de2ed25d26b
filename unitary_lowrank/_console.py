"""The terminal output of the command-line tools: a console and a progress bar."""

from __future__ import annotations

from typing import Any


def console() -> Any:
    """A rich console; piped or logged output gets a width that keeps whole tables readable."""
    from rich.console import Console

    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=132)


def progress_bar(name: str, on: Any) -> Any:
    """A transient progress bar: name, bar, done/total, current item, elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(f"[bold]{name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=on,
        transient=True,
    )
