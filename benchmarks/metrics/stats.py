"""Uncertainty of leaderboard numbers: bootstrap confidence intervals over heads.

* The unit of resampling is the head (test identity), never the view: views of one head are
  strongly correlated, so resampling views would give intervals far too narrow. Per bucket, a
  head's value is the mean over its views in that bucket; heads without a view (or only NaN values)
  in the bucket are left out of that bucket.
* Percentile bootstrap of the mean over heads, ``n_boot`` resamples, seeded (``numpy`` PCG64), so
  a result file is reproducible.
* Paired differences: method minus reference on the heads both have, the same resampled heads for
  both, so between-head variation cancels; identical methods give exactly 0 with a zero-width interval.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

CARD: dict[str, Any] = {
    "unit": "head (test identity); a head's value in a bucket is the mean over its views in that bucket",
    "interval": "percentile bootstrap of the mean over heads",
    "paired_difference": "method - reference per head on the common heads, bootstrapped over heads",
}


@dataclass(frozen=True)
class Interval:
    """A mean over heads with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int  # heads
    level: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def bootstrap_means(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot,) means of ``values`` (H,) resampled with replacement (H draws each)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    return values[idx].mean(1)


def bootstrap_ci(values: Sequence[float] | np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Interval:
    """Mean of per-head ``values`` (H,) and its percentile-bootstrap interval; NaNs are dropped first.

    With fewer than two heads the interval is NaN (nothing to resample)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return Interval(math.nan, math.nan, math.nan, 0, level)
    if len(v) < 2:
        return Interval(float(v.mean()), math.nan, math.nan, 1, level)
    means = bootstrap_means(v, n_boot, seed)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    # a constant sample gives exactly that constant (quantiles of identical floats can round differently)
    if np.all(v == v[0]):
        lo = hi = float(v[0])
    return Interval(float(v.mean()), float(lo), float(hi), len(v), level)


def per_head(df: pd.DataFrame, metric: str, head: str = "key", bucket: str | None = None) -> pd.DataFrame | pd.Series:
    """Per-head means of ``metric`` from a per-view table: a Series indexed by head, or with ``bucket`` a
    DataFrame (heads x buckets) with NaN where a head has no value in a bucket."""
    if bucket is None:
        return df.groupby(head)[metric].mean()
    return df.groupby([head, bucket])[metric].mean().unstack(bucket)


def bucket_intervals(df: pd.DataFrame, metric: str, bucket: str = "bucket", head: str = "key",
                     buckets: Sequence[str] | None = None, level: float = 0.95, n_boot: int = 2000, seed: int = 0,
                     overall: bool = True) -> dict[str, Interval]:
    """Per-bucket (and ``overall``) intervals of ``metric`` over heads, from a per-view table with columns
    ``head``, ``bucket`` and ``metric``. ``buckets`` fixes the order and includes empty buckets (NaN).

    ``overall`` is the mean over heads of each head's mean over all its views."""
    table = per_head(df, metric, head, bucket)
    names = list(buckets) if buckets is not None else list(table.columns)
    out = {b: bootstrap_ci(table[b].to_numpy() if b in table else [], level, n_boot, seed) for b in names}
    if overall:
        out["overall"] = bootstrap_ci(per_head(df, metric, head).to_numpy(), level, n_boot, seed)
    return out


def paired_difference(values: Mapping[str, float], reference: Mapping[str, float], level: float = 0.95,
                      n_boot: int = 2000, seed: int = 0) -> Interval:
    """Mean over common heads of ``values[h] - reference[h]`` (head -> value maps) with its interval.

    Heads missing from either side, or NaN on either side, are left out."""
    common = sorted(h for h in set(values) & set(reference)
                    if not (math.isnan(float(values[h])) or math.isnan(float(reference[h]))))
    d = np.array([float(values[h]) - float(reference[h]) for h in common], dtype=np.float64)
    return bootstrap_ci(d, level, n_boot, seed)


def paired_bucket_differences(df: pd.DataFrame, df_ref: pd.DataFrame, metric: str, bucket: str = "bucket",
                              head: str = "key", buckets: Sequence[str] | None = None, level: float = 0.95,
                              n_boot: int = 2000, seed: int = 0, overall: bool = True) -> dict[str, Interval]:
    """Per-bucket paired differences (method table ``df`` minus reference table ``df_ref``, both per-view
    tables of the same split) of per-head bucket means, with intervals."""
    a, b = per_head(df, metric, head, bucket), per_head(df_ref, metric, head, bucket)
    names = list(buckets) if buckets is not None else sorted(set(a.columns) | set(b.columns), key=str)
    out = {}
    for name in names:
        va = a[name].dropna().to_dict() if name in a else {}
        vb = b[name].dropna().to_dict() if name in b else {}
        out[name] = paired_difference(va, vb, level, n_boot, seed)
    if overall:
        out["overall"] = paired_difference(per_head(df, metric, head).to_dict(), per_head(df_ref, metric, head).to_dict(),
                                           level, n_boot, seed)
    return out


def best_method(tables: Mapping[str, pd.DataFrame], metric: str, higher_is_better: bool, head: str = "key") -> str:
    """The method whose mean over heads (of per-head means) of ``metric`` is best."""
    means = {name: float(per_head(df, metric, head).mean()) for name, df in tables.items()}
    valid = {k: v for k, v in means.items() if not math.isnan(v)}
    if not valid:
        raise ValueError(f"no method has a value for {metric!r}")
    return (max if higher_is_better else min)(valid, key=valid.get)


def differences_to_reference(tables: Mapping[str, pd.DataFrame], metric: str, higher_is_better: bool,
                             reference: str | None = None, bucket: str = "bucket", head: str = "key",
                             buckets: Sequence[str] | None = None, level: float = 0.95, n_boot: int = 2000,
                             seed: int = 0) -> tuple[str, dict[str, dict[str, Interval]]]:
    """Paired differences of every method's per-view table against ``reference`` (default: the best method by
    :func:`best_method`), per bucket and overall. Returns (reference, method -> bucket -> interval)."""
    ref = reference or best_method(tables, metric, higher_is_better, head)
    return ref, {name: paired_bucket_differences(df, tables[ref], metric, bucket, head, buckets, level, n_boot, seed)
                 for name, df in tables.items()}


def intervals_table(intervals: Mapping[str, Interval]) -> dict[str, dict[str, float | int]]:
    """JSON-ready form: bucket -> {mean, low, high, n, level}."""
    return {k: v.as_dict() for k, v in intervals.items()}


def card(level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The statistics card with the parameters actually used."""
    return {**CARD, "level": level, "n_boot": n_boot, "seed": seed}
