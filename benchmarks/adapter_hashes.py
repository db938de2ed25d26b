"""Hashes of the optimizer adapters' steps over their configurations: a refactor of the step changes no result.

    python benchmarks/adapter_hashes.py > before.txt     # on the commit before
    python benchmarks/adapter_hashes.py > after.txt      # on the commit after
    diff before.txt after.txt                            # nothing: every step is the same to the last bit

The companion of ``output_hashes.py`` (the primitives) for what is built on
them. One line per configuration: the weight, the adapter's state (subspace
basis, error buffer) and the skipped-update record after three steps of Adam
on a fixed quadratic loss (with a Newton–Schulz correction every two steps)
and a fourth whose gradient holds a NaN, for

- ``torch``: :class:`~unitary_lowrank.backends.torch.ProjUNN`, every method,
  sketch and error-feedback setting, four dtypes, square, tall, wide and
  batched weights;
- ``jax``: the optax :func:`~unitary_lowrank.backends.jax.projunn` (x64), the
  same grid without ``dense``;
- ``sharded``: :func:`unitary_lowrank.sharded.step` on 1 and 3 simulated
  processes (threads), rows and columns layouts, NumPy.

Takes about 6½ minutes on a quiet 2-core machine (two runs back to back: 13 minutes, 2026-12-07), most of it JAX
dispatching small operations one by one (torch and sharded: 15 s); ``--only torch`` (or ``jax``, ``sharded``) runs
those parts.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import sys
import threading
import warnings

import numpy as np

import unitary_lowrank as ul

DTYPES = ("float32", "float64", "complex64", "complex128")
SHAPES = ((8, 8), (12, 4), (4, 12), (3, 6, 6))
METHODS = ("transport", "project", "cayley", "dense")
SKETCHES = ("randomized", "column", "svd", "subspace")


def _rule(method: str) -> dict[str, str]:
    """The options of a method of the grid: ``"cayley"`` is ``transport`` with the Cayley retraction."""
    return {"method": "transport", "retraction": "cayley"} if method == "cayley" else {"method": method}


def digest(*arrays) -> str:
    h = hashlib.sha1()
    for x in arrays:
        if x is None:
            h.update(b"none")
            continue
        a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def problem(shape, dtype):
    """A unitary start and a fixed target: the loss is ‖W − T‖², whose gradient is full rank."""
    rng = np.random.default_rng(sum(shape))
    n, p = shape[-2:]
    tall = ul.random_unitary(
        max(n, p), None if p == n else min(n, p), dtype=dtype, seed=len(shape), batch_shape=shape[:-2]
    )
    W = tall if p <= n else np.swapaxes(tall, -1, -2).conj()  # wide: orthonormal rows
    T = rng.standard_normal(shape)
    if "complex" in dtype:
        T = T + 1j * rng.standard_normal(shape)
    return np.ascontiguousarray(W), T.astype(dtype)


def torch_lines():
    import torch
    from unitary_lowrank.backends.torch import ProjUNN

    for dtype, shape, method, sketch, feedback in itertools.product(DTYPES, SHAPES, METHODS, SKETCHES, (False, True)):
        W0, T0 = problem(shape, dtype)
        W = torch.nn.Parameter(torch.from_numpy(W0.copy()))
        T = torch.from_numpy(T0)
        base = torch.optim.Adam([{"params": [W], "unitary": True}], lr=0.05)
        name = f"torch-{dtype}-{'x'.join(map(str, shape))}-{method}-{sketch}-ef{int(feedback)}"
        try:
            opt = ProjUNN(
                base, rank="auto" if method == "dense" else 2, **_rule(method), sketch=sketch, error_feedback=feedback,
                reorthonormalize_every=2,
                seed=3, check_every=None,
            )  # fmt: skip
        except ValueError as err:  # a refused configuration is an outcome too
            yield name, f"ERR {type(err).__name__}"
            continue
        for step in range(4):
            opt.zero_grad()
            loss = (W - T).abs().pow(2).sum()
            loss.backward()
            if step == 3:
                W.grad[..., 0, 0] = float("nan")
            opt.step()
        extra = opt.state_dict()["projunn"]
        state = [*extra["bases"].values(), *extra["errors"].values(), *opt._skipped.values()]
        yield name, digest(W, *state)


def jax_lines():
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax
    from unitary_lowrank.backends.jax import projunn

    for dtype, shape, method, sketch, feedback in itertools.product(
        DTYPES, SHAPES, METHODS[:3], SKETCHES, (False, True)
    ):
        W0, T0 = problem(shape, dtype)
        W, T = jnp.asarray(W0), jnp.asarray(T0)
        tx = optax.chain(
            optax.adam(0.05),
            projunn(rank=2, **_rule(method), sketch=sketch, error_feedback=feedback, seed=3, reorthonormalize_every=2),
        )
        state = tx.init(W)
        grad = jax.grad(lambda W, T=T: jnp.sum(jnp.abs(W - T) ** 2))
        for step in range(4):
            g = grad(W)
            if step == 3:
                g = g.at[..., 0, 0].set(jnp.nan)
            updates, state = tx.update(g, state, W)
            W = optax.apply_updates(W, updates)
        inner = state[1]
        yield (
            f"jax-{dtype}-{'x'.join(map(str, shape))}-{method}-{sketch}-ef{int(feedback)}",
            digest(W, *(inner.basis or ()), *(inner.error or ())),
        )


class _Threads:
    """``size`` processes as threads; a collective waits for all of them and combines their values in rank order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.slots: list = [None] * size
        self.barrier = threading.Barrier(size)

    def exchange(self, index: int, x):
        self.slots[index] = np.asarray(x)
        self.barrier.wait()
        values = list(self.slots)
        self.barrier.wait()
        return values


