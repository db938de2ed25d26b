"""pytest-benchmark suite: steps, sketch, the memory floor and the dense baselines, grouped for ratios.

Each benchmark group holds one configuration (backend, dtype, N, k): the step,
its floor (one ``U @ X``, X of shape N×2k) and — for k = 4 — the dense SciPy/torch
baselines, so pytest-benchmark's table shows each as a multiple of the fastest
in the same run. Run with::

    python -m pytest benchmarks/ --benchmark-only
    python -m pytest benchmarks/ --benchmark-only --bench-sizes 1024 -k "numpy and float64"
"""

from __future__ import annotations

import importlib.util

import pytest

from unitary_lowrank.cli.bench import Case, build

BACKENDS = ["numpy"] + (["torch"] if importlib.util.find_spec("torch") else [])
DTYPES = ["float32", "float64", "complex64"]


def run(benchmark, case: Case, group: str, rounds: int | None = None) -> None:
    function, sync = build(case)

    def once():
        function()
        sync()

    benchmark.group = group
    benchmark.extra_info.update(
        op=case.op, backend=case.backend, n=case.n, k=case.k, dtype=case.dtype, batch=case.batch
    )
    if rounds is None:
        benchmark(once)
    else:
        benchmark.pedantic(once, rounds=rounds, warmup_rounds=1)


def group_of(backend, dtype, n, k, batch=0):
    shape = f"({batch},{n},{n})" if batch else f"N={n}"
    return f"{backend} {dtype} {shape} k={k}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["floor", "project", "transport", "project-F", "transport-F"])
def test_step(benchmark, op, backend, dtype, n, k):
    """The steps on a row-major U and (``-F``) on the same U stored column-major, against the same floor."""
    name, _, layout = op.partition("-")
    run(benchmark, Case(name, backend, n, k, dtype, layout=layout or "C"), group_of(backend, dtype, n, k))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["sketch-floor", "sketch"])
def test_sketch(benchmark, op, backend, dtype, n, k):
    run(benchmark, Case(op, backend, n, k, dtype), group_of(backend, dtype, n, k) + " sketch")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["polar", "expm"])
def test_dense_baseline(benchmark, op, backend, dtype, n, request):
    dense_max = request.config.getoption("--bench-dense-max")
    if n > dense_max and not (dtype == "float64" and n >= 4096):
        pytest.skip(f"dense O(N³) baseline skipped above N = {dense_max} (see --bench-dense-max)")
    run(benchmark, Case(op, backend, n, 4, dtype), group_of(backend, dtype, n, 4), rounds=1 if n >= 2048 else 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["floor", "project", "transport"])
def test_batched(benchmark, op, backend, dtype):
    run(benchmark, Case(op, backend, 64, 1, dtype, batch=512), group_of(backend, dtype, 64, 1, batch=512))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["floor", "project", "transport", "torch-orthogonal"])
def test_stiefel(benchmark, op, backend):
    """n = 4096, p = 256, k = 4, float32: the step against one read of U, and torch's orthogonal parametrization."""
    if op == "torch-orthogonal" and backend != "torch":
        pytest.skip("the torch parametrization runs on torch tensors")
    rounds = 1 if op == "torch-orthogonal" else None  # about 20 s a call on 2 CPU cores
    run(benchmark, Case(op, backend, 4096, 4, "float32", p=256), f"{backend} float32 4096×256 k=4", rounds=rounds)


@pytest.mark.skipif("torch" not in BACKENDS, reason="training steps run on torch")
@pytest.mark.parametrize("op", ["train-adam", "train-projunn", "train-orthogonal"])
def test_training_step(benchmark, op, n):
    """One whole step of an N×N Linear (batch 64, float32): ProjUNN(Adam, rank 4) against plain Adam and torch's
    orthogonal parametrization."""
    rounds = 3 if op == "train-orthogonal" and n >= 2048 else None
    run(benchmark, Case(op, "torch", n, 4, "float32"), f"torch float32 training step N={n}", rounds=rounds)


def _conv_layer_and_batch(channels: int, size: int):
    import torch
    from unitary_lowrank.backends.torch import ProjUNN, UnitaryConv2d

    g = torch.Generator().manual_seed(0)
    layer = UnitaryConv2d(channels, size, init="haar", generator=g)
    x = torch.randn(64, channels, size, size, generator=g)
    opt = ProjUNN(torch.optim.Adam([{"params": layer.unitary_parameters(), "unitary": True}], lr=1e-3), rank=1)
    layer(x).square().mean().backward()  # gradients for the optimizer step
    return layer, x, opt


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs torch")
@pytest.mark.parametrize("part", ["forward+backward", "projunn-step"])
@pytest.mark.parametrize(("channels", "size"), [(32, 16), (64, 8), (16, 32)])
def test_unitary_conv_step_against_forward_backward(benchmark, part, channels, size):
    """One UnitaryConv2d layer, batch 64: its ProjUNN(Adam, rank 1) step beside its forward + backward (same group)."""
    layer, x, opt = _conv_layer_and_batch(channels, size)

    def forward_backward():
        layer.zero_grad()
        layer(x).square().mean().backward()

    benchmark.group = f"UnitaryConv2d c={channels} {size}x{size} batch 64"
    benchmark.extra_info.update(channels=channels, size=size, part=part)
    benchmark(forward_backward if part == "forward+backward" else opt.step)
