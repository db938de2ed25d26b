"""One prepared check for a CUDA machine: accuracy, speed against the floor and the dense baselines, host syncs.

Run on a machine with a CUDA GPU (about 3 minutes on an H100/H200-class card)::

    python benchmarks/gpu_check.py [--out gpu_check.md]

It prints one table (and writes it to ``--out`` when given) and exits non-zero if an accuracy
check fails, a target is missed or a ProjUNN step synchronizes with the host. Each section runs
on its own: an error in one becomes a row of the table, the others still run. What it does:

1. ``verify`` on torch CUDA tensors and, if CuPy is installed, on CuPy arrays (a small grid).
2. The in-place step (``transport``, ``project``) at N = 8192, k ∈ {1, 4, 16}, float32, against one
   ``U @ X`` (X of shape N×2k, the memory floor); the same with a new output, and on a
   column-major ``U``; ``sketch`` against one ``G @ Ω``; the dense O(N³) steps
   ``torch.linalg.matrix_exp`` and an SVD polar factor (timed once).
3. Small and batched: N = 128, k = 1 (launch-bound), and a batch of 512 matrices of 64×64.
4. CuPy and JAX (jitted, new output) at N = 8192, if installed.
5. A training step of an N×N ``nn.Linear`` (batch 64): ``ProjUNN(Adam, rank=4)`` against plain
   Adam and against ``torch.nn.utils.parametrizations.orthogonal``.
6. One ``ProjUNN(Adam)`` step under ``torch.cuda.set_sync_debug_mode("warn")``: every host
   synchronization inside the step is listed with the line of this library that caused it.
7. The device-resident step (``ul.device_resident()``, Jacobi cores): 10 ``ProjUNN(Adam(capturable=True))``
   steps under ``set_sync_debug_mode("error")``; a whole training step (forward, backward,
   ``ProjUNN`` step) captured in a CUDA graph, replayed 100 times and compared with 100 eager steps;
   kernel launches and memory copies of one ``transport`` (k = 1) from the profiler, host and resident
   routes. Off the GPU: the resident step's operator log (no synchronizing operation) only.

``--device cpu --n 512`` runs the same code on the CPU (no sync check, no targets) as a smoke test
of the script itself; nothing in the test suite depends on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX shares the card with torch and CuPy

import torch
from unitary_lowrank.backends.torch import ProjUNN, haar_

import unitary_lowrank as ul

Row = tuple[str, bool, str]


def _median_ms(function: Callable[[], object], sync: Callable[[], None], repeats: int = 20) -> float:
    function()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


class Check:
    """The table's rows, and the device every section runs on."""

    def __init__(self, device: str, n: int):
        self.device, self.n, self.gpu = device, n, device == "cuda"
        self.sync = torch.cuda.synchronize if self.gpu else (lambda: None)
        self.rows: list[Row] = []
        self.dense_baselines = True
        self.generator = torch.Generator(device=device).manual_seed(0)

    def section(self, name: str, body: Callable[[], None]) -> None:
        started = time.perf_counter()
        try:
            body()
        except Exception as err:  # a broken section is a failed row, the others still run
            where = traceback.extract_tb(err.__traceback__)[-1]
            self.rows.append(
                (
                    name,
                    False,
                    f"{type(err).__name__}: {str(err).splitlines()[0][:200]} "
                    f"({os.path.basename(where.filename)}:{where.lineno})",
                )
            )
        print(f"[{name}: {time.perf_counter() - started:.1f} s]", file=sys.stderr, flush=True)

    def randn(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, device=self.device, generator=self.generator) * scale

    def unitary(self, *shape: int) -> torch.Tensor:
        return haar_(torch.empty(*shape, device=self.device), generator=self.generator)

    def target(self, ok: bool) -> bool:
        return ok if self.gpu else True  # targets are for a GPU; the CPU smoke test checks the script

    # 1. accuracy
    def verify(self) -> None:
        from unitary_lowrank.cli import verify

        backends = ["torch"]
        if self.gpu:
            try:
                import cupy  # noqa: F401

                backends.append("cupy")
            except ImportError:
                self.rows.append(("verify cupy", True, "CuPy not installed: skipped"))
        for backend in backends:  # verify's torch converter takes CUDA when there is one
            results = verify.run(
                sizes=(64, 256),
                ranks=(1, 4),
                dtypes=verify.DEFAULT_DTYPES,
                backend=backend,
                repeats=2,
                tall=((256, 32),),
            )
            failed = [r for r in results if not r.ok]
            worst = max(r.error for r in results if r.dtype in ("float64", "complex128"))
            detail = f"{len(results)} cases, {len(failed)} over tolerance, worst double-precision error {worst:.1e}"
            self.rows.append((f"verify {backend}", not failed, detail))

    # 2. speed at large N
    def large(self) -> None:
        n = self.n
        U = self.unitary(n, n)
        for k in (1, 4, 16):
            A, B, X = self.randn(n, k, scale=1 / n), self.randn(n, k, scale=1 / n), self.randn(n, 2 * k)
            floor = _median_ms(lambda X=X: U @ X, self.sync)
            for name, step in (("transport", ul.transport), ("project", ul.project)):
                ms = _median_ms(lambda s=step, A=A, B=B: s(U, A, B, out=U, check_finite=False), self.sync)
                ok = self.target(ms <= 3 * floor and ms <= 0.5) if k == 1 and n == 8192 else True
                self.rows.append(
                    (
                        f"{name} N={n} k={k} in place",
                        ok,
                        f"{ms:.3f} ms = {ms / floor:.2f} × floor ({floor:.3f} ms)"
                        + (" [target ≤ 3 × and ≤ 0.5 ms]" if k == 1 and n == 8192 else ""),
                    )
                )
            if k == 4:
                new = _median_ms(lambda A=A, B=B: ul.transport(U, A, B, check_finite=False), self.sync)
                self.rows.append((f"transport N={n} k=4 new output", True, f"{new:.3f} ms = {new / floor:.2f} × floor"))
                F = U.mT.contiguous().mT  # column-major, as torch.linalg.qr returns it
                row_major = _median_ms(lambda A=A, B=B: ul.transport(U, A, B, out=U, check_finite=False), self.sync)
                for label, out in (("in place", True), ("new output", False)):
                    ms = _median_ms(
                        lambda A=A, B=B, F=F, out=out: ul.transport(
                            F, A, B, out=F if out else None, check_finite=False
                        ),
                        self.sync,
                    )
                    base = row_major if out else new
                    self.rows.append(
                        (
                            f"transport N={n} k=4 column-major {label}",
                            self.target(ms <= 1.3 * base),
                            f"{ms:.3f} ms = {ms / base:.2f} × row-major [target ≤ 1.3 ×]",
                        )
                    )
                G, Omega = self.randn(n, n, scale=1 / n), self.randn(n, k + 10)
                sketch_floor = _median_ms(lambda G=G, Omega=Omega: G @ Omega, self.sync)
                ms = _median_ms(lambda G=G, k=k: ul.sketch(G, k, seed=0), self.sync)
                self.rows.append(
                    (
                        f"sketch N={n} k=4",
                        self.target(ms <= 4 * sketch_floor),
                        f"{ms:.3f} ms = {ms / sketch_floor:.2f} × one G @ Ω ({sketch_floor:.3f} ms) [target ≤ 4 ×]",
                    )
                )
                del G
                if self.dense_baselines:
                    self.dense(U, A, B, row_major)

    def dense(self, U: torch.Tensor, A: torch.Tensor, B: torch.Tensor, step_ms: float) -> None:
        def dense_expm():
            X = U.mT @ A @ B.mT
            return U @ torch.linalg.matrix_exp((X - X.mT) / 2)

        def dense_polar():
            W, _, Vh = torch.linalg.svd(U + A @ B.mT)
            return W @ Vh

        for name, function in (("matrix_exp", dense_expm), ("SVD polar", dense_polar)):
            if name == "matrix_exp":  # warm-up (the SVD's handles are warm from the steps; it takes ~45 s)
                function()
                self.sync()
            start = time.perf_counter()
            function()
            self.sync()
            ms = 1e3 * (time.perf_counter() - start)
            self.rows.append(
                (f"dense {name} N={self.n} (once)", True, f"{ms:.1f} ms = {ms / step_ms:.0f} × transport k=4 in place")
            )

    # 3. small and batched
    def small(self) -> None:
        U = self.unitary(128, 128)
        A, B, X = self.randn(128, 1, scale=1 / 128), self.randn(128, 1, scale=1 / 128), self.randn(128, 2)
        floor = _median_ms(lambda: U @ X, self.sync, repeats=100)
        for name, step in (("transport", ul.transport), ("project", ul.project)):
            ms = _median_ms(lambda s=step: s(U, A, B, out=U, check_finite=False), self.sync, repeats=100)
            self.rows.append(
                (
                    f"{name} N=128 k=1 in place",
                    True,
                    f"{1e3 * ms:.0f} µs = {ms / floor:.0f} × floor ({1e3 * floor:.0f} µs)",
                )
            )
        U = self.unitary(512, 64, 64)
        A, B, X = self.randn(512, 64, 1, scale=1 / 64), self.randn(512, 64, 1, scale=1 / 64), self.randn(512, 64, 2)
        floor = _median_ms(lambda: U @ X, self.sync)
        for name, step in (("transport", ul.transport), ("project", ul.project)):
            ms = _median_ms(lambda s=step: s(U, A, B, out=U, check_finite=False), self.sync)
            self.rows.append(
                (
                    f"{name} (512, 64, 64) k=1 in place",
                    self.target(ms <= 5 * floor),
                    f"{ms:.3f} ms = {ms / floor:.1f} × batched floor ({floor:.3f} ms) [target ≤ 5 ×]",
                )
            )

    # 4. CuPy and JAX
    def cupy(self) -> None:
        if not self.gpu:
            return
        try:
            import cupy
        except ImportError:
            self.rows.append(("cupy steps", True, "CuPy not installed: skipped"))
            return
        sync = cupy.cuda.get_current_stream().synchronize
        n = self.n
        U = cupy.asarray(self.unitary(n, n))
        for k in (1, 4):
            A, B = cupy.asarray(self.randn(n, k, scale=1 / n)), cupy.asarray(self.randn(n, k, scale=1 / n))
            X = cupy.asarray(self.randn(n, 2 * k))
            floor = _median_ms(lambda X=X: U @ X, sync)
            ms = _median_ms(lambda A=A, B=B: ul.transport(U, A, B, out=U, check_finite=False), sync)
            self.rows.append(
                (
                    f"cupy transport N={n} k={k} in place",
                    True,
                    f"{ms:.3f} ms = {ms / floor:.2f} × floor ({floor:.3f} ms)",
                )
            )

    def jax(self) -> None:
        try:
            import jax
            import jax.numpy as jnp
        except ImportError:
            self.rows.append(("jax steps", True, "JAX not installed: skipped"))
            return
        platform = jax.devices()[0].platform
        n = self.n
        U = jnp.asarray(self.unitary(n, n).cpu().numpy())
        for k in (1, 4):
            A = jnp.asarray(self.randn(n, k, scale=1 / n).cpu().numpy())
            B = jnp.asarray(self.randn(n, k, scale=1 / n).cpu().numpy())
            X = jnp.asarray(self.randn(n, 2 * k).cpu().numpy())
            floor_fn = jax.jit(lambda U, X: U @ X)
            step_fn = jax.jit(lambda U, A, B: ul.transport(U, A, B, check_finite=False))
            floor = _median_ms(lambda X=X, f=floor_fn: f(U, X).block_until_ready(), lambda: None)
            ms = _median_ms(lambda A=A, B=B, f=step_fn: f(U, A, B).block_until_ready(), lambda: None)
            self.rows.append(
                (
                    f"jax ({platform}) jitted transport N={n} k={k} new output",
                    self.target(ms <= 5 * floor),
                    f"{ms:.3f} ms = {ms / floor:.2f} × jitted floor ({floor:.3f} ms) [target ≤ 5 ×]",
                )
            )

    # 5. training step
    def training(self) -> None:
        from unitary_lowrank.cli.bench import training_step  # the step `bench --train` times

        for n in (1024, 4096):
            times = {}
            for name in ("adam", "projunn", "orthogonal"):
                if name == "orthogonal" and n > 1024 and not self.gpu:
                    continue
                step = training_step(f"train-{name}", self.unitary(n, n), 4)
                times[name] = _median_ms(step, self.sync, repeats=10 if name == "orthogonal" else 30)
            ratio = times["projunn"] / times["adam"]
            detail = (
                f"ProjUNN(Adam, rank 4) {times['projunn']:.3f} ms = {ratio:.2f} × Adam ({times['adam']:.3f} ms)"
                " [target ≤ 1.3 ×]"
            )
            if "orthogonal" in times:
                detail += f"; parametrizations.orthogonal {times['orthogonal']:.1f} ms"
            self.rows.append((f"training step Linear({n}, {n}), batch 64", self.target(ratio <= 1.3), detail))

    # 6. host synchronization
    def host_sync(self) -> None:
        if not self.gpu:
            self.rows.append(("ProjUNN step without host sync", True, "not checked on the CPU"))
            return
        for method, rank in (("transport", 4), ("project", 4), ("transport", 1)):
            W = torch.nn.Parameter(self.unitary(1024, 1024))
            opt = ProjUNN(torch.optim.Adam([{"params": [W], "unitary": True}], lr=1e-3), rank=rank, method=method)
            target = torch.eye(1024, device=self.device)
            sites: dict[str, int] = {}

            def record(message, category, filename, lineno, file=None, line=None, sites=sites):
                stack = [f for f in traceback.extract_stack()[:-1] if not f.filename.endswith("warnings.py")]
                ours = [f for f in stack if "unitary_lowrank" in f.filename]
                key = " via ".join(
                    f"{os.path.basename(f.filename)}:{f.lineno} `{f.line}`"
                    for f in (ours[-1:] + stack[-1:] if ours[-1:] != stack[-1:] else stack[-1:])
                )
                sites[key] = sites.get(key, 0) + 1

            for phase in ("warm-up", "checked"):
                opt.zero_grad()
                (W - target).pow(2).sum().backward()
                if phase == "checked":
                    torch.cuda.synchronize()
                    torch.cuda.set_sync_debug_mode("warn")
                shown = warnings.showwarning
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("always")
                        warnings.showwarning = record
                        opt.step()
                finally:
                    warnings.showwarning = shown
                    torch.cuda.set_sync_debug_mode("default")
            detail = "none in one Adam step" if not sites else "; ".join(f"{k} (×{v})" for k, v in sites.items())
            self.rows.append((f"ProjUNN({method}, rank {rank}) step without host sync", not sites, detail))

    # 7. device-resident step: no sync, CUDA-graph capture, launches
    def resident(self) -> None:
        if not self.gpu:
            self.rows.append(
                ("resident step: sync, capture, launches", True, "needs a GPU (tests/core/test_resident.py)")
            )
            return
        n = 1024

        def build(seed: int):
            torch.manual_seed(seed)
            model = torch.nn.Linear(n, n, bias=False, device=self.device)
            haar_(model.weight.data, generator=torch.Generator(device=self.device).manual_seed(seed))
            base = torch.optim.Adam([{"params": [model.weight], "unitary": True}], lr=1e-3, capturable=True)
            # the counts that live on the host (re-orthonormalization schedule, periodic check) do not advance in
            # a replayed graph: both off here, in the captured and the eager run alike
            opt = ProjUNN(base, rank=4, reorthonormalize_every=None, check_every=None)
            return model, opt

        x = self.randn(64, n)
        target = self.randn(64, n)

        def train_step(model, opt):
            opt.zero_grad(set_to_none=False)
            torch.nn.functional.mse_loss(model(x), target).backward()
            opt.step()

        # (a) no host synchronization over 10 resident steps
        model, opt = build(0)
        with ul.device_resident():
            train_step(model, opt)  # warm-up: state, buffers, keys
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                for _ in range(10):
                    train_step(model, opt)
                detail, ok = "none in 10 steps (set_sync_debug_mode('error'))", True
            except RuntimeError as err:
                detail, ok = f"synchronized: {str(err).splitlines()[0][:160]}", False
            finally:
                torch.cuda.set_sync_debug_mode("default")
        self.rows.append(("resident ProjUNN(Adam(capturable=True), rank 4) step without host sync", ok, detail))

        # (b) a whole training step captured in a CUDA graph, replayed, against eager
        captured, opt_c = build(1)
        eager, opt_e = build(1)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), ul.device_resident():
            for _ in range(3):  # warm-up on a side stream, as torch.cuda.graphs asks; same for the eager copy
                train_step(captured, opt_c)
                train_step(eager, opt_e)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # resident automatically while capturing
            train_step(captured, opt_c)
        graph.replay()
        with ul.device_resident():
            train_step(eager, opt_e)
        started = time.perf_counter()
        for _ in range(99):
            graph.replay()
        torch.cuda.synchronize()
        replay_ms = (time.perf_counter() - started) / 99 * 1e3
        with ul.device_resident():
            for _ in range(99):
                train_step(eager, opt_e)
        torch.cuda.synchronize()
        difference = float((captured.weight - eager.weight).abs().max())
        drift = float(ul.unitarity_error(captured.weight.detach()))
        self.rows.append(
            (
                "CUDA graph of a whole ProjUNN training step, 100 replays vs 100 eager steps",
                difference <= 1e-4 and drift <= 1e-5,
                f"max |W_graph − W_eager| = {difference:.2e}, unitarity error {drift:.1e}, "
                f"replay {replay_ms:.3f} ms/step",
            )
        )

        # (c) launches and copies of one transport, k = 1, N = 8192
        U = self.unitary(self.n, self.n)
        A, B = self.randn(self.n, 1, scale=1 / self.n), self.randn(self.n, 1, scale=1 / self.n)
        for route, context in (("default", contextlib.nullcontext), ("resident", ul.device_resident)):
            with context():
                ul.transport(U, A, B, check_finite=False, out=U)
                torch.cuda.synchronize()
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
                    ul.transport(U, A, B, check_finite=False, out=U)
                    torch.cuda.synchronize()
            events = [e for e in profile.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            copies = sum(1 for e in events if "memcpy" in e.name.lower())
            kernels = len(events) - copies
            self.rows.append(
                (
                    f"transport N={self.n} k=1, {route} route: launches",
                    self.target(route == "default" or (kernels <= 20 and copies == 0)),
                    f"{kernels} kernels, {copies} memory copies"
                    + (" [target (resident) ≤ 20 kernels, 0 copies]" if route == "resident" else ""),
                )
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--n", type=int, default=8192, help="matrix size of the speed rows (default 8192)")
    parser.add_argument("--out", default=None, help="also write the table (Markdown) to this file")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="sections to leave out (verify large dense small cupy jax training sync resident)",
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; run with --device cpu --n 512 for a smoke test", file=sys.stderr)
        return 2
    check = Check(args.device, args.n)
    check.dense_baselines = "dense" not in args.skip
    sections = {
        "verify": check.verify,
        "large": check.large,
        "small": check.small,
        "cupy": check.cupy,
        "jax": check.jax,
        "training": check.training,
        "sync": check.host_sync,
        "resident": check.resident,
    }
    for name, body in sections.items():
        if name not in args.skip:
            check.section(name, body)
    name = torch.cuda.get_device_name() if check.gpu else "CPU"
    lines = [
        f"unitary_lowrank gpu_check — {name}, torch {torch.__version__}",
        "",
        "| check | ok | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {row} | {'yes' if ok else 'NO'} | {detail} |" for row, ok, detail in check.rows]
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as handle:
            handle.write("\n".join(lines) + "\n")
    return 0 if all(ok for _, ok, _ in check.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
