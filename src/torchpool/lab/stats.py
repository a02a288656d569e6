"""Paired differences, 95% t-intervals and the verdict rule of ``torchpool compare``.

Every variant is trained once per seed with the same data order and the same initial weights
of the layers it shares with the other variants, so a claim "A is better than B" is judged on
the per-seed differences ``A(seed) - B(seed)``: their mean, and a 95% Student-t interval over
the seeds. The verdict rule is the same for every comparison:

* **supported**: the interval excludes 0 on the claimed side;
* **not supported**: the interval excludes 0 on the other side;
* **inconclusive**: the interval contains 0, or there is a single seed (no interval).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Interval", "RULE", "paired_interval", "t_quantile", "verdict"]

RULE = (
    "supported when the 95% interval of the paired difference excludes 0 on the claimed side, "
    "not supported when it excludes 0 on the other side, inconclusive when it contains 0 or when "
    "there is a single seed"
)

# two-sided 95% quantiles of Student's t, t_{0.975, df}, df = 1..30
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile(df: int) -> float:
    """The two-sided 95% quantile ``t_{0.975}`` of Student's t with ``df`` degrees of freedom.

    Args:
        df: degrees of freedom, at least 1.

    Raises:
        ValueError: if ``df < 1``.

    Example:
        >>> t_quantile(2), t_quantile(1000) < 1.97
        (4.303, True)
    """
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish-Fisher expansion: within 0.0002 of the exact quantile above df = 30
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Interval:
    """The mean of paired differences and its 95% t-interval (``low``/``high`` NaN for one value).

    Attributes:
        mean: mean difference.
        low: lower end of the 95% interval.
        high: upper end.
        n: number of pairs.
    """

    mean: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 3) -> str:
        """``+0.012 [-0.004, +0.028]``, or ``+0.012 (n=1, no interval)``."""
        if self.n < 2 or math.isnan(self.low):
            return f"{self.mean:+.{digits}f} (n={self.n}, no interval)"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired_interval(differences: Sequence[float]) -> Interval:
    """Mean and 95% t-interval of paired differences.

    Args:
        differences: one difference per pair (seed, or image).

    Raises:
        ValueError: for an empty sequence.

    Example:
        >>> i = paired_interval([0.01, 0.03, 0.02])
        >>> round(i.mean, 3), round(i.low, 4), round(i.high, 4)
        (0.02, -0.0048, 0.0448)
    """
    values = [float(d) for d in differences]
    if not values:
        raise ValueError("differences must not be empty")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, math.nan, math.nan, len(values))
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values))


def verdict(interval: Interval, direction: str) -> tuple[str, str]:
    """The verdict of :data:`RULE` for a claimed ``direction`` and the reason in words.

    Args:
        interval: the paired difference (claimed variant minus baseline).
        direction: ``"higher"`` (the claim says the difference is positive) or ``"lower"``.

    Raises:
        ValueError: for another direction.

    Example:
        >>> verdict(paired_interval([0.01, 0.03, 0.02]), "higher")[0]
        'inconclusive'
        >>> verdict(paired_interval([0.02, 0.03, 0.025]), "lower")
        ('not supported', 'the 95% interval [+0.013, +0.037] is above 0, against the claim')
    """
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}")
    if interval.n < 2 or math.isnan(interval.low):
        return "inconclusive", f"one seed (n={interval.n}): no interval to judge a difference by"
    sign = 1 if direction == "higher" else -1
    span = f"[{interval.low:+.3f}, {interval.high:+.3f}]"
    if interval.low > 0 or interval.high < 0:
        above = interval.low > 0
        side = "above" if above else "below"
        if (above and sign > 0) or (not above and sign < 0):
            return "supported", f"the 95% interval {span} is {side} 0, as claimed"
        return "not supported", f"the 95% interval {span} is {side} 0, against the claim"
    return "inconclusive", f"the 95% interval {span} contains 0"
