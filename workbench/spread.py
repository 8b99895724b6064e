"""How much a step's time varied over the repeats of a measurement, and when to say so.

A profile keeps the median time of each step; `summarise` adds the 10th and 90th
percentiles over the repeats (seconds_p10, seconds_p90) and the GFLOP/s they give
(gflops_p10 from the slow runs, gflops_p90 from the fast ones): the error bars of the
figures. `noise_warning` says in words when that spread is large enough that the medians
should not be trusted (a busy machine, too few repeats).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

# p90 / p10 of the time-weighted spread above which a measurement is called noisy: a
# step's p90 40 % slower than its p10 is more than the machine's usual jitter (a few %).
NOISY_SPREAD = 1.4


def percentile_columns(seconds_by_step: pd.core.groupby.SeriesGroupBy, flops: np.ndarray) -> dict[str, np.ndarray]:
    """{seconds_p10, seconds_p90 (s), gflops_p10, gflops_p90 (GFLOP/s)} per step, from the
    steps' seconds grouped by step (the repeats) and their FLOPs (ordered as the groups)."""
    p10 = seconds_by_step.quantile(0.1).to_numpy(dtype=float)
    p90 = seconds_by_step.quantile(0.9).to_numpy(dtype=float)
    flops = np.asarray(flops, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"seconds_p10": p10, "seconds_p90": p90,
                "gflops_p10": np.where(p90 > 0, flops / p90 / 1e9, np.nan),
                "gflops_p90": np.where(p10 > 0, flops / p10 / 1e9, np.nan)}


def spread_ratio(frame: pd.DataFrame) -> float:
    """The profile's spread: sum of the steps' p90 times / sum of their p10 times (1.0: every
    repeat took the same time). NaN when the profile has no percentile columns."""
    if not {"seconds_p10", "seconds_p90"} <= set(frame.columns):
        return float("nan")
    low = float(pd.to_numeric(frame["seconds_p10"]).sum())
    high = float(pd.to_numeric(frame["seconds_p90"]).sum())
    return high / low if low > 0 else float("nan")


def noise_warning(frame: pd.DataFrame, threshold: float = NOISY_SPREAD) -> str | None:
    """A sentence when the profile's repeats disagree by more than `threshold` (p90 / p10 of
    the summed step times), else None."""
    ratio = spread_ratio(frame)
    if not np.isfinite(ratio) or ratio <= threshold:
        return None
    return (f"noisy measurement: the repeats' step times spread by {ratio - 1:.0%} from p10 to p90 "
            f"(above {threshold - 1:.0%}); the machine may be busy. Measure again or with more repeats "
            f"before trusting small differences.")
