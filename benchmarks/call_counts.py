"""Python function calls per primitive call (cProfile): the per-call work that is most of a small step's fixed cost.

    python benchmarks/call_counts.py            # NumPy 64×64, k = 1 (the targets), and a few more cases
    python benchmarks/call_counts.py --json F   # the same, also written as JSON

Counts are deterministic (no timing): every Python-level call, the library's
and those it makes into NumPy, array_api_compat and the backend, after two
warm-up calls (caches filled). The targets are those of the layout issue:
``transport`` ≤ 300, ``project`` ≤ 380, ``sketch`` ≤ 370 (NumPy, float64,
64×64, k = 1); before the per-call context they were 612, 754 and 708.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
from collections.abc import Callable

import numpy as np

import unitary_lowrank as ul

TARGETS = {"transport": 300, "project": 380, "sketch": 370}


def calls(function: Callable[[], object]) -> int:
    """Python function calls of one ``function()``, after two warm-up calls."""
    function()
    function()
    profile = cProfile.Profile()
    profile.enable()
    function()
    profile.disable()
    return pstats.Stats(profile).total_calls


def cases(library: str, n: int, k: int, dtype: str) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    U = ul.random_unitary(n, dtype=dtype, seed=0)
    A, B, G = (rng.standard_normal(shape).astype(dtype) for shape in ((n, k), (n, k), (n, n)))
    if library == "torch":
        import torch

        U, A, B, G = (torch.from_numpy(x) for x in (U, A, B, G))
    return {
        "transport": lambda: ul.transport(U, A, B),
        "project": lambda: ul.project(U, A, B),
        "sketch": lambda: ul.sketch(G, k, seed=0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the counts here")
    args = parser.parse_args(argv)
    rows = []
    settings = [("numpy", 64, 1, "float64"), ("numpy", 64, 4, "float64"), ("numpy", 64, 1, "complex64")]
    try:
        import torch  # noqa: F401

        settings.append(("torch", 64, 1, "float64"))
    except ImportError:
        pass
    for number, (library, n, k, dtype) in enumerate(settings, 1):  # progress on stderr: the table goes to stdout
        print(f"[{number}/{len(settings)}] {library} {dtype} n = {n} k = {k} ...", file=sys.stderr, flush=True)
        for name, function in cases(library, n, k, dtype).items():
            rows.append(
                {"library": library, "n": n, "k": k, "dtype": dtype, "function": name, "calls": calls(function)}
            )
    met = True
    print(f"{'library':8} {'dtype':10} {'n':>4} {'k':>2}  {'function':10} {'calls':>6}  target")
    for row in rows:
        target = (
            TARGETS.get(row["function"])
            if (row["library"], row["k"], row["dtype"]) == ("numpy", 1, "float64")
            else None
        )
        verdict = "" if target is None else f"≤ {target}: {'met' if row['calls'] <= target else 'MISSED'}"
        met &= target is None or row["calls"] <= target
        print(
            f"{row['library']:8} {row['dtype']:10} {row['n']:>4} {row['k']:>2}  {row['function']:10} "
            f"{row['calls']:>6}  {verdict}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
