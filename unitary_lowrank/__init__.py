"""Orthogonal and unitary weights trained at O(k N²) per step: the projUNN method.

The core is written against the Array API: the same functions run on NumPy,
``array_api_strict``, CuPy, torch and JAX arrays, real (orthogonal) or complex
(unitary), with leading batch axes.

    project(U, A, B)      projUNN-D: closest unitary to U + A Bᴴ
    transport(U, A, B)    projUNN-T: U · exp(skew(Uᴴ A Bᴴ))
    sketch(G, rank)       (A, B) with G ≈ A Bᴴ
    polar(M)              dense closest unitary by SVD (O(N³) reference)
    unitarity_error(U)    max |Uᴴ U − I|
    random_unitary(n)     Haar-distributed unitary / orthogonal matrices
    reorthonormalize(U)   pull a drifted U back onto the manifold
    device_resident()     run steps with no host round trip (Jacobi cores), as on a captured GPU

Framework adapters: :mod:`unitary_lowrank.backends.torch` (``torch.optim``
wrapper) and :mod:`unitary_lowrank.backends.jax` (optax transformation).
"""

from . import _source_tree  # noqa: F401  (first: in a source tree, unitary_lowrank.backends is ../backends)
from ._placement import device_resident
from .errors import NotUnitaryError, SingularUpdateWarning
from .haar import random_unitary
from .polar import polar
from .project import project
from .sketch import sketch
from .transport import transport
from .unitarity import reorthonormalize, unitarity_error

__version__ = "0.1.0"

__all__ = [
    "NotUnitaryError",
    "SingularUpdateWarning",
    "__version__",
    "device_resident",
    "polar",
    "project",
    "random_unitary",
    "reorthonormalize",
    "sketch",
    "transport",
    "unitarity_error",
]
