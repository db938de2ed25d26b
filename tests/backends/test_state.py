"""``ProjUNN.load_state_dict`` refuses state that does not fit, before it touches anything.

Each case saves the state of one optimizer and loads it into another that
differs in one way (an option, a shape, a dtype, a parameter count, a damaged
entry); the load must raise one ``ValueError`` that names the mismatch, and
the target's own state (base optimizer, step counts, bases, buffers, learning
rates) must be exactly what it was.
"""

from __future__ import annotations

import copy

import pytest
from conftest import tree_equal

torch = pytest.importorskip("torch")

from unitary_lowrank.backends.torch import ProjUNN, haar_  # noqa: E402


def trained(n: int = 8, dtype=torch.float64, extra: bool = False, groups: int = 2, **options) -> ProjUNN:
    """A ProjUNN(Adam) over a unitary n×n weight (and a bias), after two steps."""
    generator = torch.Generator().manual_seed(n)
    W = torch.nn.Parameter(haar_(torch.empty(n, n, dtype=dtype), generator=generator))
    b = torch.nn.Parameter(torch.zeros(n, dtype=dtype))
    unitary = [W] + ([torch.nn.Parameter(haar_(torch.empty(n, n, dtype=dtype), generator=generator))] if extra else [])
    param_groups = [{"params": unitary, "unitary": True}] if groups == 1 else [
        {"params": [b]},
        {"params": unitary, "unitary": True},
    ]  # fmt: skip
    opt = ProjUNN(torch.optim.Adam(param_groups, lr=1e-2), **{"rank": 2, **options})
    for _ in range(2):
        opt.zero_grad()
        loss = sum((p.sum() - 1) ** 2 for group in param_groups for p in group["params"])
        loss.backward()
        opt.step()
    return opt


SAVED = {"sketch": "subspace", "error_feedback": True}


def damaged_basis(state):
    state["projunn"]["bases"][1] = state["projunn"]["bases"][1][:-1]
    return state


def foreign_basis_dtype(state):
    state["projunn"]["bases"][1] = state["projunn"]["bases"][1].to(torch.float32)
    return state


CASES = [  # (what differs, the target's settings, a change made to the saved state, the message)
    ("rank", {**SAVED, "rank": 3}, None, r"rank=2 there, 3 here"),
    ("method", {**SAVED, "method": "project"}, None, r"method='transport' there, 'project' here"),
    ("retraction", {**SAVED, "retraction": "cayley"}, None, r"retraction='exp' there, 'cayley' here"),
    ("sketch", {"error_feedback": True}, None, r"sketch='subspace' there, 'randomized' here"),
    ("error feedback", {"sketch": "subspace"}, None, r"error_feedback=True there, False here"),
    ("shape", {**SAVED, "n": 6}, None, r"'exp_avg' of parameter #0 has shape \(8,\), the parameter \(6,\)"),
    ("parameter count", {**SAVED, "extra": True}, None, r"param_groups\[1\] holds 1 parameters there, 2 here"),
    ("group count", {**SAVED, "groups": 1}, None, r"it holds 2 param groups, this optimizer 1"),
    ("a damaged basis", SAVED, damaged_basis, r"the basis of parameter #1 has shape \(7, 2\)"),
    (
        "a basis of another dtype",
        SAVED,
        foreign_basis_dtype,
        r"dtype torch.float32; expected \(8, 2\) and torch.float64",
    ),
    ("a plain optimizer's state", SAVED, lambda s: s["base"], r"expected the dict that ProjUNN.state_dict\(\) returns"),
    ("no options", SAVED, lambda s: {**s, "projunn": {"steps": {}}}, r"lacks the step counts or the options"),
]


def snapshot(opt: ProjUNN):
    return copy.deepcopy(opt.state_dict()), [dict(g, params=None) for g in opt.param_groups], opt.options


@pytest.mark.parametrize(("what", "target_settings", "damage", "message"), CASES, ids=[case[0] for case in CASES])
def test_a_state_that_does_not_fit_is_refused_and_nothing_changes(what, target_settings, damage, message):
    state = trained(**SAVED).state_dict()
    if damage is not None:
        state = damage(state)
    target = trained(**target_settings)
    before = snapshot(target)
    with pytest.raises(ValueError, match=message) as raised:
        target.load_state_dict(state)
    assert str(raised.value).startswith("ProjUNN.load_state_dict: ") and "\n" not in str(raised.value)
    assert tree_equal(snapshot(target), before), what


def test_a_state_that_fits_loads_and_the_run_continues_bit_for_bit():
    straight = trained(**SAVED)
    resumed = trained(**SAVED)
    resumed.load_state_dict(copy.deepcopy(straight.state_dict()))
    weights = [[p for g in opt.param_groups for p in g["params"]] for opt in (straight, resumed)]
    with torch.no_grad():
        for mine, theirs in zip(*weights, strict=True):
            theirs.copy_(mine)
    for opt, params in zip((straight, resumed), weights, strict=True):
        opt.zero_grad()
        sum((p.sum() - 1) ** 2 for p in params).backward()
        opt.step()
    for mine, theirs in zip(*weights, strict=True):
        assert torch.equal(mine, theirs)
    assert tree_equal(straight.state_dict(), resumed.state_dict())
