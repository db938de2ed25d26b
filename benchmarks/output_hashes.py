"""Hashes of thousands of outputs of the primitives: the check that a refactor changed no result, bit for bit.

    python benchmarks/output_hashes.py > before.txt      # on the commit before
    python benchmarks/output_hashes.py > after.txt       # on the commit after
    diff before.txt after.txt                            # nothing: every output is the same to the last bit

One line per output: ``transport`` (exp and Cayley), ``project`` and ``sketch``
(randomized with and without a power iteration, column sampling, truncated SVD)
on NumPy, torch, JAX (x64) and ``array_api_strict`` arrays, four dtypes, square,
tall and batched shapes, random, rank-deficient (repeated columns), zero, huge,
tiny and non-finite factors; on NumPy also inside ``ul.device_resident()``, on
torch also with a counter key and in place (``out=U``); then ``polar``,
``reorthonormalize``, ``unitarity_error`` and ``random_unitary``. Takes about
7 minutes, most of it JAX dispatching small operations one by one;
``--libraries numpy torch`` shortens it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import warnings

import numpy as np

import unitary_lowrank as ul

#: (n, p, k, batch shape)
SHAPES = [
    (8, 8, 1, ()),
    (16, 16, 3, ()),
    (64, 64, 1, ()),
    (64, 64, 4, ()),
    (32, 8, 2, ()),
    (6, 6, 1, (3,)),
    (16, 16, 2, (2, 3)),
    (12, 4, 1, (5,)),
    (64, 64, 8, ()),
]
VARIANTS = ("random", "rank1", "zeroA", "huge", "tiny", "nan")
DTYPES = ("float32", "float64", "complex64", "complex128")


def digest(x) -> str:
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:12]


def digests(result) -> str:
    return "/".join(digest(x) for x in (result if isinstance(result, tuple) else (result,)))


def convert(library: str, a: np.ndarray):
    if library == "torch":
        import torch

        return torch.from_numpy(np.ascontiguousarray(a))
    if library == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        return jax.numpy.asarray(a)
    if library == "strict":
        import array_api_strict

        return array_api_strict.asarray(a)
    return a


def cases():
    rng = np.random.default_rng(0)
    for dtype in DTYPES:
        single = dtype in ("float32", "complex64")
        for n, p, k, batch in SHAPES:
            for variant in VARIANTS:
                seed = n + p + k if p != n else n + k
                U = ul.random_unitary(n, None if p == n else p, dtype=dtype, seed=seed, batch_shape=batch)

                def draw(shape, dtype=dtype):
                    x = rng.standard_normal(shape)
                    if "complex" in dtype:
                        x = x + 1j * rng.standard_normal(shape)
                    return x.astype(dtype)

                A, B = draw(batch + (n, k)), draw(batch + (p, k))
                if variant == "rank1":
                    A, B = np.repeat(A[..., :1], k, axis=-1), np.repeat(B[..., :1], k, axis=-1)
                elif variant == "zeroA":
                    A = A * 0
                elif variant == "huge":
                    A = A * (1e30 if single else 1e200)
                elif variant == "tiny":
                    A = A * (1e-30 if single else 1e-300)
                elif variant == "nan":
                    A = A.copy()
                    A[..., 0, 0] = np.nan
                G = draw(batch + (n, 1)) @ draw(batch + (1, p)) if variant == "rank1" else draw(batch + (n, p))
                if variant == "zeroA":
                    G = G * 0
                yield f"{dtype}-{n}x{p}-k{k}-{batch}-{variant}", (n, p, k, batch, variant), (U, A, B, G)


def _calls(U, A, B, G, k):
    """name → (function, operands, options) of the calls hashed for one case."""
    return {
        "transport": (ul.transport, (U, A, B), {}),
        "cayley": (ul.transport, (U, A, B), {"retraction": "cayley"}),
        "project": (ul.project, (U, A, B), {}),
        "sk-rand": (ul.sketch, (G, k), {"seed": 3}),
        "sk-rand-q0": (ul.sketch, (G, k), {"seed": 3, "power_iters": 0}),
        "sk-col": (ul.sketch, (G, k), {"kind": "column", "seed": 3}),
        "sk-svd": (ul.sketch, (G, k), {"kind": "svd"}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", nargs="+", default=["numpy", "torch", "jax", "strict"])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    available = {"numpy": True, "strict": importlib.util.find_spec("array_api_strict") is not None}
    available |= {name: importlib.util.find_spec(name) is not None for name in ("torch", "jax")}
    out: dict[str, str] = {}
    all_cases = list(cases())
    for library in (name for name in args.libraries if available.get(name)):
        print(f"hashing {library} ({len(all_cases)} cases) ...", file=sys.stderr, flush=True)  # stdout: the hashes
        for tag, (n, p, k, batch, variant), arrays in all_cases:
            if library == "strict" and (variant in ("huge", "tiny") or batch):
                continue  # array_api_strict: a shorter list
            U, A, B, G = (convert(library, x) for x in arrays)
            finite = variant != "nan"
            for name, (function, operands, options) in _calls(U, A, B, G, k).items():
                try:
                    out[f"{library}-{tag}-{name}"] = digests(function(*operands, check_finite=finite, **options))
                except Exception as err:  # an error is an outcome too: it must stay the same
                    out[f"{library}-{tag}-{name}"] = "ERR " + type(err).__name__
            if library == "numpy":
                with ul.device_resident():
                    out[f"{library}-{tag}-resident-transport"] = digests(ul.transport(U, A, B, check_finite=finite))
                    out[f"{library}-{tag}-resident-project"] = digests(ul.project(U, A, B, check_finite=finite))
                    out[f"{library}-{tag}-resident-sketch"] = digests(ul.sketch(G, k, seed=3, check_finite=finite))
            if library == "torch":
                import torch

                key = torch.tensor([5, 7], dtype=torch.int64)
                out[f"{library}-{tag}-keysketch"] = digests(ul.sketch(G, k, seed=key, check_finite=finite))
                if not batch and n == p:
                    V = U.clone()
                    ul.transport(V, A, B, out=V, check_finite=finite)
                    out[f"{library}-{tag}-inplace-transport"] = digest(V)
                    V = U.clone()
                    ul.project(V, A, B, out=V, check_finite=finite)
                    out[f"{library}-{tag}-inplace-project"] = digest(V)
    for dtype in DTYPES:
        M = ul.random_unitary(16, dtype=dtype, seed=1) + 1e-3
        out[f"polar-{dtype}"] = digest(ul.polar(M))
        out[f"reorthonormalize-{dtype}"] = digest(ul.reorthonormalize(M))
        out[f"unitarity_error-{dtype}"] = digest(ul.unitarity_error(M))
        out[f"random_unitary-{dtype}"] = digest(ul.random_unitary(8, 3, dtype=dtype, seed=2, batch_shape=(2,)))
    for key, value in sorted(out.items()):
        print(key, value)


if __name__ == "__main__":
    main()
