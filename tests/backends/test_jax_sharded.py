"""JAX on row-sharded weights: ``jit`` on 4 CPU devices compiles the steps to O(N k) collectives; equal to one device.

Runs in a subprocess: the device count of the CPU backend is fixed when JAX
first starts, and this process's JAX may have started with one. The compiled
HLO (after SPMD partitioning) is parsed for collectives; none may have N²/4
elements or more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

SCRIPT = textwrap.dedent(
    """
    import json, re
    import jax, jax.numpy as jnp, numpy as np, optax
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import unitary_lowrank as ul
    from unitary_lowrank.backends.jax import projunn

    N, k = 256, 4
    mesh = Mesh(np.array(jax.devices()), ("x",))
    rows, everywhere = NamedSharding(mesh, P("x", None)), NamedSharding(mesh, P())
    rng = np.random.default_rng(0)
    U0 = ul.random_unitary(N, dtype="float64", like=jnp, seed=0)
    A0, B0 = jnp.asarray(rng.standard_normal((N, k))), jnp.asarray(rng.standard_normal((N, k)))
    G0 = jnp.asarray(rng.standard_normal((N, N)))
    U, A, G = (jax.device_put(x, rows) for x in (U0, A0, G0))
    B = jax.device_put(B0, everywhere)
    kinds = "all-gather|all-reduce|reduce-scatter|all-to-all|collective-permute"
    shape = re.compile(r"= (\\([^=]*?\\)|\\w+\\[[\\d,]*\\][^ ]*) (" + kinds + r")(?:-start)?\\(")

    def largest_collective(f, *args):
        text = jax.jit(f).lower(*args).compile().as_text()
        sizes = [int(np.prod([int(d) for d in dims.split(",") if d]))
                 for found, _ in shape.findall(text) for dims in re.findall(r"\\[([\\d,]*)\\]", found)]
        return len(sizes), max(sizes or [0])

    def update(W, s, grads):
        return tx.update(grads, s, W)

    tx = optax.chain(optax.adam(1e-2), projunn(rank=k, sketch="subspace", reorthonormalize_every=None))
    state = tx.init(U0)
    drift_tx = optax.chain(optax.adam(1e-2), projunn(rank=k, sketch="subspace"))  # Newton–Schulz every 100 steps
    drift_state = drift_tx.init(U0)
    grads = jnp.asarray(rng.standard_normal((N, N)))
    key = jax.random.key(3)
    steps = {
        "transport": (lambda U, A, B: ul.transport(U, A, B, check_finite=False), (U, A, B), (U0, A0, B0)),
        "project": (lambda U, A, B: ul.project(U, A, B, check_finite=False), (U, A, B), (U0, A0, B0)),
        "sketch": (lambda G: ul.sketch(G, k, seed=key, check_finite=False), (G,), (G0,)),
        "optax step": (update, (U, jax.device_put(state, everywhere), jax.device_put(grads, rows)), (U0, state, grads)),
    }
    report = {}
    for name, (f, sharded, single) in steps.items():
        count, largest = largest_collective(f, *sharded)
        a, b = jax.jit(f)(*sharded), jax.jit(f)(*single)
        if name == "sketch":  # compare A Bᴴ, never the factors
            a, b = a[0] @ a[1].T, b[0] @ b[1].T
        elif name == "optax step":
            a, b = a[0], b[0]
        error = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        report[name] = {"collectives": count, "largest": largest, "error": error}
    text = jax.jit(lambda W, s, g: drift_tx.update(g, s, W)).lower(
        U, jax.device_put(drift_state, everywhere), jax.device_put(grads, rows)).compile().as_text()
    sizes = [int(np.prod([int(d) for d in dims.split(",") if d]))
             for found, _ in shape.findall(text) for dims in re.findall(r"\\[([\\d,]*)\\]", found)]
    report["with Newton-Schulz"] = {"of weight size": sum(size >= N * N / 4 for size in sizes)}
    print(json.dumps({"devices": len(jax.devices()), "N": N, "report": report}))
    """
)


def test_row_sharded_steps_compile_to_small_collectives_and_equal_one_device():
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4
    n = result["N"]
    # the periodic Newton–Schulz step (in a lax.cond, run every 100 steps) needs Wᴴ W: the one N×N all-reduce
    assert result["report"].pop("with Newton-Schulz") == {"of weight size": 1}
    for name, measured in result["report"].items():
        assert measured["collectives"] >= 1, name  # it is sharded: there is communication to check
        assert measured["largest"] < n * n / 4, (name, measured)
        assert measured["error"] <= 1e-12, (name, measured)
