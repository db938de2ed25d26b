"""Sharded steps (``unitary_lowrank.sharded``) equal the one-process step, with every process a thread here.

The collectives are simulated: each "process" is a thread holding its rows of
the weight and the update, and a reduction waits for all of them. The
reference is the one-process step of the optimizer adapters on the whole
matrices; sharded results are gathered in the test only.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import gaussian, haar

from unitary_lowrank import sharded
from unitary_lowrank._adapters import Options, initial_basis
from unitary_lowrank._adapters import step as one_process_step


class Threads:
    """``size`` ranks as threads; each collective waits for every rank, then combines their values."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots: list = [None] * size
        self._barrier = threading.Barrier(size)
        self.log: list[tuple[str, tuple[int, ...]]] = []

    def member(self, rank: int) -> Member:
        return Member(self, rank)

    def exchange(self, rank: int, x: np.ndarray) -> list[np.ndarray]:
        self._slots[rank] = x
        self._barrier.wait()
        values = list(self._slots)
        self._barrier.wait()
        return values


class Member:
    def __init__(self, group: Threads, rank: int) -> None:
        self.group, self.index, self.size = group, rank, group.size

    def all_reduce(self, x, op="sum"):
        if self.index == 0:
            self.group.log.append(("all_reduce", tuple(x.shape)))
        values = self.group.exchange(self.index, np.asarray(x))
        return np.maximum.reduce(values) if op == "max" else sum(values[1:], values[0].copy())

    def all_gather(self, x):
        if self.index == 0:
            self.group.log.append(("all_gather", tuple(x.shape)))
        return np.stack(self.group.exchange(self.index, np.asarray(x)))


def run_sharded(size, U, delta, *, layout, basis=None, error=None, **options):
    """Each rank steps its block in a thread; returns the gathered weight, basis and error, and the collectives."""
    group = Threads(size)
    axis = 0 if layout == "rows" else 1
    sizes = sharded.shard_sizes(U.shape[axis], size)
    bounds = np.cumsum([0, *sizes])
    take = lambda x, r: x[bounds[r] : bounds[r + 1]] if axis == 0 else x[:, bounds[r] : bounds[r + 1]]  # noqa: E731
    results: list = [None] * size
    errors: list = []

    def work(r):
        try:
            local_basis = basis if (basis is None or layout == "rows") else basis[bounds[r] : bounds[r + 1]]
            results[r] = sharded.step(
                take(U, r).copy(),
                take(delta, r).copy(),
                group.member(r),
                layout=layout,
                basis=local_basis,
                error=None if error is None else take(error, r).copy(),
                sizes=sizes,
                **options,
            )
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)
            group._barrier.abort()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    weight = np.concatenate([res.weight for res in results], axis=axis)
    out_basis = results[0].basis
    if out_basis is not None and layout == "columns":
        out_basis = np.concatenate([res.basis for res in results], axis=0)
    error_out = None if results[0].error is None else np.concatenate([res.error for res in results], axis=axis)
    return weight, out_basis, error_out, [bool(res.finite) for res in results], group.log


