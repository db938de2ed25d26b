"""``unitary-lowrank verify``: the low-rank steps against dense SciPy references, as a table.

For every shape n×p (square N×N, and tall n×p with orthonormal columns), k and
dtype of the grid it draws a Haar ``U`` and a rank-k update ``A Bᴴ`` with
‖A Bᴴ‖₂ = 1, runs :func:`project` and :func:`transport` on the chosen backend,
and compares with ``scipy.linalg.polar(U + A Bᴴ)`` and
``scipy.linalg.expm(skew(A (U B)ᴴ)) @ U`` (for square ``U`` the same as
``U @ expm(skew(Uᴴ A Bᴴ))``) computed in double precision. The dense baseline
is timed like the low-rank step: one warm-up each, then the repeats alternate
low-rank, dense, low-rank, dense, ..., so that a burst of load on a shared
machine hits both; the speed-up is the median of the per-pair ratios, and a row
whose repeats of either step differ by more than 2× is flagged as noisy.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg

from ..haar import random_unitary
from ..project import project
from ..transport import transport
from ._options import at_least

DEFAULT_SIZES = (64, 256, 1024)
#: Tall shapes n×p (orthonormal columns) of the default grid.
DEFAULT_TALL = ((1024, 64), (1024, 256))
DEFAULT_RANKS = (1, 4, 16)
DEFAULT_DTYPES = ("float32", "float64", "complex64", "complex128")
TOLERANCE = {"float32": 1e-5, "complex64": 1e-5, "float64": 1e-12, "complex128": 1e-12}
#: A row whose slowest repeat of a step takes more than this many times its fastest is flagged.
NOISY_SPREAD = 2.0


@dataclass
class Row:
    step: str
    n: int
    p: int
    k: int
    dtype: str
    error: float
    unitarity: float
    tolerance: float
    lowrank_ms: float
    dense_ms: float
    #: median of the per-repeat ratios dense / low-rank
    speedup: float
    #: slowest over fastest repeat, per step
    lowrank_spread: float
    dense_spread: float

    @property
    def noisy(self) -> bool:
        """The repeats of either step disagree by more than :data:`NOISY_SPREAD`: the timing is not trustworthy."""
        return max(self.lowrank_spread, self.dense_spread) > NOISY_SPREAD

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance and self.unitarity <= self.tolerance


class Converter:
    """Moves NumPy arrays to a backend and back, and waits for its results."""

    to: Callable[[Any], Any]  #: NumPy array → the backend's
    back: Callable[[Any], Any]  #: the backend's array → NumPy
    sync: Callable[[Any], Any]  #: wait for the backend's work on an array

    def __init__(self, backend: str, device: str | None = None):
        self.name = backend
        if backend == "numpy":
            self.to, self.back, self.sync = (lambda x: x), np.asarray, (lambda x: None)
        elif backend == "array_api_strict":
            import array_api_strict as xs

            self.to = xs.asarray
            self.back = lambda x: np.from_dlpack(x)
            self.sync = lambda x: None
        elif backend == "torch":
            import torch

            dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self.to = lambda x: torch.from_numpy(np.ascontiguousarray(x)).to(dev)
            self.back = lambda x: x.detach().cpu().numpy()
            self.sync = (lambda x: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda x: None)
        elif backend == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
            import jax.numpy as jnp

            self.to, self.back = jnp.asarray, np.asarray
            self.sync = lambda x: x.block_until_ready()
        elif backend == "cupy":
            import cupy

            self.to, self.back = cupy.asarray, cupy.asnumpy
            self.sync = lambda x: cupy.cuda.get_current_stream().synchronize()
        else:
            raise ValueError(f"unknown backend {backend!r}")


def _interleaved(
    lowrank: Callable[[], Any], dense: Callable[[], Any], sync: Callable[[Any], None], repeats: int
) -> tuple[dict[str, float], Any]:
    """Time both steps in alternation (after one warm-up each); returns :class:`Row`'s timing fields and the result."""

    def timed(function: Callable[[], Any], wait: Callable[[Any], None]) -> tuple[float, Any]:
        start = time.perf_counter()
        value = function()
        wait(value)
        return (time.perf_counter() - start) * 1e3, value

    _, result = timed(lowrank, sync)  # warm-ups: JIT compilation, BLAS thread start
    timed(dense, lambda x: None)
    fast, slow = [], []
    for _ in range(max(repeats, 1)):
        t, result = timed(lowrank, sync)
        fast.append(t)
        slow.append(timed(dense, lambda x: None)[0])
    timing = {
        "lowrank_ms": statistics.median(fast),
        "dense_ms": statistics.median(slow),
        "speedup": statistics.median(d / f for d, f in zip(slow, fast, strict=True)),
        "lowrank_spread": max(fast) / min(fast),
        "dense_spread": max(slow) / min(slow),
    }
    return timing, result


