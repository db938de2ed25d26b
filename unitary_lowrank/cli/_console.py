"""The terminal output of the command-line tools: a console and a progress bar."""

from __future__ import annotations

import time
from typing import Any


def console() -> Any:
    """A rich console; piped or logged output gets a width that keeps whole tables readable."""
    from rich.console import Console

    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=132)


def progress_bar(name: str, on: Any) -> Any:
    """A transient progress bar: name, bar, done/total, current item, elapsed time.

    When the output is not a terminal (a pipe, a CI log) a live bar would print
    nothing; progress is then written as plain lines, about every 10 % of the
    items and at least every 30 s.
    """
    if not on.is_terminal:
        return _LogProgress(name, on)
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


class _LogProgress:
    """The part of ``rich.progress.Progress`` the commands use, printing a line now and then."""

    def __init__(self, name: str, on: Any) -> None:
        self.name, self.on = name, on
        self.total, self.done, self.description = 0, 0, ""
        self.start = self.last = time.perf_counter()
        self.next_fraction = 0.1

    def __enter__(self) -> _LogProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, description: str, total: int) -> int:
        self.total, self.description = total, description
        return 0

    def update(self, task: int, *, advance: int = 0, description: str | None = None) -> None:
        if description is not None:
            self.description = description
        if advance:
            self.advance(task, advance)

    def advance(self, task: int, advance: int = 1) -> None:
        self.done += advance
        now = time.perf_counter()
        fraction = self.done / max(self.total, 1)
        if fraction >= self.next_fraction or now - self.last >= 30 or self.done == self.total:
            self.on.print(
                f"{self.name}: {self.done}/{self.total} ({100 * fraction:.0f} %) {self.description} "
                f"— {now - self.start:.0f} s",
                highlight=False,
            )
            self.last = now
            while self.next_fraction <= fraction:
                self.next_fraction += 0.1
