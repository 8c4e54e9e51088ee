"""Friendly self-checks for the visible test cells of the lessons.

Each helper raises :class:`CheckFailed` (an ``AssertionError``, so nbgrader counts it as a
failed test) with a message that says what is wrong and how to look for the bug, never what
the answer is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class CheckFailed(AssertionError):
    """A visible self-check failed; the message is meant for the student."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`CheckFailed` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a student's function, turning the stub's NotImplementedError into advice.

    Returns:
        Whatever ``fn`` returns.
    """
    name = getattr(fn, "__name__", "your function")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(
            f"`{name}` is not implemented yet: replace `raise NotImplementedError()` "
            "with your code, run that cell, then run this check again."
        ) from None


_PLAIN = frozenset({int, float, complex, bool, str, bytes, type(None), *np.sctypeDict.values()})


def _plain(x: Any, depth: int = 0) -> bool:
    # exact types (numpy's scalars by identity, not by a module name a class can claim): a
    # subclass of float or an object of the student's own class can make every comparison
    # come out true
    if type(x) in _PLAIN:
        return True
    if type(x) in (list, tuple) and depth < 3:
        return all(_plain(v, depth + 1) for v in x)
    return type(x) is np.ndarray and x.dtype != object


def to_numpy(value: Any) -> np.ndarray:
    """Return ``value`` (numpy array, torch tensor, list) as a numpy array.

    Raises:
        CheckFailed: when ``value`` is None (a function without ``return``).
        TypeError: when the array would hold objects other than numbers and strings (an
            object that compares equal to anything is not an answer).
    """
    check(value is not None, "the result is None: did you forget a `return`?")
    if hasattr(value, "detach"):  # a torch tensor, accepted as a correct variant
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == object and not all(_plain(x) for x in arr.flat):
        kinds = sorted({type(x).__name__ for x in arr.flat if not _plain(x)})
        raise TypeError(f"expected numbers, got objects of type {', '.join(kinds[:3])}")
    return arr


def to_tensor(value: Any) -> Any:
    """Return ``value`` as a plain ``torch.Tensor``, still attached to its autograd graph.

    A subclass of ``torch.Tensor`` can answer ``torch.allclose`` or ``torch.equal`` itself
    (``__torch_function__``); its data, seen as a plain tensor, cannot. Anything else
    (an array, a list) goes through :func:`to_numpy`.

    Raises:
        CheckFailed: when ``value`` is None (a function without ``return``).
        TypeError: as :func:`to_numpy`.

    Used in: the hidden tests of lessons 06 and 09.
    """
    import torch

    check(value is not None, "the result is None: did you forget a `return`?")
    if not isinstance(value, torch.Tensor):
        return torch.from_numpy(np.array(to_numpy(value)))
    if type(value) in (torch.Tensor, torch.nn.Parameter):
        return value
    with torch._C.DisableTorchFunctionSubclass():
        return torch.Tensor.as_subclass(value, torch.Tensor)


def check_array(
    value: Any,
    shape: Sequence[int] | None = None,
    *,
    name: str = "the result",
    finite: bool = True,
    shape_hint: str = "Check which axis you sum or multiply over.",
) -> np.ndarray:
    """Check that ``value`` is an array (numpy or torch) of ``shape`` with finite entries.

    Args:
        shape_hint: what to look at when the shape is wrong (the default suits reductions).

    Returns:
        The value as a numpy array, for further checks.
    """
    check(value is not None, f"{name} is None: did you forget a `return`?")
    try:
        arr = to_numpy(value)
    except Exception:  # noqa: BLE001 - any failure means "not an array"
        raise CheckFailed(f"{name} should be an array, got {type(value).__name__}.") from None
    check(
        arr.dtype != object,
        f"{name} should be a numeric array, got an array of Python objects.",
    )
    if shape is not None:
        check(
            arr.shape == tuple(shape),
            f"{name} has shape {arr.shape}, expected {tuple(shape)}. {shape_hint}".strip(),
        )
    if finite:
        check(
            bool(np.isfinite(arr).all()),
            f"{name} contains NaN or inf: look for a division by zero or a log of 0.",
        )
    return arr


def check_close(
    actual: Any,
    expected: Any,
    *,
    name: str = "the result",
    atol: float = 1e-5,
    rtol: float = 1e-4,
    hint: str = "",
) -> None:
    """Check that ``actual`` matches ``expected`` numerically without printing ``expected``."""
    a = check_array(actual, np.shape(expected), name=name)
    ok = np.allclose(a, np.asarray(expected, dtype=np.float64), atol=atol, rtol=rtol)
    check(ok, f"{name} has the right shape but not the right values. {hint}".strip())


def check_between(value: float, low: float, high: float, *, name: str, hint: str = "") -> None:
    """Check that a scalar lies in ``[low, high]``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"{name} should be a number, got {type(value).__name__}.") from None
    check(low <= v <= high, f"{name} = {v:.4g} is outside [{low}, {high}]. {hint}".strip())


def passed(what: str) -> None:
    """Print the message a student sees when every visible check of an exercise passes."""
    print(f"✓ {what}: the visible checks pass. Hidden tests run when the lesson is graded.")
