"""The peer harness (``benchmarks/peers.py``): every method starts from the task's weight, learns, and the
constrained ones stay on their manifold; the run records what the study reads.

Small sizes of the study's tasks, a few dozen steps each, one thread.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("geotorch")
pytest.importorskip("geoopt")

# appended, not first: benchmarks/ has a conftest.py of its own, which must not shadow the tests' (a spawned child
# of another test imports `conftest` by name)
sys.path.append(str(Path(__file__).parents[2] / "benchmarks"))
import peers  # noqa: E402

#: Small instances of each task kind (rank 64 needs min(n, p) ≥ 64).
#: The learning rates are moderate picks, not tuned to the test.
SMALL = {
    "rotation": lambda seed: peers.rotation(64, seed, batch=32),
    "unitary": lambda seed: peers.rotation(64, seed, complex=True, batch=32),
    "subspace": lambda seed: peers.subspace(128, 64, seed, batch=32),
    "adding": lambda seed: peers.adding(64, seed, T=8, batch=8),
}
RATES = {"adam": 1e-2, "sgd": 1.0}
RNN_RATES = {"adam": 1e-3, "sgd": 0.1}


def _cases():
    for kind in SMALL:
        for method, spec in peers.METHODS.items():
            if (spec.complex or kind != "unitary") and (spec.rectangular or kind != "subspace"):
                yield kind, method


def _constrained_weight(task):
    return getattr(task.model, task.weight_name).detach().clone()


@pytest.mark.parametrize(("kind", "method"), list(_cases()))
def test_method_starts_from_the_task_weight_and_keeps_the_constraint(kind, method):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    task = SMALL[kind](0)
    start = _constrained_weight(task)
    rates = RNN_RATES if kind == "adding" else RATES
    trainer = peers.METHODS[method].install(task, rates[peers.METHODS[method].optimizer], 0)
    # the same initial weight for every method: parametrizations are set to it through their right inverse
    assert torch.allclose(trainer.weight().detach(), start, atol=5e-6), method
    before = task.metric(task.model, "val")
    for _ in range(40):
        batch = next(task.batches)
        loss = trainer.step(lambda b=batch: task.loss(task.model, b))
        assert torch.isfinite(loss)
    after = task.metric(task.model, "val")
    assert after < before, (method, before, after)
    error = peers.unitarity_error(trainer.weight())
    if peers.METHODS[method].family == "reference":
        assert error > 1e-3  # unconstrained Adam leaves the manifold: the check can fail
    else:
        assert error < 1e-4, (method, error)


def test_supports_matches_what_the_methods_declare():
    assert not peers.supports("geotorch", "unitary-1024")
    assert not peers.supports("torch-householder", "unitary-1024")
    assert peers.supports("torch-cayley", "unitary-1024")
    assert peers.supports("projunn-k16", "subspace-4096x256")
    with pytest.raises(ValueError, match="does not run"):
        peers.run(peers.RunSpec("unitary-1024", "geoopt-adam", 1e-2, seconds=0.1))


def test_a_run_records_its_curve_time_memory_and_error(tmp_path, monkeypatch):
    monkeypatch.setitem(peers.TASKS, "rotation-64", SMALL["rotation"])
    out = tmp_path / "run.json"
    result = peers.run(peers.RunSpec("rotation-64", "projunn-k4", 1e-2, seconds=0.5, max_steps=30), out)
    stored = json.loads(out.read_text())
    assert stored["status"] == "ok" and stored["steps"] == result.steps == 30
    curve = stored["curve"]
    assert curve[0]["step"] == 0 and curve[0]["seconds"] == 0 and curve[-1]["step"] == 30
    assert all(a["seconds"] <= b["seconds"] and a["step"] < b["step"] for a, b in itertools.pairwise(curve))
    assert curve[-1]["test"] < curve[0]["test"]
    assert math.isclose(stored["seconds"], sum(stored["step_seconds"]), rel_tol=1e-9)
    assert stored["unitarity_error"] < 1e-5
    assert stored["peak_memory_mb"] >= 0 or math.isnan(stored["peak_memory_mb"])
    assert stored["metric_name"] == "relative test error" and stored["targets"]


def test_the_same_seed_gives_the_same_stream_and_start_for_every_method():
    first, second = SMALL["subspace"](3), SMALL["subspace"](3)
    assert torch.equal(_constrained_weight(first), _constrained_weight(second))
    for _ in range(3):
        assert torch.equal(next(first.batches)[0], next(second.batches)[0])
    assert not torch.equal(_constrained_weight(first), _constrained_weight(SMALL["subspace"](4)))


def test_the_subspace_metric_is_the_exact_excess_error():
    """At span(V) the excess is 0; the formula agrees with a Monte-Carlo estimate elsewhere."""
    torch.manual_seed(0)
    task = peers.subspace(32, 4, 0, noise=0.1)
    exact = task.metric(task.model, "test")
    W = task.model.weight.detach().double()
    x = torch.cat([next(task.batches)[0] for _ in range(400)], dim=1).double()  # 400 × 64 samples
    sampled = float((W @ (W.mT @ x) - x).pow(2).sum()) / x.shape[1]
    optimum, total = 0.1**2 * (32 - 4), float(torch.linspace(4.0, 1.0, 4).sum())
    assert abs((sampled - optimum) / total - exact) < 0.05 * exact
    with torch.no_grad():  # the planted basis (the task's stream 1) is optimal: no excess
        task.model.weight.copy_(peers._haar((32, 4), torch.float32, peers._seeded(0, 1)))
    assert abs(task.metric(task.model, "test")) < 1e-6


def test_the_haar_cache_returns_the_draw_it_replaces(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fresh = peers._haar((1024, 1024), torch.float32, peers._seeded(7, 2))  # large enough to be kept
    assert len(list(tmp_path.rglob("*.pt"))) == 1
    cached = peers._haar((1024, 1024), torch.float32, peers._seeded(7, 2))
    assert torch.equal(fresh, cached)
    assert not torch.equal(cached, peers._haar((1024, 1024), torch.float32, peers._seeded(7, 1)))


def test_the_report_tabulates_and_plots_the_runs_present(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import peer_report
    import peer_study

    monkeypatch.setitem(peers.TASKS, "rotation-64", SMALL["rotation"])
    for module in (peer_study, peer_report):
        monkeypatch.setattr(module, "OUT", tmp_path / "runs")
        monkeypatch.setattr(module, "PAGE", tmp_path / "peers.md")
        monkeypatch.setattr(module, "IMAGES", tmp_path / "img")
        monkeypatch.setattr(module, "BUDGETS", {"rotation-64": 0.3})
    monkeypatch.setattr(peer_report, "LARGE", ("rotation-64",))
    for method in ("projunn-k16", "torch-cayley"):
        path = tmp_path / "runs" / "study" / "rotation-64" / f"{method}-seed0.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        peers.run(peers.RunSpec("rotation-64", method, 1e-2, seconds=0.3, max_steps=40), path)
    peer_report.report()
    page = (tmp_path / "peers.md").read_text()
    assert (tmp_path / "img" / "peers-rotation-64.png").stat().st_size > 10_000
    assert "| projUNN, k = 16 | 0.01 (middle of the grid (no sweep))" in page  # the rate the run used
    assert "| rotation-64 | projUNN, k = 16 | torch orthogonal, cayley |" in page  # the comparison row


def test_same_component_puts_the_start_where_the_teacher_is():
    """O(n) has two components; the ``-so`` fits start in the teacher's, the plain ones wherever Haar put them.

    The teacher is recovered from a noiseless batch: ``y = W* x`` with ``x`` full rank (no noise draw).
    """

    def sign(M: torch.Tensor) -> float:
        return float(torch.linalg.det(M.double()).sign())

    signs = []
    for seed in range(4):
        plain, same = peers.rotation(32, seed, noise=0.0), peers.rotation(32, seed, noise=0.0, same_component=True)
        x, y = next(peers.rotation(32, seed, noise=0.0, batch=64).batches)
        teacher = torch.linalg.lstsq(x.T.double(), y.T.double()).solution.T
        assert sign(same.model.weight.detach()) == sign(teacher)
        assert same.name == "rotation-32-so" and plain.name == "rotation-32"
        different = sign(plain.model.weight.detach()) != sign(teacher)
        assert torch.equal(same.model.weight.detach()[:, 1:], plain.model.weight.detach()[:, 1:])
        signs.append(different)
    assert any(signs) and not all(signs)  # both cases occur among these seeds: the test sees a flip


def test_a_check_run_again_on_some_tasks_keeps_the_others_rows(tmp_path):
    import peer_study

    summary = tmp_path / "summary.json"
    assert peer_study.merged(summary, [{"task": "a", "ratio": 1.0}]) == [{"task": "a", "ratio": 1.0}]  # no file yet
    summary.write_text(json.dumps([{"task": "a", "ratio": 1.0}, {"task": "b", "ratio": 2.0}]))
    rows = peer_study.merged(summary, [{"task": "b", "ratio": 0.5}, {"task": "c", "ratio": 0.7}])
    assert rows == [{"task": "a", "ratio": 1.0}, {"task": "b", "ratio": 0.5}, {"task": "c", "ratio": 0.7}]
    summary.write_text(
        json.dumps([{"task": "a", "method": "x", "ratio": 1.0}, {"task": "a", "method": "y", "ratio": 2.0}])
    )
    rows = peer_study.merged(summary, [{"task": "a", "method": "y", "ratio": 3.0}])
    assert rows == [{"task": "a", "method": "x", "ratio": 1.0}, {"task": "a", "method": "y", "ratio": 3.0}]
