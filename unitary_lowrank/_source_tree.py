"""``unitary_lowrank.backends`` when the package is imported from a source tree rather than installed.

Installed (a wheel, or ``pip install -e``), the backends are the subpackage
``unitary_lowrank/backends``. In a checkout or an unpacked sdist they live in
the top-level folder ``backends/``, beside ``unitary_lowrank/``; ``python -m
pytest`` there puts the tree first on ``sys.path``, so ``unitary_lowrank`` is
this folder, and its ``backends`` would not be found. Here that folder is
registered under its installed name, before anything imports it. Nothing
happens when the package is installed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "unitary_lowrank.backends"
_HERE = Path(__file__).resolve().parent
_BESIDE = _HERE.parent / "backends"

if (
    _NAME not in sys.modules
    and not (_HERE / "backends" / "__init__.py").exists()
    and (_BESIDE / "__init__.py").exists()
    and importlib.util.find_spec(_NAME) is None  # no installed (or editable) mapping found it
):
    _spec = importlib.util.spec_from_file_location(
        _NAME, _BESIDE / "__init__.py", submodule_search_locations=[str(_BESIDE)]
    )
    if _spec is not None and _spec.loader is not None:
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_NAME] = _module
        _spec.loader.exec_module(_module)
        sys.modules["unitary_lowrank"].backends = _module  # type: ignore[attr-defined]  # as an import would set it
