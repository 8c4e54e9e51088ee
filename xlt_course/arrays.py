"""Checks shared by the embedding modules: 2-D float32 matrices, unit rows, a valid ``k``.

Used by :mod:`xlt_course.retrieval`, :mod:`xlt_course.procrustes` and
:mod:`xlt_course.unsupervised_alignment`, so that bad input gets the same clear error in each.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_matrix(X: Any, name: str) -> np.ndarray:
    """Return ``X`` as a 2-D float32 array, raising ValueError on bad shape or NaN/inf."""
    A = np.asarray(X)
    if A.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows are vectors), got shape {A.shape}")
    if A.dtype != np.float32:
        A = A.astype(np.float32)
    if not np.isfinite(A).all():
        bad = int((~np.isfinite(A)).any(axis=1).sum())
        raise ValueError(
            f"{name} has {bad} row(s) containing NaN or inf (shape {A.shape}): clean or drop them"
        )
    return A


def check_k(k: int, n_rows: int, what: str) -> None:
    """Raise ValueError unless ``k`` is a positive integer no larger than ``n_rows`` (of ``what``)."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n_rows:
        raise ValueError(f"k={k} is larger than the number of {what} ({n_rows}): use k <= {n_rows}")


def unit_rows(A: np.ndarray, name: str) -> np.ndarray:
    """Return a unit-length copy of the rows of ``A`` (float32); zero rows are an error."""
    norms = np.linalg.norm(A, axis=1)
    zero = int((norms == 0).sum())
    if zero:
        raise ValueError(
            f"{name} has {zero} zero row(s) (shape {A.shape}): their cosine is undefined; "
            "drop them before aligning"
        )
    if np.abs(norms - 1.0).max(initial=0.0) < 1e-5:
        return A
    return (A / norms[:, None]).astype(np.float32, copy=False)
