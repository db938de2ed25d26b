"""One prepared check for a CUDA machine: accuracy, speed against the floor and the dense baselines, host syncs.

Run on a machine with a CUDA GPU (about 5 minutes on an H100/H200-class card)::

    python benchmarks/gpu_check.py

It prints one table and exits non-zero if an accuracy check fails or a ProjUNN step synchronizes
with the host. What it does:

1. ``verify`` on torch CUDA tensors and, if CuPy is installed, on CuPy arrays (a small grid).
2. The in-place step (``transport``, ``project``) at N = 8192, k ∈ {1, 4, 16}, float32, against one
   ``U @ X`` (X of shape N×2k, the memory floor) and against the dense O(N³) steps
   ``torch.linalg.matrix_exp`` and an SVD polar factor (timed once at N = 8192).
3. One ``ProjUNN(Adam)`` step under ``torch.cuda.set_sync_debug_mode("error")``: any host
   synchronization inside the step raises.

``--device cpu --n 512`` runs the same code on the CPU (no sync check) as a smoke test of the
script itself; nothing in the test suite depends on a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from unitary_lowrank.backends.torch import ProjUNN, haar_

import unitary_lowrank as ul


def _median_ms(function, sync, repeats: int = 20) -> float:
    function()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def verify_rows(device: str) -> list[tuple[str, bool, str]]:
    """The verify grid on torch (and CuPy on CUDA), small: N ∈ {64, 256}, tall 256×32, k ∈ {1, 4}."""
    from unitary_lowrank.cli import verify

    rows = []
    backends = ["torch"]
    if device == "cuda":
        try:
            import cupy  # noqa: F401

            backends.append("cupy")
        except ImportError:
            rows.append(("verify cupy", True, "CuPy not installed: skipped"))
    for backend in backends:  # verify's torch converter takes CUDA when there is one
        results = verify.run(
            sizes=(64, 256), ranks=(1, 4), dtypes=verify.DEFAULT_DTYPES, backend=backend, repeats=3, tall=((256, 32),)
        )
        failed = [r for r in results if not r.ok]
        worst = max(r.error for r in results if r.dtype in ("float64", "complex128"))
        detail = f"{len(results)} cases, {len(failed)} over tolerance, worst double-precision error {worst:.1e}"
        rows.append((f"verify {backend}", not failed, detail))
    return rows


def speed_rows(device: str, n: int) -> list[tuple[str, bool, str]]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    g = torch.Generator(device=device).manual_seed(0)
    U = haar_(torch.empty(n, n, device=device), generator=g)
    rows = []
    for k in (1, 4, 16):
        A = torch.randn(n, k, device=device, generator=g) / n
        B = torch.randn(n, k, device=device, generator=g) / n
        X = torch.randn(n, 2 * k, device=device, generator=g)
        floor = _median_ms(lambda X=X: U @ X, sync)
        for name, step in (("transport", ul.transport), ("project", ul.project)):
            ms = _median_ms(lambda s=step, A=A, B=B: s(U, A, B, out=U, check_finite=False), sync)
            ok = True if device != "cuda" or n != 8192 or k != 1 else (ms <= 3 * floor and ms <= 0.5)
            rows.append(
                (f"{name} N={n} k={k} in place", ok, f"{ms:.3f} ms = {ms / floor:.2f} × floor ({floor:.3f} ms)")
            )
    A = torch.randn(n, 4, device=device, generator=g) / n
    B = torch.randn(n, 4, device=device, generator=g) / n

    def dense_expm():
        X = U.mT @ A @ B.mT
        return U @ torch.linalg.matrix_exp((X - X.mT) / 2)

    def dense_polar():
        W, _, Vh = torch.linalg.svd(U + A @ B.mT)
        return W @ Vh

    step = _median_ms(lambda: ul.transport(U, A, B, out=U, check_finite=False), sync)
    for name, function in (("matrix_exp", dense_expm), ("SVD polar", dense_polar)):
        start = time.perf_counter()
        function()
        sync()
        ms = 1e3 * (time.perf_counter() - start)
        rows.append((f"dense {name} N={n} (once)", True, f"{ms:.1f} ms = {ms / step:.0f} × transport k=4"))
    return rows


def sync_row(device: str) -> tuple[str, bool, str]:
    if device != "cuda":
        return ("ProjUNN step without host sync", True, "not checked on the CPU")
    W = torch.nn.Parameter(haar_(torch.empty(1024, 1024, device=device)))
    opt = ProjUNN(torch.optim.Adam([{"params": [W], "unitary": True}], lr=1e-3), rank=4)
    target = torch.eye(1024, device=device)
    for phase in ("warm-up", "checked"):
        opt.zero_grad()
        (W - target).pow(2).sum().backward()
        if phase == "checked":
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        try:
            opt.step()
        except RuntimeError as err:
            return ("ProjUNN step without host sync", False, f"synchronizes: {str(err).splitlines()[0]}")
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return ("ProjUNN step without host sync", True, "no synchronization in one Adam + transport step")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--n", type=int, default=8192, help="matrix size of the speed rows (default 8192)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; run with --device cpu --n 512 for a smoke test", file=sys.stderr)
        return 2
    rows = verify_rows(args.device) + speed_rows(args.device, args.n) + [sync_row(args.device)]
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"unitary_lowrank gpu_check — {name}, torch {torch.__version__}\n")
    print("| check | ok | measured |")
    print("|---|---|---|")
    for check, ok, detail in rows:
        print(f"| {check} | {'yes' if ok else 'NO'} | {detail} |")
    return 0 if all(ok for _, ok, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
