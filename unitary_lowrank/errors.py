"""Warnings and errors raised by :mod:`unitary_lowrank`."""

from __future__ import annotations

__all__ = ["NotUnitaryError", "SingularUpdateWarning"]


class SingularUpdateWarning(UserWarning):
    """``U + A Bᴴ`` is (numerically) singular: its closest unitary is not unique.

    The value returned is still a valid closest unitary (one polar factor), not NaN.
    """


class NotUnitaryError(ValueError):
    """``U`` was expected to be unitary (orthogonal) and is not.

    Pull it back with :func:`unitary_lowrank.reorthonormalize`.
    """
