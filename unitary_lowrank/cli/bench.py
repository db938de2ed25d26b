"""``unitary-lowrank bench``: step times against the memory floor and the dense O(N³) baselines.

Every case is timed in the same run as its baselines, and reported as ratios:

* ``floor``: one product ``U @ X`` with ``X`` of shape N×2k (same dtype and
  backend) — the least a step can cost, since it must read ``U``;
* ``sketch-floor``: one ``G @ X`` with ``X`` of shape N×(k + p), the unit of
  the sketch's passes;
* ``polar`` and ``expm``: the dense references a low-rank step replaces.

The pytest-benchmark suite in ``benchmarks/`` builds its cases from here too.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..haar import random_unitary
from ..project import project
from ..sketch import sketch
from ..transport import transport

STEPS = ("project", "transport")
TRAINING = ("train-adam", "train-projunn", "train-orthogonal")
OVERSAMPLE = 10


@dataclass(frozen=True)
class Case:
    """One measurement: an operation on a backend at one size, rank and dtype."""

    op: str  # project | transport | sketch | floor | sketch-floor | polar | expm | torch-orthogonal | train-*
    backend: str  # numpy | torch | cupy
    n: int
    k: int
    dtype: str
    batch: int = 0  # > 0: a batch of that many n×n matrices
    p: int = 0  # > 0: a tall n×p U with orthonormal columns (the floor then reads U once: U @ X, X p×2k)
    layout: str = "C"  # memory order of U: "C" row-major, "F" column-major (LAPACK output, a .T view)

    @property
    def shape(self) -> str:
        if self.p:
            shape = f"{self.n}×{self.p}"
        else:
            shape = f"({self.batch}, {self.n}, {self.n})" if self.batch else f"N={self.n}"
        return shape if self.layout == "C" else f"{shape} column-major"

    @property
    def label(self) -> str:
        return f"{self.op} {self.backend} {self.dtype} {self.shape} k={self.k}"


@dataclass
class Result:
    case: Case
    median_s: float
    rounds: int
    extra: dict[str, Any] = field(default_factory=dict)


class _Library:
    """Array creation and synchronization for one backend."""

    def __init__(self, name: str):
        self.name = name
        if name == "numpy":
            self.asarray, self.sync = (lambda x: x), (lambda: None)
            self.column_major = lambda x: np.swapaxes(np.swapaxes(x, -1, -2).copy(), -1, -2)
        elif name == "torch":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
            self.asarray = lambda x: torch.from_numpy(np.ascontiguousarray(x)).to(device)
            self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            self.column_major = lambda x: x.mT.contiguous().mT
        elif name == "cupy":
            import cupy

            self.asarray = cupy.asarray
            self.sync = lambda: cupy.cuda.get_current_stream().synchronize()
            self.column_major = lambda x: cupy.swapaxes(cupy.swapaxes(x, -1, -2).copy(), -1, -2)
        else:
            raise ValueError(f"unknown backend {name!r}")


def _operands(case: Case) -> dict[str, np.ndarray]:
    return _cached_operands(case.n, case.k, case.dtype, case.batch, case.p or case.n)


@functools.lru_cache(maxsize=4)
def _haar(n: int, complex_: bool, batch: int, p: int) -> np.ndarray:
    return random_unitary(
        n, p, dtype="complex128" if complex_ else "float64", batch_shape=(batch,) if batch else (), seed=n
    )


@functools.lru_cache(maxsize=2)
def _cached_operands(n: int, k: int, dtype: str, batch_size: int, p: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n * 1000 + k)
    complex_ = dtype.startswith("complex")
    batch = (batch_size,) if batch_size else ()
    U = _haar(n, complex_, batch_size, p)

    def gaussian(*shape: int) -> np.ndarray:
        x = rng.standard_normal(batch + shape)
        if complex_:
            x = x + 1j * rng.standard_normal(batch + shape)
        return x / np.sqrt(n)

    operands = {
        "U": U,
        "A": gaussian(n, k),
        "B": gaussian(p, k),
        "X": gaussian(p, 2 * k),
        "G": gaussian(n, p),
        "Omega": gaussian(n, k + OVERSAMPLE),
    }
    return {name: value.astype(dtype) for name, value in operands.items()}


def build(case: Case) -> tuple[Callable[[], Any], Callable[[], None]]:
    """The function that performs ``case`` once, and the synchronization to call after it."""
    library = _Library(case.backend)
    # fresh copies: in-place steps must not change the cached operands
    arrays = {name: library.asarray(np.array(value)) for name, value in _operands(case).items()}
    U, A, B, X, G, Omega = (arrays[n] for n in ("U", "A", "B", "X", "G", "Omega"))
    if case.layout == "F":
        U = library.column_major(U)
    if case.op == "project":
        return (lambda: project(U, A, B, out=U, check_finite=False)), library.sync
    if case.op == "transport":
        return (lambda: transport(U, A, B, out=U, check_finite=False)), library.sync
    if case.op == "sketch":
        return (lambda: sketch(G, case.k, seed=0)), library.sync
    if case.op == "floor":
        return (lambda: U @ X), library.sync
    if case.op == "sketch-floor":
        return (lambda: G @ Omega), library.sync
    if case.op in ("polar", "expm"):
        return _dense(case, U, A, B), library.sync
    if case.op == "torch-orthogonal":
        return _torch_parametrization(U), library.sync
    if case.op in TRAINING:
        return training_step(case.op, U, case.k), library.sync
    raise ValueError(f"unknown op {case.op!r}")


def _torch_parametrization(U: Any) -> Callable[[], Any]:
    """Forward and backward of ``torch.nn.utils.parametrizations.orthogonal`` on a weight of U's shape.

    What a user of the torch parametrization pays per training step for the
    constraint alone (the weight is recomputed from its parameter, and the
    gradient flows back through that map).
    """
    import torch

    if not isinstance(U, torch.Tensor):
        raise ValueError("torch-orthogonal runs on the torch backend")
    n, p = U.shape[-2:]
    layer = torch.nn.Linear(p, n, bias=False, dtype=U.dtype, device=U.device)
    with torch.no_grad():
        layer.weight.copy_(U)
    torch.nn.utils.parametrizations.orthogonal(layer)

    def forward_backward():
        layer.zero_grad(set_to_none=True)
        layer.weight.sum().backward()
        return layer.parametrizations.weight.original.grad

    return forward_backward


def training_step(op: str, U: Any, k: int) -> Callable[[], None]:
    """One training step (forward, backward, optimizer) of an N×N ``nn.Linear`` on a batch of 64, float32.

    ``train-adam``: unconstrained ``torch.optim.Adam``; ``train-projunn``:
    ``ProjUNN(Adam, rank=k)``; ``train-orthogonal``: Adam on
    ``torch.nn.utils.parametrizations.orthogonal`` — what users would pick otherwise.
    """
    import torch

    from ..backends.torch.optim import ProjUNN

    if not isinstance(U, torch.Tensor):
        raise ValueError("training steps run on the torch backend")
    n = U.shape[-1]
    generator = torch.Generator().manual_seed(n)
    x, y = (torch.randn(64, n, generator=generator).to(U.device, U.dtype) for _ in range(2))
    layer = torch.nn.Linear(n, n, bias=False, dtype=U.dtype, device=U.device)
    with torch.no_grad():
        layer.weight.copy_(U)
    if op == "train-orthogonal":
        torch.nn.utils.parametrizations.orthogonal(layer)
    optimizer: torch.optim.Optimizer
    if op == "train-projunn":
        optimizer = ProjUNN(torch.optim.Adam([{"params": [layer.weight], "unitary": True}], lr=1e-3), rank=k)
    else:
        optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        (layer(x) - y).pow(2).mean().backward()
        optimizer.step()

    return step


def _dense(case: Case, U: Any, A: Any, B: Any) -> Callable[[], Any]:
    if case.backend == "torch":
        import torch

        def torch_polar():
            W, _, Vh = torch.linalg.svd(U + A @ B.mH)
            return W @ Vh

        def torch_expm():
            X = U.mH @ A @ B.mH
            return U @ torch.linalg.matrix_exp((X - X.mH) / 2)

        return torch_polar if case.op == "polar" else torch_expm
    import scipy.linalg

    if case.backend != "numpy":
        raise ValueError("dense baselines run on numpy and torch")
    if case.op == "polar":
        return lambda: scipy.linalg.polar(U + A @ B.conj().T)[0]

    def scipy_expm():
        X = U.conj().T @ A @ B.conj().T
        return U @ scipy.linalg.expm((X - X.conj().T) / 2)

    return scipy_expm


def time_case(case: Case, *, min_time: float = 0.3, max_rounds: int = 30, min_rounds: int = 3) -> Result:
    """Median wall time of ``case`` after one warm-up call."""
    function, sync = build(case)
    function()
    sync()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_rounds and (len(times) < min_rounds or time.perf_counter() - started < min_time):
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
        if case.op in ("polar", "expm", "torch-orthogonal", "train-orthogonal") and times[-1] > 2.0:
            break  # one slow dense run is enough to know it is slow
    return Result(case, statistics.median(times), len(times))


def extra_memory_elements(case: Case) -> float:
    """Peak extra memory (array elements) of one in-place NumPy step, measured with tracemalloc."""
    if case.backend != "numpy" or case.op not in STEPS:
        raise ValueError("memory is measured for NumPy steps")
    function, _ = build(case)
    function()
    tracemalloc.start()
    tracemalloc.reset_peak()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / np.dtype(case.dtype).itemsize


def machine() -> dict[str, Any]:
    import os

    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def grid(
    sizes: Sequence[int],
    ranks: Sequence[int],
    dtypes: Sequence[str],
    backends: Sequence[str],
    dense_max: int,
    tall: Sequence[tuple[int, int]] = (),
    layouts: Sequence[str] = ("C",),
    train: Sequence[int] = (),
) -> list[Case]:
    """All cases of a run: steps, sketch, floors, dense baselines, the batched case and tall (Stiefel) shapes.

    Dense baselines (O(N³), slow) run for N ≤ ``dense_max``, and in float64 at the largest N.
    Tall n×p shapes run at k = 4 in float32 against one read of U (floor) and,
    on torch, against ``torch.nn.utils.parametrizations.orthogonal`` (forward + backward).
    """
    cases = []
    if "torch" in backends:  # whole training steps: N×N Linear, batch 64, float32, rank 4
        cases += [Case(op, "torch", n, 4, "float32") for n in train for op in TRAINING]
    for backend in backends:
        for n, p in tall:
            ops = ("floor", *STEPS) + (("torch-orthogonal",) if backend == "torch" else ())
            cases += [Case(op, backend, n, 4, "float32", p=p) for op in ops]
    for backend in backends:
        for dtype in dtypes:
            for n in sizes:
                for k in ranks:
                    steps = STEPS if "C" in layouts else ()
                    cases += [Case(op, backend, n, k, dtype) for op in ("floor", *steps, "sketch-floor", "sketch")]
                    if "F" in layouts:  # the same steps on a column-major U (the floor stays row-major)
                        cases += [Case(op, backend, n, k, dtype, layout="F") for op in STEPS]
                if n <= dense_max or (dtype == "float64" and n == max(sizes)):  # the largest N: float64 only
                    k = 4 if 4 in ranks else ranks[0]
                    cases += [Case("polar", backend, n, k, dtype), Case("expm", backend, n, k, dtype)]
            cases += [Case(op, backend, 64, 1, dtype, batch=512) for op in ("floor", *STEPS)]
    return cases


def ratios(results: list[Result]) -> list[dict[str, Any]]:
    """One row per step: its median, its floor, and the ratios step/floor and dense/step."""
    by_case = {r.case: r for r in results}
    rows = []
    for r in results:
        c = r.case
        if c.op not in (*STEPS, "sketch", "train-projunn"):
            continue
        # the baseline of a training step is the same step with plain Adam
        floor_op = {"sketch": "sketch-floor", "train-projunn": "train-adam"}.get(c.op, "floor")
        floor = by_case.get(Case(floor_op, c.backend, c.n, c.k, c.dtype, c.batch, c.p))
        row_major = by_case.get(Case(c.op, c.backend, c.n, c.k, c.dtype, c.batch, c.p)) if c.layout == "F" else None
        reference = "train-orthogonal" if c.op == "train-projunn" else "torch-orthogonal"
        parametrization = by_case.get(Case(reference, c.backend, c.n, c.k, c.dtype, c.batch, c.p))
        row = {
            "op": c.op,
            "backend": c.backend,
            "n": c.n,
            "p": c.p or c.n,
            "layout": c.layout,
            "k": c.k,
            "dtype": c.dtype,
            "batch": c.batch,
            "median_ms": r.median_s * 1e3,
            "floor_ms": floor.median_s * 1e3 if floor else None,
            "ratio_to_floor": r.median_s / floor.median_s if floor else None,
            "over_row_major": r.median_s / row_major.median_s if row_major else None,
            "torch_orthogonal_ms": parametrization.median_s * 1e3 if parametrization else None,
            "torch_orthogonal_over_step": parametrization.median_s / r.median_s if parametrization else None,
        }
        for dense in ("polar", "expm"):
            d = next(
                (
                    x
                    for x in results
                    if x.case.op == dense
                    and x.case.backend == c.backend
                    and x.case.n == c.n
                    and x.case.dtype == c.dtype
                    and not c.batch
                    and not c.p
                ),
                None,
            )
            row[f"{dense}_ms"] = d.median_s * 1e3 if d else None
            row[f"{dense}_over_step"] = d.median_s / r.median_s if d and c.op in STEPS else None
        rows.append(row)
    return rows


def plot(results: list[Result], path: str, backend: str = "numpy", dtype: str = "float64", k: int = 4) -> None:
    """Log-log time against N: steps, floor, dense polar and expm, with N² and N³ guides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    styles = {"project": "o-", "transport": "s-", "floor": "k--", "polar": "^-", "expm": "v-"}
    for op, style in styles.items():
        points = sorted(
            (r.case.n, r.median_s)
            for r in results
            if r.case.op == op
            and r.case.backend == backend
            and r.case.dtype == dtype
            and not r.case.batch
            and not r.case.p
            and (op in ("polar", "expm") or r.case.k == k)
        )
        if points:
            sizes_, times = zip(*points, strict=True)
            ax.loglog(sizes_, np.array(times) * 1e3, style, label=op if op not in STEPS else f"{op} (k={k}, in place)")
    sizes = sorted({r.case.n for r in results if not r.case.batch and not r.case.p})
    if sizes:
        n = np.array(sizes, dtype=float)
        anchor = next(
            (
                r.median_s * 1e3
                for r in results
                if r.case.op == "floor"
                and r.case.n == sizes[0]
                and r.case.dtype == dtype
                and r.case.backend == backend
                and r.case.k == k
            ),
            1.0,
        )
        ax.loglog(n, anchor * (n / n[0]) ** 2, ":", color="grey", label="∝ N²")
        ax.loglog(n, anchor * (n / n[0]) ** 3, "-.", color="grey", label="∝ N³")
    ax.set_xlabel("N")
    ax.set_ylabel("median time (ms)")
    ax.set_title(f"unitary_lowrank — {backend}, {dtype}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="unitary_lowrank bench — medians; ratios from the same run")
    for name in (
        "op",
        "backend",
        "dtype",
        "shape",
        "k",
        "median ms",
        "floor ms",
        "step/floor",
        "polar/step",
        "expm/step",
        "torch param./step",
        "F/C",
    ):
        table.add_column(name, justify="left" if name in ("op", "backend", "dtype", "shape") else "right")

    def fmt(x: float | None, spec: str) -> str:
        return "—" if x is None else format(x, spec)

    for r in rows:
        if r["batch"]:
            shape = f"({r['batch']}, {r['n']}, {r['n']})"
        else:
            shape = str(r["n"]) if r["p"] == r["n"] else f"{r['n']}×{r['p']}"
        if r["layout"] == "F":
            shape += " (column-major)"
        table.add_row(
            r["op"],
            r["backend"],
            r["dtype"],
            shape,
            str(r["k"]),
            fmt(r["median_ms"], ".2f"),
            fmt(r["floor_ms"], ".2f"),
            fmt(r["ratio_to_floor"], ".2f"),
            fmt(r["polar_over_step"], ".0f"),
            fmt(r["expm_over_step"], ".0f"),
            fmt(r["torch_orthogonal_over_step"], ".2g"),
            fmt(r["over_row_major"], ".2f"),
        )
    return table


def main(args: Any) -> int:
    from ._console import console as make_console
    from ._console import progress_bar

    console = make_console()
    layouts = ("C", "F") if args.layout == "both" else (args.layout,)
    cases = grid(
        args.sizes,
        args.ranks,
        args.dtypes,
        args.backends,
        args.dense_max,
        tall=args.tall,
        layouts=layouts,
        train=args.train,
    )
    results = []
    with progress_bar("bench", console) as bar:
        task = bar.add_task("", total=len(cases))
        for case in cases:
            bar.update(task, description=case.label)
            results.append(time_case(case, min_time=args.min_time))
            bar.advance(task)
    rows = ratios(results)
    memory = []
    if "numpy" in args.backends:
        for dtype in args.dtypes:
            for k in args.ranks:
                n = max(args.sizes)
                for op in STEPS:
                    elements = extra_memory_elements(Case(op, "numpy", n, k, dtype))
                    memory.append(
                        {
                            "op": op,
                            "n": n,
                            "k": k,
                            "dtype": dtype,
                            "extra_elements": elements,
                            "extra_over_Nk": elements / (n * k),
                        }
                    )
    console.print(render(rows))
    if memory:
        console.print(
            "extra memory of the in-place NumPy step (tracemalloc peak), in units of N·k elements: "
            + ", ".join(f"{m['op']} {m['dtype']} k={m['k']}: {m['extra_over_Nk']:.2f}" for m in memory)
        )
    info = machine()
    console.print("machine: " + ", ".join(f"{key} {value}" for key, value in info.items()))
    with open(args.json, "w") as handle:
        json.dump(
            {
                "machine": info,
                "rows": rows,
                "memory": memory,
                "raw": [asdict(r.case) | {"median_s": r.median_s, "rounds": r.rounds} for r in results],
            },
            handle,
            indent=1,
        )
    plot(
        results,
        args.plot,
        backend=args.backends[0],
        dtype="float64" if "float64" in args.dtypes else args.dtypes[0],
        k=4 if 4 in args.ranks else args.ranks[0],
    )
    console.print(f"wrote {args.json} and {args.plot}")
    return 0


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``bench`` and its options on the subcommand parsers ``commands``."""
    from ._options import at_least, positive
    from .verify import DEFAULT_DTYPES, parse_shape

    bench = commands.add_parser(
        "bench",
        help="time the steps against the memory floor and dense SVD/expm; table, PNG and JSON",
        description="Time project, transport (in place) and sketch over a grid, in the same run as the floor "
        "(one U @ X with X of shape N×2k) and the dense baselines (scipy.linalg.polar / expm, "
        "torch.linalg.svd / matrix_exp). Prints medians and ratios, writes a log-log plot and the raw numbers.",
    )
    bench.add_argument(
        "--backends",
        nargs="+",
        default=None,
        choices=["numpy", "torch", "cupy"],
        help="default: numpy, and torch if installed",
    )
    bench.add_argument(
        "--sizes",
        type=at_least(1),
        nargs="+",
        default=[256, 1024, 2048, 4096],
        metavar="N",
        help="square sizes N of U (default: 256 1024 2048 4096)",
    )
    bench.add_argument(
        "--ranks", type=at_least(1), nargs="+", default=[1, 4, 16], metavar="K", help="update ranks k (default: 1 4 16)"
    )
    bench.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "float64", "complex64"],
        choices=list(DEFAULT_DTYPES),
        metavar="DTYPE",
        help=f"dtypes, of {', '.join(DEFAULT_DTYPES)} (default: float32 float64 complex64)",
    )
    bench.add_argument(
        "--dense-max",
        type=at_least(0),
        default=2048,
        metavar="N",
        help="largest N for the dense baselines (float64 also at the largest N); default 2048",
    )
    bench.add_argument(
        "--tall",
        type=parse_shape,
        nargs="*",
        default=[(4096, 256)],
        metavar="NxP",
        help="tall (Stiefel) shapes, stepped at k = 4 in float32 (default: 4096x256; give none to skip)",
    )
    bench.add_argument(
        "--layout",
        choices=["C", "F", "both"],
        default="both",
        help="memory order of U for the steps: row-major C, column-major F (LAPACK outputs, .T views), or both "
        "(default; the table then gives F/C, the column-major step's time over the row-major one's). "
        "The floor is always one product with a row-major U",
    )
    bench.add_argument(
        "--train",
        type=at_least(1),
        nargs="*",
        default=[512, 1024, 2048],
        metavar="N",
        help="torch: whole training steps of an N×N Linear (batch 64, float32) with ProjUNN(Adam, rank 4), against "
        "plain Adam (the 'floor' column) and Adam on torch's orthogonal parametrization (default: 512 1024 2048; "
        "give none to skip)",
    )
    bench.add_argument(
        "--min-time", type=positive, default=0.3, help="seconds of repeats per case, median taken (default: 0.3)"
    )
    bench.add_argument("--json", default="bench.json", help="raw numbers (default: bench.json)")
    bench.add_argument("--plot", default="bench.png", help="log-log plot of time against N (default: bench.png)")
    bench.set_defaults(parser=bench)
    return bench


def command(args: Any) -> int:
    """Run ``unitary-lowrank bench``; 2 if a requested backend is not installed."""
    from ..backends import available_backends

    installed = available_backends()
    if args.backends is None:
        args.backends = [b for b in ("numpy", "torch") if b in installed]
    missing = [b for b in args.backends if b not in installed]
    if missing:
        print(f"unitary-lowrank bench: not installed: {', '.join(missing)}", file=sys.stderr)
        return 2
    return main(args)
