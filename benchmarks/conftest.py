"""Options of the benchmark suite: ``pytest benchmarks/ --benchmark-only [--bench-sizes 256,1024,4096]``."""

from __future__ import annotations


def pytest_addoption(parser):
    group = parser.getgroup("unitary_lowrank benchmarks")
    group.addoption("--bench-sizes", default="256,1024,4096", help="comma-separated N (default 256,1024,4096)")
    group.addoption("--bench-ranks", default="1,4,16", help="comma-separated k (default 1,4,16)")
    group.addoption(
        "--bench-dense-max",
        type=int,
        default=2048,
        help="largest N for the O(N³) dense baselines (float64 also at 4096); default 2048",
    )


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def pytest_generate_tests(metafunc):
    config = metafunc.config
    if "n" in metafunc.fixturenames:
        metafunc.parametrize("n", _ints(config.getoption("--bench-sizes")))
    if "k" in metafunc.fixturenames:
        metafunc.parametrize("k", _ints(config.getoption("--bench-ranks")))
