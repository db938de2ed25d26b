"""Checkpoints of a training run: written atomically, read back safely, and a stop on Ctrl-C that loses nothing.

A checkpoint is one file, ``NAME.ckpt`` beside the run's log, holding what the
run needs to continue as if it had never stopped: the model, the optimizer
(``ProjUNN``'s step counts, bases and error buffers included), the random
generators in use, the iteration, the time and CPU time spent, and the rows
of the log so far. It is written to a temporary file, flushed, synced and
renamed over the last one, whose previous version is kept as
``NAME.ckpt.prev``: a kill in the middle of a write leaves the last complete
checkpoint, and :func:`load` falls back to the previous one (and says so) if
the last is damaged. Files are read with ``torch.load(weights_only=True)``:
tensors, numbers, strings and containers of them, nothing that runs code.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .runs import SettingsError

#: What a checkpoint file says it is: a run of this library, and its format's version
FORMAT = "unitary_lowrank.train checkpoint 1"


def interval(every: str | None) -> tuple[int | None, float | None]:
    """``--checkpoint-every``: ``"500"``: every 500 iterations; ``"10m"``: every 10 minutes; ``"0"``: never."""
    text = (every or "0").strip()
    try:
        value = float(text[:-1]) if text.endswith("m") else int(text)
    except ValueError:
        raise SettingsError(f"--checkpoint-every: expected iterations (500) or minutes (10m); got {every!r}") from None
    if value < 0:
        raise SettingsError(f"--checkpoint-every: must be ≥ 0; got {every!r}")
    if not value:
        return None, None
    return (None, float(value)) if text.endswith("m") else (int(value), None)


class Schedule:
    """When the next periodic checkpoint is due: every so many iterations, or minutes (:func:`interval`)."""

    def __init__(self, every: tuple[int | None, float | None], iteration: int) -> None:
        self.iterations, self.minutes = every
        self.saved(iteration)

    def due(self, iteration: int) -> bool:
        """Whether a checkpoint is due after ``iteration``."""
        if self.iterations and iteration - self.last >= self.iterations:
            return True
        return bool(self.minutes) and time.perf_counter() - self.last_at >= 60 * (self.minutes or 0)

    def saved(self, iteration: int) -> None:
        """A checkpoint was written after ``iteration``: the next is counted from here."""
        self.last, self.last_at = iteration, time.perf_counter()


def progress_of(out: str | os.PathLike, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """Where run ``name`` in folder ``out`` stands, as a study script needs it: ``(summary, resume)``.

    ``summary``: its JSON summary if it finished (a run stopped by Ctrl-C or a kill has not), else
    ``None``; ``resume``: the checkpoint to continue from if one was left unfinished, else ``None``.
    """
    import json

    folder = Path(out)
    summary_path, checkpoint = folder / f"{name}.json", folder / f"{name}.ckpt"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if not summary.get("interrupted"):
            return summary, None
    if checkpoint.exists() and not load(checkpoint)[0]["finished"]:
        return None, str(checkpoint)
    return None, None


def path_for(log: Path) -> Path:
    """The checkpoint of the run whose log is ``log``: ``NAME.ckpt`` beside ``NAME.csv``."""
    return log.with_suffix(".ckpt")


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically, keeping the previous checkpoint as ``path.prev``."""
    import torch

    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        torch.save({"format": FORMAT, **state}, file)
        file.flush()
        os.fsync(file.fileno())
    if path.exists():  # the last one becomes .prev while it still stands as path: no moment without a checkpoint
        previous, linked = path.with_name(path.name + ".prev"), path.with_name(path.name + ".prev.tmp")
        linked.unlink(missing_ok=True)
        try:
            os.link(path, linked)
        except OSError:  # a file system without hard links: a copy
            shutil.copyfile(path, linked)
        os.replace(linked, previous)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the renames themselves reach the disk
    finally:
        os.close(directory)


def load(where: str | os.PathLike, task: str | None = None) -> tuple[dict[str, Any], Path]:
    """The checkpoint at ``where`` (a file, or a run folder holding one), and the file it came from.

    A damaged or truncated last checkpoint falls back to ``.prev`` with a line
    on stderr; a file that is not a checkpoint of this library, or of another
    task than ``task``, raises :class:`~unitary_lowrank.tasks.runs.SettingsError`
    with one line that says which.
    """
    path = Path(where)
    if path.is_dir():
        found = sorted({Path(str(p).removesuffix(".prev")) for p in (*path.glob("*.ckpt"), *path.glob("*.ckpt.prev"))})
        if not found:
            raise SettingsError(f"--resume: no checkpoint (*.ckpt) in {path}")
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise SettingsError(f"--resume: {path} holds the checkpoints of several runs ({names}); name one")
        path = found[0]
    if not path.exists() and not path.with_name(path.name + ".prev").exists():
        raise SettingsError(f"--resume: {path} does not exist")
    candidates = [path, path.with_name(path.name + ".prev")]
    problems: list[str] = []
    for candidate in candidates:
        if not candidate.exists():
            problems.append("missing (a write was interrupted)")
            continue
        state, problem = _read(candidate)
        if problem is None and task is not None and state.get("task") != task:
            raise SettingsError(f"--resume: {candidate} is a checkpoint of task {state.get('task')!r}, not {task!r}")
        if problem is None:
            if candidate != path:
                print(f"--resume: {path} is {problems[-1]}; resuming from the one before, {candidate}", file=sys.stderr)
            return state, candidate
        problems.append(problem)
    if not candidates[1].exists():
        raise SettingsError(f"--resume: {path} is {problems[0]}")
    raise SettingsError(
        f"--resume: {path} is {problems[0]}, and the one before ({candidates[1].name}) is {problems[1]}"
    )


def _read(path: Path) -> tuple[dict[str, Any], str | None]:
    """The checkpoint in ``path``, or why it is not one (damaged, truncated, another format)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # damaged bytes fail anywhere in the unpickler (IndexError, UnpicklingError, ...)
        return {}, f"not a readable checkpoint (damaged or truncated: {type(err).__name__})"
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return {}, "not a checkpoint of unitary-lowrank train"
    return state, None


def random_state(generators: dict[str, Any]) -> dict[str, Any]:
    """The state of the random generators a run uses: torch's global one, Python's, and ``generators``."""
    import torch

    version, words, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "python": [version, list(words), gauss],
        **{name: generator.get_state() for name, generator in generators.items()},
    }


def restore_random_state(state: dict[str, Any], generators: dict[str, Any]) -> None:
    """Set the generators back to what :func:`random_state` saved."""
    import torch

    torch.set_rng_state(state["torch"])
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    for name, generator in generators.items():
        generator.set_state(state[name])


class Stop:
    """Set by Ctrl-C (SIGINT) or SIGTERM while :func:`stop_requests` is active: the run stops after this iteration."""

    requested = False
    signal_name = ""


@contextmanager
def stop_requests() -> Iterator[Stop]:
    """Catch SIGINT and SIGTERM during a run: the first one asks for a clean stop, a second one stops at once."""
    stop = Stop()
    previous: dict[signal.Signals, Any] = {}

    def ask(number: int, frame: Any) -> None:
        if stop.requested:  # the second one: the user means it
            raise KeyboardInterrupt
        stop.requested, stop.signal_name = True, signal.Signals(number).name
        print(
            f"\n{stop.signal_name}: stopping after this iteration (writing a checkpoint); once more to stop at once",
            file=sys.stderr,
            flush=True,
        )

    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[number] = signal.signal(number, ask)
        except ValueError:  # not the main thread: signals cannot be caught here
            pass
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
