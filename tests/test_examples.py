"""Every module's docstring examples run and print what they show: the core, the backends, the tasks and the CLI.

Each module is imported by its installed name (``unitary_lowrank.backends.torch.optim``,
not the folder it lives in), so the examples see the package a user imports. A
module whose optional dependency is missing is skipped, naming it.
"""

from __future__ import annotations

import doctest
import importlib
import pathlib

import pytest
import unitary_lowrank.backends

import unitary_lowrank

#: what an example's missing import means: the optional dependency that is absent
_OPTIONAL = {"torch", "jax", "jaxlib", "optax", "cupy", "matplotlib", "tqdm", "mlxtend", "PIL"}


def _module_names() -> list[str]:
    names = []
    for package in (unitary_lowrank, unitary_lowrank.backends):
        root = pathlib.Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[0] == "backends" and package is unitary_lowrank:
                continue  # an installed copy inside the package folder, if any: found through the backends package
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join((package.__name__, *parts)))
    return sorted(set(names))


MODULES = _module_names()


def test_the_walk_finds_every_layer():
    """The examples of the core, every backend, the tasks and the CLI are collected (a walk finding none would pass)."""
    for expected in (
        "unitary_lowrank.project",
        "unitary_lowrank.backends.torch.optim",
        "unitary_lowrank.backends.jax.transform",
        "unitary_lowrank.backends.cupy",
        "unitary_lowrank.tasks.train_rnn",
        "unitary_lowrank.tasks.models.lipconvnet",
        "unitary_lowrank.cli.train",
    ):
        assert expected in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        missing = (err.name or "").split(".")[0]
        if missing in _OPTIONAL:
            pytest.skip(f"could not import {missing!r}: {err}")
        raise
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
