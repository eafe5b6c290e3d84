"""Coercion and validation of (gold, predicted) score arrays shared by every statistic.

Conventions (documented once here, used by every public function of :mod:`noisyclip_metrics.evaluation.stats`):

- ``gold`` and ``pred`` are array-likes of the same shape, 1-D (one group) or 2-D (rows are groups, e.g. prompts;
  columns are the items compared within a group, e.g. generators or candidate images).
- ``NaN`` (or ``None`` in a list / object array) marks a missing score. An item is used only when *both* its gold and
  its predicted score are present.
- Scores must be real numbers: strings, complex numbers and infinities are rejected with :class:`InputError`.
- A row with fewer than two usable items carries no information and is skipped. If no row has two usable items the
  statistic is undefined and :class:`InputError` is raised.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from noisyclip_metrics.errors import InputError

__all__ = ["ScoreMatrix", "as_score_matrix"]


class ScoreMatrix:
    """Validated gold / predicted scores as float64 matrices with missing items set to NaN in both.

    Attributes:
        gold: (R, M) float64 array.
        pred: (R, M) float64 array.
        valid: (R, M) boolean array, True where both scores are present.
        one_d: whether the caller passed 1-D arrays (then R == 1).
    """

    __slots__ = ("gold", "one_d", "pred", "valid")

    def __init__(self, gold: np.ndarray, pred: np.ndarray, valid: np.ndarray, one_d: bool) -> None:
        self.gold = gold
        self.pred = pred
        self.valid = valid
        self.one_d = one_d

    @property
    def counts(self) -> np.ndarray:
        """Number of usable items per row, shape (R,)."""
        return self.valid.sum(axis=1)


def _to_float_array(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # torch tensors without importing torch
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values)
    except ValueError as exc:  # ragged nested lists
        raise InputError(f"{name} must be a rectangular 1-D or 2-D array of numbers: {exc}") from None
    kind = arr.dtype.kind
    if kind in "biuf":
        out = arr.astype(np.float64, copy=True)
    elif kind == "O":
        out = np.empty(arr.shape, dtype=np.float64)
        for index, item in np.ndenumerate(arr):
            if item is None:
                out[index] = np.nan
            elif isinstance(item, numbers.Real):
                out[index] = float(item)
            else:
                raise InputError(f"{name} must contain only numbers or None; found {item!r} at index {index}")
    else:
        example = arr.flat[0] if arr.size else None
        raise InputError(f"{name} must be numeric, got an array of dtype {arr.dtype} (e.g. {example!r})")
    if out.ndim not in (1, 2):
        raise InputError(f"{name} must be 1-D (one group) or 2-D (rows = groups), got shape {out.shape}")
    if np.isinf(out).any():
        bad = tuple(int(i) for i in np.argwhere(np.isinf(out))[0])
        raise InputError(f"{name} must be finite or NaN (missing); found {out[bad]} at index {bad}")
    return out


def as_score_matrix(gold: Any, pred: Any, *, min_items: int = 2) -> ScoreMatrix:
    """Validate ``gold`` and ``pred`` and return them as a :class:`ScoreMatrix`.

    Args:
        gold: gold (human / judge) scores, 1-D or 2-D.
        pred: predicted (metric) scores, same shape as ``gold``.
        min_items: the smallest number of usable items a row needs to count.

    Raises:
        InputError: non-numeric or infinite values, a shape other than 1-D / 2-D, mismatched shapes, or no row with
            ``min_items`` usable items.

    Examples:
        >>> m = as_score_matrix([1, 2, None, 4], [0.1, float("nan"), 0.3, 0.2])
        >>> m.gold.shape, m.counts.tolist()
        ((1, 4), [2])
    """
    g = _to_float_array(gold, "gold")
    p = _to_float_array(pred, "pred")
    if g.shape != p.shape:
        raise InputError(f"gold and pred must have the same shape, got {g.shape} and {p.shape}")
    one_d = g.ndim == 1
    if one_d:
        g = g[None, :]
        p = p[None, :]
    valid = ~(np.isnan(g) | np.isnan(p))
    g[~valid] = np.nan
    p[~valid] = np.nan
    matrix = ScoreMatrix(g, p, valid, one_d)
    if min_items > 1 and not (matrix.counts >= min_items).any():
        where = "the input" if one_d else "any row"
        raise InputError(
            f"no usable data: {where} has fewer than {min_items} items with both gold and pred present "
            f"(shape {g.shape if not one_d else g.shape[1:]}, {int(valid.sum())} usable items in total)"
        )
    return matrix
