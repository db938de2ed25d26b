"""A missing optional dependency is named with the extra that installs it, not met as a bare ModuleNotFoundError."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Python that makes the named top-level packages not importable, as on a machine without them
HIDE = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Hide())
"""


@pytest.mark.parametrize(
    ("hidden", "module", "extra"),
    [
        ("torch", "unitary_lowrank.backends.torch", "torch"),
        ("jax", "unitary_lowrank.backends.jax", "jax"),
        ("optax", "unitary_lowrank.backends.jax.transform", "jax"),
    ],
)
def test_a_hidden_extra_is_named_with_its_install_line(hidden, module, extra):
    if hidden == "optax":  # the case of optax alone missing: jax itself must be there
        pytest.importorskip("jax")
    program = HIDE.format(names={hidden}) + f"import {module}"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: ")
    assert f'pip install "unitary-lowrank[{extra}]"' in last and hidden in last


def test_the_core_imports_without_any_extra():
    program = HIDE.format(names={"torch", "jax", "optax", "cupy"}) + (
        "import unitary_lowrank as ul; print(float(ul.unitarity_error(ul.random_unitary(8, seed=0))) < 1e-12)"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


@pytest.mark.parametrize(("hidden", "task"), [("tqdm", "copy"), ("matplotlib", "adding"), ("mlxtend", "pmnist")])
def test_train_names_the_experiments_extra_in_one_line(hidden, task):
    pytest.importorskip("torch")
    program = HIDE.format(names={hidden}) + (
        f"import sys; from unitary_lowrank.cli import main; sys.exit(main(['train', {task!r}, '--preset', 'quick']))"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and hidden in lines[0], result.stderr
    assert 'pip install "unitary-lowrank[experiments]"' in lines[0]
