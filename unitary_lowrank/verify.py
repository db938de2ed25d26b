"""``unitary-lowrank verify``: the low-rank steps against dense SciPy references, as a table.

For every N, k and dtype of the grid it draws a Haar ``U`` and a rank-k update
``A Bᴴ`` with ‖A Bᴴ‖₂ = 1, runs :func:`project` and :func:`transport` on the
chosen backend, and compares with ``scipy.linalg.polar(U + A Bᴴ)`` and
``U @ scipy.linalg.expm(skew(Uᴴ A Bᴴ))`` computed in double precision.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.linalg

from .haar import random_unitary
from .project import project
from .transport import transport

DEFAULT_SIZES = (64, 256, 1024)
DEFAULT_RANKS = (1, 4, 16)
DEFAULT_DTYPES = ("float32", "float64", "complex64", "complex128")
TOLERANCE = {"float32": 1e-5, "complex64": 1e-5, "float64": 1e-12, "complex128": 1e-12}


@dataclass
class Row:
    step: str
    n: int
    k: int
    dtype: str
    error: float
    unitarity: float
    lowrank_ms: float
    dense_ms: float
    tolerance: float

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.lowrank_ms

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance and self.unitarity <= self.tolerance


class Converter:
    """Moves NumPy arrays to a backend and back, and waits for its results."""

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


def _median_ms(function: Callable[[], Any], sync: Callable[[Any], None], repeats: int) -> tuple[float, Any]:
    result = function()  # warm-up (JIT compilation, BLAS thread start)
    sync(result)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        sync(result)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), result


def _update(n: int, k: int, dtype: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    def draw() -> np.ndarray:
        x = rng.standard_normal((n, k))
        if dtype.startswith("complex"):
            x = x + 1j * rng.standard_normal((n, k))
        return x

    A, B = draw(), draw()
    A /= np.linalg.norm(A @ B.conj().T, 2)
    return A.astype(dtype), B.astype(dtype)


def _dense(step: str, U: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    if step == "project":
        return scipy.linalg.polar(U + A @ B.conj().T)[0]
    X = U.conj().T @ A @ B.conj().T
    S = (X - X.conj().T) / 2
    if np.iscomplexobj(U):
        return U @ scipy.linalg.expm(S)
    # SciPy's complex-typed expm is the more accurate one for a skew matrix.
    return (U @ scipy.linalg.expm(S.astype(np.complex128))).real


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
) -> list[Row]:
    """Measure every (step, N, k, dtype) of the grid; returns the rows."""
    converter = Converter(backend)
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for dtype in dtypes:
            U = random_unitary(n, dtype="complex128" if dtype.startswith("complex") else "float64", seed=seed + n)
            U = U.astype(dtype)
            for k in ranks:
                if k > n:
                    continue
                A, B = _update(n, k, dtype, rng)
                Ux, Ax, Bx = converter.to(U), converter.to(A), converter.to(B)
                for step, function in (("project", project), ("transport", transport)):
                    lowrank_ms, result = _median_ms(
                        lambda f=function, U=Ux, A=Ax, B=Bx: f(U, A, B), converter.sync, repeats
                    )
                    result = converter.back(result)
                    start = time.perf_counter()
                    _dense(step, U, A, B)  # timed in the input's own precision, as a user would run it
                    dense_ms = (time.perf_counter() - start) * 1e3
                    reference = _dense(step, _wide(U), _wide(A), _wide(B))
                    wide = _wide(result)
                    error = float(np.linalg.norm(wide - reference) / np.linalg.norm(reference))
                    unitarity = float(np.max(np.abs(wide.conj().T @ wide - np.eye(n))))
                    rows.append(Row(step, n, k, dtype, error, unitarity, lowrank_ms, dense_ms, TOLERANCE[dtype]))
                    if progress:
                        progress(f"{step} N={n} k={k} {dtype}")
    return rows


def render(rows: list[Row], backend: str) -> Any:
    from rich.table import Table

    table = Table(title=f"unitary_lowrank verify — backend {backend}, errors relative to dense SciPy (float64)")
    for column, justify in (
        ("step", "left"),
        ("N", "right"),
        ("k", "right"),
        ("dtype", "left"),
        ("error", "right"),
        ("unitarity", "right"),
        ("low-rank ms", "right"),
        ("dense ms", "right"),
        ("speed-up", "right"),
        ("tolerance", "right"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify)
    for r in rows:
        table.add_row(
            r.step,
            str(r.n),
            str(r.k),
            r.dtype,
            f"{r.error:.1e}",
            f"{r.unitarity:.1e}",
            f"{r.lowrank_ms:.3f}",
            f"{r.dense_ms:.1f}",
            f"{r.speedup:.0f}×",
            f"{r.tolerance:.0e}",
            "[green]ok[/green]" if r.ok else "[bold red]FAIL[/bold red]",
        )
    return table


def main(args: Any) -> int:
    from ._console import console as make_console
    from ._console import progress_bar

    console = make_console()
    sizes, ranks, dtypes = tuple(args.sizes), tuple(args.ranks), tuple(args.dtypes)
    total = 2 * len(dtypes) * sum(1 for n in sizes for k in ranks if k <= n)
    with progress_bar("verify", console) as bar:
        task = bar.add_task("", total=total)

        def advance(description: str) -> None:
            bar.update(task, advance=1, description=description)

        rows = run(sizes, ranks, dtypes, backend=args.backend, repeats=args.repeats, seed=args.seed, progress=advance)
    console.print(render(rows, args.backend))
    failed = [r for r in rows if not r.ok]
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([asdict(r) | {"ok": r.ok} for r in rows], handle, indent=1)
    if failed:
        console.print(f"[bold red]{len(failed)} of {len(rows)} cases exceed their tolerance[/bold red]")
        return 1
    console.print(f"[green]all {len(rows)} cases within tolerance[/green]")
    return 0
