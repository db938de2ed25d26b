"""CIFAR-10 from files on disk: the official ``cifar-10-batches-py`` format, or a class-folder JPEG archive.

No download: users point :func:`load_cifar10` at what they have.

- the official Python release: a directory holding ``data_batch_1`` … ``data_batch_5``
  and ``test_batch`` (pickled dicts of ``data``, N×3072 uint8 in channel-major
  order, and ``labels``), the folder above it, or its ``cifar-10-python.tar.gz``;
- a class-folder archive of images, ``*/train/<class>/*.jpg`` and
  ``*/test/<class>/*.jpg`` (as ``../shared/data/cifar10-jpeg.tar.gz`` in this
  project's checkout), packed (.tar.gz) or extracted.

Decoded arrays are cached as one ``.npz`` per source (decoding 60,000 JPEGs
takes 20–40 s on 2 cores), keyed by the source's path, size and modification time.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["CLASSES", "Cifar10", "DataError", "load_cifar10"]

#: Class names; a label is the index in this tuple (the official order).
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DataError(ValueError):
    """The files given are not CIFAR-10 in a layout this module reads."""


class Cifar10(NamedTuple):
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64, train and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_cifar10(path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> Cifar10:
    """Read CIFAR-10 from ``path`` (see the module docstring for the accepted layouts), through the cache.

    Parameters
    ----------
    path : path
        The official batches (directory or .tar.gz) or a class-folder image archive (directory or .tar.gz).
    cache_dir : path, optional
        Where decoded arrays are kept; default ``$XDG_CACHE_HOME/unitary_lowrank`` (``~/.cache/unitary_lowrank``).
        Pass ``False``-like ``""`` to read without caching.
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise FileNotFoundError(
            f"CIFAR-10: {source} does not exist; pass the cifar-10-batches-py directory (or its .tar.gz) or a "
            "class-folder image archive"
        )
    cache = _cache_file(source, cache_dir)
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            return Cifar10(*(stored[name] for name in Cifar10._fields))
    try:
        data = _read(source)
    except (tarfile.TarError, pickle.UnpicklingError, EOFError, KeyError, OSError) as err:
        raise DataError(f"CIFAR-10: cannot read {source} ({type(err).__name__}: {err})") from err
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".partial.npz")
        np.savez(partial, **data._asdict())
        partial.replace(cache)  # a killed run leaves no half-written cache behind
    return data


def _cache_file(source: Path, cache_dir: str | os.PathLike | None) -> Path | None:
    if cache_dir == "":
        return None
    root = (
        Path(cache_dir)
        if cache_dir is not None
        else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "unitary_lowrank"
    )
    stat = source.stat()
    newest = max((p.stat().st_mtime_ns for p in source.glob("*")), default=0) if source.is_dir() else 0
    key = hashlib.sha256(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{newest}".encode()).hexdigest()[:16]
    return root / f"cifar10-{key}.npz"


def _read(source: Path) -> Cifar10:
    if source.is_dir():
        batches = _find_batches_dir(source)
        if batches is not None:
            return _from_batches({p.name: p.read_bytes() for p in batches.iterdir() if p.is_file()})
        return _from_images(_image_files_in_dir(source))
    with tarfile.open(source) as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
        names = {Path(m.name).name for m in members}
        if "test_batch" in names and any(n.startswith("data_batch_") for n in names):
            return _from_batches({Path(m.name).name: _member_bytes(archive, m) for m in members})
        files = {}
        for m in members:
            split_class = _split_and_class(Path(m.name))
            if split_class is not None:
                files[m.name] = (split_class, _member_bytes(archive, m))
        return _from_images(files)


def _member_bytes(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The bytes of a regular file of the archive."""
    handle = archive.extractfile(member)
    if handle is None:  # a member that is not a regular file (getmembers was filtered to files)
        raise ValueError(f"CIFAR-10 archive: {member.name} is not a regular file")
    return handle.read()


def _find_batches_dir(root: Path) -> Path | None:
    for candidate in (root, root / "cifar-10-batches-py"):
        if (candidate / "test_batch").is_file() and any(candidate.glob("data_batch_*")):
            return candidate
    return None


def _from_batches(files: dict[str, bytes]) -> Cifar10:
    def read(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for name in names:
            batch = pickle.loads(files[name], encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)

    train = sorted((n for n in files if n.startswith("data_batch_")), key=lambda n: int(n.rsplit("_", 1)[1]))
    return Cifar10(*read(train), *read(["test_batch"]))


def _split_and_class(path: Path) -> tuple[str, int] | None:
    """('train' or 'test', label) for ``…/<split>/<class>/<file>`` image paths; None for anything else."""
    parts = path.parts
    if len(parts) < 3 or path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return None
    split, name = parts[-3], parts[-2]
    if split not in ("train", "test") or name not in CLASSES:
        return None
    return split, CLASSES.index(name)


def _image_files_in_dir(root: Path) -> dict[str, tuple[tuple[str, int], bytes]]:
    files = {}
    for path in root.rglob("*"):
        split_class = _split_and_class(path.relative_to(root))
        if split_class is not None and path.is_file():
            files[str(path.relative_to(root))] = (split_class, path.read_bytes())
    if not files:
        raise DataError(
            f"CIFAR-10: {root} holds neither the official batches (data_batch_1 …, test_batch) nor images in "
            "train/<class>/ and test/<class>/ folders"
        )
    return files


def _from_images(files: dict[str, tuple[tuple[str, int], bytes]]) -> Cifar10:
    from PIL import Image

    if not files:
        raise DataError("CIFAR-10: the archive holds neither the official batches nor train/<class>/ images")
    out: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "test": ([], [])}
    for name in sorted(files, key=lambda n: (files[n][0][1], n)):  # by class, then file name: a fixed order
        (split, label), payload = files[name]
        with Image.open(io.BytesIO(payload)) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        if pixels.shape != (32, 32, 3):
            raise DataError(f"CIFAR-10: {name} is {pixels.shape[1]}×{pixels.shape[0]}, not 32×32")
        out[split][0].append(pixels)
        out[split][1].append(label)

    def stack(split: str) -> tuple[np.ndarray, np.ndarray]:
        images, labels = out[split]
        if not images:
            return np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64)
        return np.stack(images), np.asarray(labels, dtype=np.int64)

    return Cifar10(*stack("train"), *stack("test"))
