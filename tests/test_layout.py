"""The layout that is: layers import downwards only, no import cycle, frameworks load only when their arrays show up.

The import graph is built from the sources with ``ast``, imports inside
functions included; an import names the deepest module it reaches (``from
.torch._backend import BACKEND`` is an edge to ``backends.torch._backend``, not
to the ``backends.torch`` package), and a module's own ancestors, which Python
initializes before it anyway, are not edges.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest
import unitary_lowrank.backends

import unitary_lowrank

PACKAGE = pathlib.Path(unitary_lowrank.__file__).parent
BACKENDS = pathlib.Path(unitary_lowrank.backends.__file__).parent
FORBIDDEN = {"numpy", "scipy", "torch", "jax", "jaxlib", "cupy", "optax"}


def _sources() -> dict[str, pathlib.Path]:
    """Installed module name → source file, for the library and its backends."""
    found = {}
    for package, root in (("unitary_lowrank", PACKAGE), ("unitary_lowrank.backends", BACKENDS)):
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if package == "unitary_lowrank" and parts[0] == "backends":
                continue
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join((package, *parts))] = path
    return found


SOURCES = _sources()


def _imports(name: str, path: pathlib.Path) -> set[str]:
    """The library modules that ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in SOURCES:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name and not name.startswith(candidate + "."):
                targets.add(candidate)
    return targets


GRAPH = {name: _imports(name, path) for name, path in SOURCES.items()}


def _layer(name: str) -> int:
    """0 backend classes, 1 the core, 2 adapters and layers, 3 the experiments, 4 the command line."""
    backend_classes = {"_base", "numpy", "cupy", "torch._backend", "jax._backend"}
    if name == "unitary_lowrank.backends" or name.removeprefix("unitary_lowrank.backends.") in backend_classes:
        return 0
    if name.startswith("unitary_lowrank.backends."):
        return 2
    if name.startswith("unitary_lowrank.tasks"):
        return 3
    if name.startswith("unitary_lowrank.cli") or name == "unitary_lowrank.__main__":
        return 4
    return 1


#: The one upward import: the torch package re-exports the study models lazily, at the paths users had before
#: they moved to the experiments (PEP 562; finding the backend does not run it)
LAZY_RE_EXPORTS = {("unitary_lowrank.backends.torch", target) for target in GRAPH["unitary_lowrank.backends.torch"]}
LAZY_RE_EXPORTS = {(a, b) for a, b in LAZY_RE_EXPORTS if b.startswith("unitary_lowrank.tasks.models")}


def test_the_graph_sees_every_layer_and_function_level_imports():
    """A graph that misses modules or imports inside functions would pass anything."""
    assert {_layer(name) for name in SOURCES} == {0, 1, 2, 3, 4}
    assert "unitary_lowrank.backends.torch._backend" in GRAPH["unitary_lowrank.backends"]  # inside backend_for
    assert "unitary_lowrank.tasks.models.lipconvnet" in GRAPH["unitary_lowrank.backends.torch"]  # in __getattr__


def test_no_import_cycle():
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycles.append(" → ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_layers_import_downwards_only():
    upward = [
        f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
        for name, targets in GRAPH.items()
        for target in targets
        if _layer(target) > _layer(name) and (name, target) not in LAZY_RE_EXPORTS
    ]
    assert upward == []
    assert len(LAZY_RE_EXPORTS) == 5  # the models package and its baselines, lstm, lipconvnet, resnet9


@pytest.mark.parametrize("name", sorted(n for n in SOURCES if _layer(n) == 1))
def test_core_module_imports_no_framework(name):
    """The core speaks only the Array API (through array_api_compat); the backends hold the framework code."""
    roots = set()
    for node in ast.walk(ast.parse(SOURCES[name].read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    assert roots & FORBIDDEN == set()


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.split()


def test_numpy_user_never_imports_torch_or_jax():
    code = (
        "import sys, numpy as np, unitary_lowrank as ul;"
        "U = ul.random_unitary(8, seed=0); A = np.ones((8, 1));"
        "ul.project(U, A, A); ul.transport(U, A, A); ul.sketch(U, 2, seed=0);"
        "print(*sorted(m for m in ('torch', 'jax', 'cupy', 'optax') if m in sys.modules))"
    )
    assert _loaded_after(code) == []


def test_finding_the_torch_backend_loads_no_model_layer_or_optimizer():
    """``import unitary_lowrank.backends.torch`` and a transport on tensors load the backend class only."""
    pytest.importorskip("torch")
    code = (
        "import sys, torch, unitary_lowrank as ul, unitary_lowrank.backends.torch;"
        "U = torch.eye(8, dtype=torch.float64); A = torch.ones(8, 1, dtype=torch.float64);"
        "ul.transport(U, A, A); ul.project(U, A, A); ul.sketch(U, 2, seed=0);"
        "print(*sorted(m for m in sys.modules if m.startswith(('unitary_lowrank.backends.torch.', "
        "'unitary_lowrank.tasks', 'unitary_lowrank.cli'))))"
    )
    assert _loaded_after(code) == ["unitary_lowrank.backends.torch._backend"]


def test_finding_the_jax_backend_loads_no_optax():
    pytest.importorskip("jax")
    code = (
        "import sys, jax.numpy as jnp, unitary_lowrank as ul;"
        "U = jnp.eye(8); A = jnp.ones((8, 1)); ul.transport(U, A, A); ul.sketch(U, 2, seed=0);"
        "print(*sorted(m for m in sys.modules if m.startswith(('optax', 'unitary_lowrank.backends.jax.'))))"
    )
    assert _loaded_after(code) == ["unitary_lowrank.backends.jax._backend"]


def test_study_models_stay_importable_from_the_torch_backend():
    """Every name ``unitary_lowrank.backends.torch`` exported before the models moved still imports from there."""
    pytest.importorskip("torch")
    import unitary_lowrank.backends.torch as torch_backend

    from unitary_lowrank.tasks.models.lipconvnet import LipConvNet

    assert torch_backend.LipConvNet is LipConvNet
    for name in torch_backend.__all__:
        assert getattr(torch_backend, name) is not None


def test_backends_subpackage_is_installed():
    import numpy as np
    from unitary_lowrank.backends import backend_for
    from unitary_lowrank.backends.numpy import BACKEND

    assert backend_for(np.zeros((2, 2))) is BACKEND
