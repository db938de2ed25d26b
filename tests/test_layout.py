"""The core speaks only the Array API; frameworks load only when their arrays show up."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import unitary_lowrank

CORE = pathlib.Path(unitary_lowrank.__file__).parent
# Modules that are tools around the core, allowed to use NumPy/SciPy directly.
TOOLS = {"cli.py", "verify.py", "__main__.py", "bench.py", "train.py"}
FORBIDDEN = {"numpy", "scipy", "torch", "jax", "jaxlib", "cupy"}


def imported_roots(path: pathlib.Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", sorted(p.name for p in CORE.glob("*.py") if p.name not in TOOLS))
def test_core_module_imports_no_framework(module):
    assert imported_roots(CORE / module) & FORBIDDEN == set()


def test_numpy_user_never_imports_torch_or_jax():
    code = (
        "import sys, numpy as np, unitary_lowrank as ul;"
        "U = ul.random_unitary(8, seed=0); A = np.ones((8, 1));"
        "ul.project(U, A, A); ul.transport(U, A, A); ul.sketch(U, 2, seed=0);"
        "print(sorted(m for m in ('torch', 'jax', 'cupy', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_backends_subpackage_is_installed():
    import numpy as np
    from unitary_lowrank.backends import backend_for
    from unitary_lowrank.backends.numpy import BACKEND

    assert backend_for(np.zeros((2, 2))) is BACKEND
