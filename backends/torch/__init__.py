"""PyTorch: the backend the core uses on torch tensors, the ``ProjUNN`` optimizer wrapper and initializers.

Importing :mod:`unitary_lowrank` never imports torch; a torch tensor reaching a
core function (or importing this module) does.

    ProjUNN(optimizer, rank=1, method="transport")   wrap any torch.optim optimizer
    unitary_groups(model, [weights], **options)      param groups with the unitary weights marked
    haar_, henaff_, cayley_                          unitary initializers (in place)
    OrthogonalRNN, UnitaryRNN, LSTMBaseline          recurrent layers for the paper's tasks
    UnitaryConv2d                                     orthogonal circular convolution, one unitary per frequency
"""

from ._backend import BACKEND, TorchBackend, generator
from .conv import UnitaryConv2d
from .init import cayley_, haar_, henaff_
from .layers import LSTMBaseline, ModReLU, OrthogonalRNN, UnitaryRNN
from .optim import DEFAULT_REORTHONORMALIZE_EVERY, ProjUNN, unitary_groups

__all__ = [
    "BACKEND",
    "DEFAULT_REORTHONORMALIZE_EVERY",
    "LSTMBaseline",
    "ModReLU",
    "OrthogonalRNN",
    "ProjUNN",
    "TorchBackend",
    "UnitaryConv2d",
    "UnitaryRNN",
    "cayley_",
    "generator",
    "haar_",
    "henaff_",
    "unitary_groups",
]
