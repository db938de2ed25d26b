"""PyTorch: the backend the core uses on torch tensors, the ``ProjUNN`` optimizer, and the layers users compose.

Importing :mod:`unitary_lowrank` never imports torch; a torch tensor reaching a
core function imports :mod:`._backend` only. Everything else here loads on
first use (PEP 562), so finding the backend imports no optimizer, layer or model.

    ProjUNN(optimizer, rank=1, method="transport")   wrap any torch.optim optimizer     (.optim)
    unitary_groups(model, [weights], **options)      param groups, unitary ones marked   (.optim)
    haar_, henaff_, cayley_                          unitary initializers (in place)     (.init)
    OrthogonalRNN, UnitaryRNN, ModReLU               recurrent layers, unitary weight    (.layers)
    UnitaryConv2d                                     orthogonal circular convolution     (.conv)
    MaxMin, InvertibleDownsampling, FirstChannels, ZeroChannelPad   norm-1 layers        (.lipschitz)
    lipschitz_bound, layer_lipschitz, certified_accuracy, lipschitz_margin_loss           (.lipschitz)
    oplog.operators                                  the aten operators a call issues    (.oplog)

The paper's study models live with the experiments, in
:mod:`unitary_lowrank.tasks.models` (``LipConvNet``, ``ResNet9``, the baselines
``CayleyConv2d``, ``AOLConv2d`` and ``LSTMBaseline``); they stay importable
from here too.
"""

from __future__ import annotations

from typing import Any

from .. import require_extra

require_extra("torch", "torch", "unitary_lowrank.backends.torch")

from ._backend import BACKEND, TorchBackend, generator  # noqa: E402

#: name → the module that defines it (in this package, or with the experiments), imported on first use
_LAZY = {
    **dict.fromkeys(("DEFAULT_REORTHONORMALIZE_EVERY", "ProjUNN", "unitary_groups"), "optim"),
    **dict.fromkeys(("cayley_", "haar_", "henaff_"), "init"),
    **dict.fromkeys(("ModReLU", "OrthogonalRNN", "UnitaryRNN"), "layers"),
    "UnitaryConv2d": "conv",
    **dict.fromkeys(
        (
            "FirstChannels",
            "InvertibleDownsampling",
            "LipschitzBound",
            "MaxMin",
            "ZeroChannelPad",
            "certified_accuracy",
            "layer_lipschitz",
            "lipschitz_bound",
            "lipschitz_margin_loss",
        ),
        "lipschitz",
    ),
    **dict.fromkeys(("AOLConv2d", "CayleyConv2d"), "models.baselines"),
    "LSTMBaseline": "models.lstm",
    "LipConvNet": "models.lipconvnet",
    "ResNet9": "models.resnet9",
}

__all__ = ["BACKEND", "TorchBackend", "generator", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _module(where)
    value = getattr(module, name)
    globals()[name] = value  # found once: later lookups are plain attribute reads
    return value


def _module(where: str) -> Any:
    """The module behind a lazy name: ``import`` statements, which torch.compile can follow (importlib it cannot)."""
    if where == "optim":
        from . import optim

        return optim
    if where == "init":
        from . import init

        return init
    if where == "layers":
        from . import layers

        return layers
    if where == "conv":
        from . import conv

        return conv
    if where == "lipschitz":
        from . import lipschitz

        return lipschitz
    if where == "models.baselines":
        from ...tasks.models import baselines

        return baselines
    if where == "models.lstm":
        from ...tasks.models import lstm

        return lstm
    if where == "models.lipconvnet":
        from ...tasks.models import lipconvnet

        return lipconvnet
    from ...tasks.models import resnet9

    return resnet9


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