class _Member:
    def __init__(self, group: _Threads, index: int) -> None:
        self.group, self.size = group, group.size
        self.index = index

    def all_reduce(self, x, op="sum"):
        values = self.group.exchange(self.index, x)
        return np.maximum.reduce(values) if op == "max" else sum(values[1:], values[0].copy())

    def all_gather(self, x):
        return np.stack(self.group.exchange(self.index, x))


def _run_sharded(U, delta, error, basis, *, layout, size, **options):
    """Each simulated process steps its block in a thread; their results, in process order."""
    from unitary_lowrank import sharded

    axis = 0 if layout == "rows" else 1
    sizes = sharded.shard_sizes(U.shape[axis], size)
    bounds = np.cumsum([0, *sizes])

    def take(x, r):
        return x[bounds[r] : bounds[r + 1]] if axis == 0 else x[:, bounds[r] : bounds[r + 1]]

    group = _Threads(size)
    results: list = [None] * size

    def work(r):
        local_basis = basis if (basis is None or layout == "rows") else take(basis.T, r).T
        results[r] = sharded.step(
            take(U, r).copy(), take(delta, r).copy(), _Member(group, r), layout=layout, basis=local_basis,
            error=None if error is None else take(error, r).copy(), sizes=sizes, **options,
        )  # fmt: skip

    threads = [threading.Thread(target=work, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def sharded_lines():
    from unitary_lowrank._adapters import initial_basis

    grid = itertools.product(
        ("float32", "float64", "complex128"),
        ((24, 24), (30, 12)),
        ("rows", "columns"),
        (1, 3),
        METHODS[:3],
        ("randomized", "subspace"),
        (False, True),
    )
    for dtype, (n, p), layout, size, method, sketch, feedback in grid:
        U, T = problem((n, p), dtype)
        delta = (0.1 * (T - U)).astype(dtype)
        if feedback:
            delta[-1, -1] = np.nan  # with error feedback, also the skipped-update path
        error = (0.01 * T).astype(dtype) if feedback else None
        key = np.array([3, 1, 4])
        basis = initial_basis(U, 2, key) if sketch == "subspace" else None
        results = _run_sharded(
            U, delta, error, basis, layout=layout, size=size, rank=2, **_rule(method), sketch=sketch, key=key,
            skip_nonfinite=feedback,
        )  # fmt: skip
        parts = [a for res in results for a in (res.weight, res.finite, res.basis, res.error)]
        yield f"sharded-{dtype}-{n}x{p}-{layout}-{size}-{method}-{sketch}-ef{int(feedback)}", digest(*parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=("torch", "jax", "sharded"), default=["torch", "jax", "sharded"])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    parts = {"torch": torch_lines, "jax": jax_lines, "sharded": sharded_lines}
    for name in args.only:
        if name != "sharded" and importlib.util.find_spec(name) is None:
            print(f"# {name} not installed: skipped", file=sys.stderr)
            continue
        for line, value in parts[name]():
            print(line, value, flush=True)


if __name__ == "__main__":
    main()
