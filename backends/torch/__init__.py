"""PyTorch: the backend the core uses on torch tensors, the ``ProjUNN`` optimizer wrapper and initializers.

Importing :mod:`unitary_lowrank` never imports torch; a torch tensor reaching a
core function (or importing this module) does.

    ProjUNN(optimizer, rank=1, method="transport")   wrap any torch.optim optimizer
    unitary_groups(model, [weights], **options)      param groups with the unitary weights marked
    haar_, henaff_, cayley_                          unitary initializers (in place)
    OrthogonalRNN, UnitaryRNN, LSTMBaseline          recurrent layers for the paper's tasks
    UnitaryConv2d                                     orthogonal circular convolution, one unitary per frequency
    LipConvNet, certified_accuracy, lipschitz_bound  1-Lipschitz networks and their certificates
    lipschitz_margin_loss                             the margin loss certified training uses
    MaxMin, InvertibleDownsampling, FirstChannels, ZeroChannelPad   norm-1 layers
    CayleyConv2d, AOLConv2d                           baseline 1-Lipschitz convolutions
"""

from ._backend import BACKEND, TorchBackend, generator
from .baselines import AOLConv2d, CayleyConv2d
from .conv import UnitaryConv2d
from .init import cayley_, haar_, henaff_
from .layers import LSTMBaseline, ModReLU, OrthogonalRNN, UnitaryRNN
from .lipconvnet import LipConvNet
from .lipschitz import (
    FirstChannels,
    InvertibleDownsampling,
    LipschitzBound,
    MaxMin,
    ZeroChannelPad,
    certified_accuracy,
    layer_lipschitz,
    lipschitz_bound,
    lipschitz_margin_loss,
)
from .optim import DEFAULT_REORTHONORMALIZE_EVERY, ProjUNN, unitary_groups
from .resnet9 import ResNet9

__all__ = [
    "BACKEND",
    "DEFAULT_REORTHONORMALIZE_EVERY",
    "AOLConv2d",
    "CayleyConv2d",
    "FirstChannels",
    "InvertibleDownsampling",
    "LSTMBaseline",
    "LipConvNet",
    "LipschitzBound",
    "MaxMin",
    "ModReLU",
    "OrthogonalRNN",
    "ProjUNN",
    "ResNet9",
    "TorchBackend",
    "UnitaryConv2d",
    "UnitaryRNN",
    "ZeroChannelPad",
    "cayley_",
    "certified_accuracy",
    "generator",
    "haar_",
    "henaff_",
    "layer_lipschitz",
    "lipschitz_bound",
    "lipschitz_margin_loss",
    "unitary_groups",
]
