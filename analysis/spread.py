"""The one spread every table, figure and summary states: the sample standard deviation (n − 1).

A sweep's seeds and images are samples of what a reader would get with other seeds and images, so the spread
around a mean is the sample std (Bessel's correction, ``ddof=1``), undefined (NaN, shown "—") for a single value.
Every caption names it with :data:`STD_NAME`.
"""

from __future__ import annotations

import math
import warnings
from typing import Iterable

import numpy as np

DDOF = 1
"""Bessel's correction: the sample std."""
STD_NAME = "sample std (n − 1)"
"""How captions name the spread."""


def sample_std(values: Iterable[float]) -> float:
    """The sample std of the values (NaN for fewer than two)."""
    array = np.asarray(list(values), dtype=float)
    return float(np.std(array, ddof=DDOF)) if len(array) > DDOF else math.nan


def nan_sample_std(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """The sample std along ``axis`` over the entries that are not NaN (NaN where fewer than two are)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "degrees of freedom <= 0" where one value is defined
        return np.nanstd(values, axis=axis, ddof=DDOF)
