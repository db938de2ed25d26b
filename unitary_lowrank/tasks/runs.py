"""What every training program of the experiments shares: its output files, the CSV log, the summary, the plot.

A run named ``NAME`` writes, under its output folder ``out``:

    NAME.csv    the learning curve, one row per evaluation, flushed as the run goes
    NAME.png    the curve as a picture
    NAME.json   the summary: settings, final figures, timings, and the file names above

Summaries record the output folder relative to the working directory and the
log and plot as file names in it, so that a results folder can be moved or
committed without any machine's paths in it.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "CsvLog",
    "RunFiles",
    "SettingsError",
    "pyplot",
    "recorded_path",
    "run_files",
    "sketch_suffix",
    "write_summary",
]


class SettingsError(ValueError):
    """A run's settings cannot be used (found before training starts); the command line reports it as a usage error."""


class RunFiles(NamedTuple):
    """The three files of a run: CSV log, PNG plot, JSON summary."""

    log: Path
    plot: Path
    summary: Path


def run_files(out: str | os.PathLike, name: str) -> RunFiles:
    """The files of run ``name`` under ``out`` (created if missing)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return RunFiles(folder / f"{name}.csv", folder / f"{name}.png", folder / f"{name}.json")


class CsvLog:
    """A CSV file that grows row by row (header from the first row), flushed after each: a long run can be followed.

    Use as a context manager; ``append=True`` adds to a log written before.
    """

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self._file = open(path, "a" if append else "w", newline="")
        self._writer: csv.DictWriter | None = None
        self._header = not append

    def write(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=list(row))
            if self._header:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CsvLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recorded_path(path: str | os.PathLike) -> str:
    """``path`` as a summary records it: relative (to the working directory, if given absolute).

    A summary lies in its output folder, and its ``log`` and ``plot`` are file
    names in it; data read from elsewhere is recorded by its path from the
    working directory (``../shared/data/...``), with no machine's absolute paths.
    """
    given = Path(path)
    if not given.is_absolute():
        return given.as_posix()
    try:
        return Path(os.path.relpath(given, Path.cwd())).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return given.name


def projunn_options(config: Any) -> dict[str, Any]:
    """The ``ProjUNN`` options of a run's config that its method takes (dense: no rank, sketch or feedback)."""
    if config.method == "dense":
        return {"method": "dense", "seed": config.seed}
    names = ("rank", "method", "sketch", "error_feedback", "seed")
    return {name: getattr(config, name) for name in names if hasattr(config, name)}


def sketch_suffix(config: Any) -> str:
    """What a run's name adds for a sketch other than the default: ``-subspace``, ``-ef`` (error feedback)."""
    suffix = "" if config.sketch == "randomized" else f"-{config.sketch}"
    return suffix + ("-ef" if config.error_feedback else "")


def write_summary(files: RunFiles, summary: dict[str, Any]) -> dict[str, Any]:
    """Write ``summary`` (with the log's and the plot's file names) as the run's JSON; returns it."""
    summary = {**summary, "log": files.log.name, "plot": files.plot.name}
    files.summary.write_text(json.dumps(summary, indent=1))
    return summary


def pyplot() -> Any:
    """``matplotlib.pyplot`` drawing to files (the Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
