"""Numbers a report shows: a measured value with its format (:class:`Num`) and a value measured once per
training seed (:class:`Spread`, shown as ``mean ± spread``).

A table built once per seed with :class:`Num` and float cells can be merged cell by cell into
:class:`Spread` cells (:func:`advrobust.demo.seeds.combine_tables`); findings compare two
:class:`Spread` values with the test-sample error and the spread across seeds together
(:func:`advrobust.demo.seeds.difference`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Tuple

import numpy as np

__all__ = ["Num", "Spread"]


class Num(float):
    """A float that knows how the report shows it and how precisely the test sample measures it, e.g.
    ``Num(0.0123, ".3g")`` -> ``"0.0123"``, ``Num(0.31, ".0%", n_objects=100)`` (a fraction of 100 test objects).

    It is a float in every other way (arithmetic gives plain floats). NaN is shown as ``"-"`` (e.g.
    the median of no successes).

    Attributes:
        fmt: the format of the value.
        n_objects: the test objects behind a fraction (its binomial error); 0 when it is not one.
        error: the test-sample standard error of a value that is not a fraction (e.g. a sigma_MAD), in
            its units; 0 when not known.
    """

    fmt: str
    n_objects: int
    error: float

    def __new__(cls, value: float, fmt: str = ".3g", n_objects: int = 0, error: float = 0.0) -> "Num":
        self = super().__new__(cls, value)
        self.fmt, self.n_objects, self.error = fmt, int(n_objects), float(error)
        return self

    def __str__(self) -> str:
        return "-" if math.isnan(self) else format(float(self), self.fmt)

    def __reduce__(self):  # pickles (multiprocessing, deepcopy) with its format and errors
        return (Num, (float(self), self.fmt, self.n_objects, self.error))


@dataclass(frozen=True)
class Spread:
    """One quantity measured once per training seed.

    Attributes:
        values: one value per seed, in seed order (NaN where the quantity was undefined for that seed,
            e.g. the median iterations of a one-pixel attack that never succeeded).
        fmt: the format of the mean and the spread (``".1%"`` for a fraction shown in %).
        n_objects: the test objects behind a fraction (for its binomial error); 0 when the value is not a
            fraction of objects.
        error: the test-sample standard error when the value is not a fraction (e.g. of a sigma_MAD, or of a
            difference of two fractions), in its units; 0 when not known.

    ``mean`` and ``std`` ignore NaN; ``std`` is the sample standard deviation across seeds (ddof 1),
    0 with one finite value. ``str()`` is ``"mean ± std"`` (``"mean"`` alone with one finite value).
    """

    values: Tuple[float, ...]
    fmt: str = ".3g"
    n_objects: int = 0
    error: float = 0.0

    @classmethod
    def of(cls, values: Iterable[float], fmt: str = ".3g", n_objects: int = 0, error: float = 0.0) -> "Spread":
        """A :class:`Spread` from any iterable of numbers."""
        return cls(tuple(float(v) for v in values), fmt, int(n_objects), float(error))

    @classmethod
    def of_nums(cls, values: Iterable[float], fmt: str = "", n_objects: int = 0) -> "Spread":
        """A :class:`Spread` of one value per seed (NaN where missing), taking the format, ``n_objects`` and
        ``error`` of its :class:`Num` values (``n_objects`` the fewest, ``error`` the mean); ``fmt`` and
        ``n_objects``, when given, override them (for plain floats)."""
        values = list(values)
        nums = [v for v in values if isinstance(v, Num)]
        errors = [v.error for v in nums if math.isfinite(v)]
        return cls.of(values, fmt or (nums[0].fmt if nums else ".3g"),
                      n_objects or min((v.n_objects for v in nums), default=0),
                      float(np.mean(errors)) if errors else 0.0)

    @property
    def _finite(self) -> np.ndarray:
        v = np.asarray(self.values, dtype=np.float64)
        return v[np.isfinite(v)]

    @property
    def seeds(self) -> int:
        """How many seeds measured it."""
        return len(self.values)

    @property
    def mean(self) -> float:
        """Mean over the seeds where it is defined (NaN where it never is)."""
        v = self._finite
        return float(v.mean()) if v.size else float("nan")

    @property
    def std(self) -> float:
        """Standard deviation across seeds (ddof 1); 0 with fewer than two finite values."""
        v = self._finite
        return float(v.std(ddof=1)) if v.size > 1 else 0.0

    @property
    def sample_error(self) -> float:
        """Test-sample standard error: binomial, of the mean fraction over ``n_objects`` test objects, else
        :attr:`error` (0 when neither is known). The seeds share one test set, so it does not shrink with them."""
        if self.n_objects <= 0 or not np.isfinite(self.mean):
            return self.error
        p = min(max(self.mean, 0.0), 1.0)
        return math.sqrt(p * (1.0 - p) / self.n_objects)

    def __sub__(self, other: "Spread") -> "Spread":
        """Seed by seed ``self - other`` (e.g. an accuracy gap), in ``self``'s format; its test-sample error
        is that of both, added in quadrature."""
        if self.seeds != other.seeds:
            raise ValueError(f"Spread: {self.seeds} seeds minus {other.seeds} seeds")
        return Spread.of(np.subtract(self.values, other.values), self.fmt,
                         error=math.hypot(self.sample_error, other.sample_error))

    def __format__(self, spec: str) -> str:
        spec = spec or self.fmt
        if not np.isfinite(self.mean):
            return "-"
        if self._finite.size < 2:  # one seed, or defined in one seed only: no spread measured
            return format(self.mean, spec)
        return f"{format(self.mean, spec)} ± {format(self.std, spec.replace('+', ''))}"  # a spread has no sign

    def __str__(self) -> str:
        return format(self, "")