def _update(n: int, p: int, k: int, dtype: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    def draw(rows: int) -> np.ndarray:
        x = rng.standard_normal((rows, k))
        if dtype.startswith("complex"):
            x = x + 1j * rng.standard_normal((rows, k))
        return x

    A, B = draw(n), draw(p)
    A /= np.linalg.norm(A @ B.conj().T, 2)
    return A.astype(dtype), B.astype(dtype)


def _dense(step: str, U: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    if step == "project":
        return scipy.linalg.polar(U + A @ B.conj().T)[0]
    X = A @ (U @ B).conj().T
    S = (X - X.conj().T) / 2
    if np.iscomplexobj(U):
        return scipy.linalg.expm(S) @ U
    # SciPy's complex-typed expm is the more accurate one for a skew matrix.
    return (scipy.linalg.expm(S.astype(np.complex128)) @ U).real


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def run(
    sizes: Sequence[int] = DEFAULT_SIZES,
    ranks: Sequence[int] = DEFAULT_RANKS,
    dtypes: Sequence[str] = DEFAULT_DTYPES,
    backend: str = "numpy",
    repeats: int = 3,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    tall: Sequence[tuple[int, int]] = (),
) -> list[Row]:
    """Measure every (step, shape, k, dtype) of the grid; returns the rows.

    ``sizes`` are square N×N shapes, ``tall`` n×p shapes with p < n.
    """
    converter = Converter(backend)
    rng = np.random.default_rng(seed)
    rows = []
    shapes = [(n, n) for n in sizes] + [tuple(shape) for shape in tall]
    for n, p in shapes:
        for dtype in dtypes:
            U = random_unitary(
                n, p, dtype="complex128" if dtype.startswith("complex") else "float64", seed=seed + n + p
            )
            U = U.astype(dtype)
            for k in ranks:
                if k > p:
                    continue
                A, B = _update(n, p, k, dtype, rng)
                Ux, Ax, Bx = converter.to(U), converter.to(A), converter.to(B)
                reference_inputs = _wide(U), _wide(A), _wide(B)
                for step, function in (("project", project), ("transport", transport)):
                    # the dense step in the input's own precision, as a user would run it, timed the same way
                    timing, result = _interleaved(
                        functools.partial(function, Ux, Ax, Bx),
                        functools.partial(_dense, step, U, A, B),
                        converter.sync,
                        repeats,
                    )
                    result = converter.back(result)
                    reference = _dense(step, *reference_inputs)
                    wide = _wide(result)
                    error = float(np.linalg.norm(wide - reference) / np.linalg.norm(reference))
                    unitarity = float(np.max(np.abs(wide.conj().T @ wide - np.eye(p))))
                    rows.append(Row(step, n, p, k, dtype, error, unitarity, tolerance=TOLERANCE[dtype], **timing))
                    if progress:
                        progress(f"{step} {n}×{p} k={k} {dtype}")
    return rows


def render(rows: list[Row], backend: str) -> Any:
    from rich.table import Table

    table = Table(
        title=f"unitary_lowrank verify — backend {backend}, errors relative to dense SciPy (float64)",
        caption="times: median of the repeats, low-rank and dense interleaved; speed-up: median of the per-pair "
        "ratios; spread: slowest over fastest repeat (low-rank / dense)",
    )
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("step", "left"),
        ("n×p", "right"),
        ("k", "right"),
        ("dtype", "left"),
        ("error", "right"),
        ("unitarity", "right"),
        ("low-rank ms", "right"),
        ("dense ms", "right"),
        ("speed-up", "right"),
        ("spread", "right"),
        ("tolerance", "right"),
        ("", "left"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for r in rows:
        table.add_row(
            r.step,
            f"{r.n}×{r.p}",
            str(r.k),
            r.dtype,
            f"{r.error:.1e}",
            f"{r.unitarity:.1e}",
            f"{r.lowrank_ms:.3g}",
            f"{r.dense_ms:.3g}",
            f"{r.speedup:.2g}×",
            f"{r.lowrank_spread:.2g} / {r.dense_spread:.2g}",
            f"{r.tolerance:.0e}",
            ("[green]ok[/green]" if r.ok else "[bold red]FAIL[/bold red]")
            + (" [yellow]noisy timing[/yellow]" if r.noisy else ""),
        )
    return table


def main(args: Any) -> int:
    from ._console import console as make_console
    from ._console import progress_bar

    console = make_console()
    if args.tall is None:  # --sizes alone narrows the grid to those sizes: tall shapes only when asked for
        args.tall = [] if args.sizes is not None else list(DEFAULT_TALL)
    if args.sizes is None:
        args.sizes = list(DEFAULT_SIZES)
    sizes, ranks, dtypes, tall = tuple(args.sizes), tuple(args.ranks), tuple(args.dtypes), tuple(args.tall)
    shapes = [(n, n) for n in sizes] + list(tall)
    total = 2 * len(dtypes) * sum(1 for _, p in shapes for k in ranks if k <= p)
    with progress_bar("verify", console) as bar:
        task = bar.add_task("", total=total)

        def advance(description: str) -> None:
            bar.update(task, advance=1, description=description)

        rows = run(
            sizes,
            ranks,
            dtypes,
            backend=args.backend,
            repeats=args.repeats,
            seed=args.seed,
            progress=advance,
            tall=tall,
        )
    console.print(render(rows, args.backend))
    failed = [r for r in rows if not r.ok]
    noisy = [r for r in rows if r.noisy]
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([asdict(r) | {"ok": r.ok, "noisy": r.noisy} for r in rows], handle, indent=1)
    if noisy:
        console.print(
            f"[yellow]{len(noisy)} of {len(rows)} rows have timing repeats more than {NOISY_SPREAD:g}× apart (marked "
            "'noisy timing'): the machine was busy; their times and speed-ups are unreliable (errors are not "
            "affected). Rerun on a quiet machine, or with more --repeats.[/yellow]"
        )
    if failed:
        console.print(f"[bold red]{len(failed)} of {len(rows)} cases exceed their tolerance[/bold red]")
        return 1
    console.print(f"[green]all {len(rows)} cases within tolerance[/green]")
    return 0


def parse_shape(text: str) -> tuple[int, int]:
    try:
        n, p = (int(part) for part in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape NxP such as 1024x64; got {text!r}") from None
    if not 1 <= p <= n:
        raise argparse.ArgumentTypeError(f"a tall shape needs 1 ≤ p ≤ n; got {text!r}")
    return n, p


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``verify`` and its options on the subcommand parsers ``commands``."""
    verify = commands.add_parser(
        "verify",
        help="compare project/transport with dense SciPy references over a grid; exit 1 on any failure",
        description="Run project and transport over a grid of N, k and dtypes, compare with "
        "scipy.linalg.polar and scipy.linalg.expm, print a table; exit status 1 if any error "
        "exceeds its tolerance (1e-12 double, 1e-5 single precision).",
    )
    verify.add_argument(
        "--backend",
        default="numpy",
        choices=["numpy", "array_api_strict", "torch", "jax", "cupy"],
        help="array library to run the low-rank steps on (default: numpy)",
    )
    verify.add_argument(
        "--sizes",
        type=at_least(1),
        nargs="*",
        default=None,
        metavar="N",
        help=f"square matrix sizes (default: {' '.join(map(str, DEFAULT_SIZES))})",
    )
    verify.add_argument(
        "--tall",
        type=parse_shape,
        nargs="*",
        default=None,
        metavar="NxP",
        help="tall shapes n×p with orthonormal columns, e.g. 1024x64 (default: "
        f"{' '.join(f'{n}x{p}' for n, p in DEFAULT_TALL)}, or none when --sizes is given; give none to skip)",
    )
    verify.add_argument(
        "--ranks",
        type=at_least(1),
        nargs="+",
        default=list(DEFAULT_RANKS),
        metavar="K",
        help=f"update ranks (default: {' '.join(map(str, DEFAULT_RANKS))})",
    )
    verify.add_argument(
        "--dtypes",
        nargs="+",
        default=list(DEFAULT_DTYPES),
        choices=list(DEFAULT_DTYPES),
        metavar="DTYPE",
        help="dtypes (default: all four)",
    )
    verify.add_argument(
        "--repeats",
        type=at_least(1),
        default=3,
        help="timed repeats of each step, low-rank and dense interleaved (default: 3)",
    )
    verify.add_argument("--seed", type=at_least(0), default=0, help="seed of the random test matrices (default: 0)")
    verify.add_argument("--json", metavar="PATH", help="also write the rows as JSON (default: no file)")
    verify.set_defaults(parser=verify)
    return verify


def command(args: Any) -> int:
    """Run ``unitary-lowrank verify``; 2 if the backend is not installed."""
    from ..backends import available_backends

    if args.backend not in available_backends():
        print(
            f"unitary-lowrank verify: backend {args.backend!r} is not installed "
            f"(installed: {', '.join(available_backends())})",
            file=sys.stderr,
        )
        return 2
    return main(args)