CASES = [  # (n, p, size): square, tall, uneven and empty shards
    (64, 64, 2),
    (66, 66, 4),
    (96, 24, 3),
    (10, 10, 4),  # rows 3, 3, 3, 1
    (6, 6, 4),  # rows 2, 2, 2, 0
]


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize(("method", "retraction"), [("transport", "exp"), ("transport", "cayley"), ("project", "exp")])
@pytest.mark.parametrize("sketch", ["randomized", "subspace"])
@pytest.mark.parametrize(("n", "p", "size"), CASES)
def test_rows_layout_equals_one_process(n, p, size, sketch, method, retraction, dtype, rng):
    k = min(2, p)
    U = haar(n, dtype, rng, p=p)
    delta = gaussian((n, p), dtype, rng, 0.1)
    key = np.array([3, 1, 4])
    basis = initial_basis(U, k, key) if sketch == "subspace" else None
    options = Options(rank=k, method=method, retraction=retraction, sketch=sketch)
    expected = one_process_step(U, delta, options, key=key, basis=basis)
    weight, next_basis, _, finite, log = run_sharded(
        size, U, delta, layout="rows", rank=k, method=method, retraction=retraction, sketch=sketch, key=key, basis=basis
    )
    assert all(finite)
    assert np.abs(weight - expected.weight).max() <= 1e-12
    assert np.abs(weight.conj().T @ weight - np.eye(p)).max() <= 1e-13
    if sketch == "subspace":  # bases are fixed up to rotation: compare the projectors
        assert np.abs(next_basis @ next_basis.conj().T - expected.basis @ expected.basis.conj().T).max() <= 1e-12
    largest = max(int(np.prod(shape[1:])) if kind == "all_gather" else int(np.prod(shape)) for kind, shape in log)
    assert largest <= max(n, p) * (k + 10)  # no collective of a weight's size


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("method", ["transport", "project"])
@pytest.mark.parametrize("sketch", ["randomized", "subspace"])
@pytest.mark.parametrize(("n", "p", "size"), [(20, 40, 2), (24, 96, 3), (6, 10, 4)])
def test_columns_layout_of_a_wide_weight_equals_one_process(n, p, size, sketch, method, dtype, rng):
    """A wide weight's rows sharded: its adjoint, the tall view the step works on, has its columns sharded."""
    k = min(2, n)
    W = haar(p, dtype, rng, p=n).conj().T.copy()  # n×p with orthonormal rows
    delta = gaussian((n, p), dtype, rng, 0.1)
    key = np.array([2, 7])
    U, D = W.conj().T.copy(), delta.conj().T.copy()  # the tall view, p×n, columns sharded like W's rows
    basis = initial_basis(W, k, key) if sketch == "subspace" else None
    expected = one_process_step(W, delta, Options(rank=k, method=method, sketch=sketch), key=key, basis=basis)
    weight, next_basis, _, finite, _ = run_sharded(
        size, U, D, layout="columns", rank=k, method=method, sketch=sketch, key=key, basis=basis
    )
    assert all(finite)
    assert np.abs(weight.conj().T - expected.weight).max() <= 1e-12
    if sketch == "subspace":
        assert np.abs(next_basis @ next_basis.conj().T - expected.basis @ expected.basis.conj().T).max() <= 1e-12


@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_a_nan_on_one_rank_is_skipped_on_every_rank(layout, rng):
    n = 32
    U = haar(n, "float64", rng)
    delta = gaussian((n, n), "float64", rng, 0.1)
    delta[-1, -1] = np.nan  # on the last rank only
    E = gaussian((n, n), "float64", rng, 1e-3)
    weight, _, error, finite, _ = run_sharded(
        3, U, delta, layout=layout, rank=2, key=np.array([1]), error=E, skip_nonfinite=True
    )
    assert finite == [False, False, False]
    assert np.array_equal(weight, U) and np.array_equal(error, E)


def test_error_feedback_keeps_what_the_step_left_out(rng):
    n, k = 30, 2
    U = haar(n, "complex128", rng)
    delta, E = gaussian((n, n), "complex128", rng, 0.1), gaussian((n, n), "complex128", rng, 0.01)
    key = np.array([9])
    basis = initial_basis(U, k, key)
    expected = one_process_step(
        U, delta, Options(rank=k, method="transport", sketch="subspace"), key=key, basis=basis, error=E
    )
    weight, _, error, _, _ = run_sharded(
        3, U, delta, layout="rows", rank=k, method="transport", sketch="subspace", key=key, basis=basis, error=E
    )
    assert np.abs(weight - expected.weight).max() <= 1e-12
    assert np.abs(error - expected.error).max() <= 1e-12


def test_shard_sizes_follow_torch_chunk():
    assert sharded.shard_sizes(10, 4) == [3, 3, 3, 1]
    assert sharded.shard_sizes(6, 4) == [2, 2, 2, 0]
    assert sharded.shard_sizes(8, 2) == [4, 4]
    assert sharded.shard_sizes(0, 3) == [0, 0, 0]
