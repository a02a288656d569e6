"""The survey's five claims, checked against the results of one ``torchpool compare`` run.

A claim is *supported* when the difference goes the claimed way and the mean ± std intervals
do not overlap, *not supported* when they do not overlap the other way, *inconclusive*
otherwise (or with one seed), and *not tested* when a variant it needs is not in the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .training import NOISE_LEVELS, RESIZE_FACTOR, mean_std

__all__ = ["Claim", "evaluate_claims"]


@dataclass
class Claim:
    """One survey claim and what this run says about it."""

    number: int
    text: str
    verdict: str
    evidence: str
    notes: list[str] = field(default_factory=list)


def _verdict(a: tuple[float, float], b: tuple[float, float], a_should_be: str, seeds: int) -> str:
    """``supported`` if ``a`` is lower/higher than ``b`` and the mean ± std intervals do not overlap.

    ``not supported`` if they do not overlap the other way, ``inconclusive`` if they overlap or
    there is only one seed (no spread to judge a difference by).
    """
    (ma, sa), (mb, sb) = a, b
    if seeds < 2 or any(math.isnan(v) for v in (ma, sa, mb, sb)) or abs(ma - mb) <= sa + sb:
        return "inconclusive"
    better = ma < mb if a_should_be == "lower" else ma > mb
    return "supported" if better else "not supported"


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


class _Scores:
    """The variants that ran, read with every std raised to the test split's binomial floor."""

    def __init__(self, variants: list[dict[str, Any]], test_images: int | None) -> None:
        self.ok = {v["name"]: v for v in variants if v["status"] == "ok"}
        self.test_images = test_images

    def missing(self, names: list[str]) -> str | None:
        """Why a claim that needs ``names`` is not tested, or None when all of them ran."""
        absent = [n for n in names if n not in self.ok]
        return f"not in this run (or skipped): {', '.join(absent)}" if absent else None

    def floor(self, name: str, std: float) -> float:
        """``std``, at least the binomial standard error of ``name``'s test accuracy."""
        if not self.test_images:
            return std
        p = min(max(self.ok[name]["accuracy_mean"], 0.0), 1.0)
        return max(std, math.sqrt(p * (1 - p) / self.test_images))

    def gap(self, name: str) -> tuple[float, float]:
        """The train-test gap of ``name``: (mean, floored std)."""
        return self.ok[name]["gap"], self.floor(name, self.ok[name]["gap_std"])

    def acc(self, name: str) -> tuple[float, float]:
        """The test accuracy of ``name``: (mean, floored std)."""
        return self.ok[name]["accuracy_mean"], self.floor(name, self.ok[name]["accuracy_std"])


def _regularisation_claim(scores: _Scores, number: int, other: str, text: str, seeds: int) -> Claim:
    """Claims 1 and 2: ``other`` has a smaller train-test gap than ``max2d``."""
    absent = scores.missing([other, "max2d"])
    if absent:
        return Claim(number, text, "not tested", absent)
    gap, acc = scores.gap, scores.acc
    return Claim(
        number,
        text,
        _verdict(gap(other), gap("max2d"), "lower", seeds),
        f"train-test gap {other} {_fmt(*gap(other))} vs max2d {_fmt(*gap('max2d'))} "
        f"(test accuracy {_fmt(*acc(other))} vs {_fmt(*acc('max2d'))})",
    )


def _median_claim(scores: _Scores, seeds: int) -> Claim:
    """Claim 3: median pooling loses less accuracy than max pooling under the strongest noise."""
    text = "Median pooling resists noise (smaller accuracy drop under salt-and-pepper noise than max pooling)"
    absent = scores.missing(["median2d", "max2d"])
    top = str(max(NOISE_LEVELS))
    if absent:
        return Claim(3, text, "not tested", absent)
    drops = {}
    for name in ("median2d", "max2d"):
        mean, std = mean_std(
            [r["test_accuracy"] - r["noise_accuracy"][top] for r in scores.ok[name]["per_seed"]]
        )
        drops[name] = (mean, scores.floor(name, std))
    acc = scores.acc
    return Claim(
        3,
        text,
        _verdict(drops["median2d"], drops["max2d"], "lower", seeds),
        f"accuracy drop from clean to {float(top):.0%} noise: median2d {_fmt(*drops['median2d'])} "
        f"(clean {_fmt(*acc('median2d'))}) vs max2d {_fmt(*drops['max2d'])} "
        f"(clean {_fmt(*acc('max2d'))})",
    )


def _combined_claim(scores: _Scores, seeds: int) -> Claim:
    """Claim 4: avgmax or catavgmax is more accurate than both max and avg pooling."""
    text = (
        "Combining average and max pooling enriches features "
        "(avgmax / catavgmax more accurate than both max and avg)"
    )
    combined = [n for n in ("avgmax2d", "catavgmax2d") if n in scores.ok]
    absent = scores.missing(["max2d", "avg2d"]) or (
        None if combined else "not in this run: avgmax2d, catavgmax2d"
    )
    if absent:
        return Claim(4, text, "not tested", absent)
    acc = scores.acc
    verdicts, parts = [], []
    for name in combined:
        vs = [_verdict(acc(name), acc(base), "higher", seeds) for base in ("max2d", "avg2d")]
        verdicts.append(
            "supported"
            if all(v == "supported" for v in vs)
            else "not supported"
            if "not supported" in vs
            else "inconclusive"
        )
        parts.append(f"{name} {_fmt(*acc(name))}")
    overall = (
        "supported"
        if "supported" in verdicts
        else "not supported"
        if all(v == "not supported" for v in verdicts)
        else "inconclusive"
    )
    return Claim(
        4,
        text,
        overall,
        f"test accuracy {', '.join(parts)} vs max2d {_fmt(*acc('max2d'))}, avg2d {_fmt(*acc('avg2d'))}",
        [
            "'supported' needs a combined variant clearly above both baselines; "
            "'not supported' means below at least one of them"
        ],
    )


def _size_verdict(v: dict[str, Any], chance: float, seeds: int) -> str:
    """Whether a model keeps at least half of its above-chance accuracy at the other size."""
    clean, resized, rstd = v["accuracy_mean"], v["resized_accuracy"], v["resized_accuracy_std"]
    keep = chance + 0.5 * (clean - chance)  # keeps at least half of the above-chance accuracy
    if seeds < 2:
        return "inconclusive"
    if resized - rstd >= keep:
        return "supported"
    if resized + rstd < keep:
        return "not supported"
    return "inconclusive"


def _size_claim(scores: _Scores, seeds: int, num_classes: int) -> Claim:
    """Claim 5: SPP and global heads keep their accuracy on upsampled test images."""
    text = "SPP and global pooling free the network from a fixed input size"
    heads = [n for n in ("spp2d", "global_avg", "gem") if n in scores.ok]
    if not heads:
        return Claim(5, text, "not tested", "not in this run: spp2d, global_avg, gem")
    chance = 1.0 / num_classes
    verdicts, parts = [], []
    for name in heads:
        v = scores.ok[name]
        if v["resized_accuracy"] is None:
            verdicts.append("not supported")
            parts.append(f"{name}: no accuracy at {RESIZE_FACTOR}x size (forward failed)")
            continue
        verdicts.append(_size_verdict(v, chance, seeds))
        clean, resized, rstd = v["accuracy_mean"], v["resized_accuracy"], v["resized_accuracy_std"]
        parts.append(
            f"{name}: {_fmt(resized, rstd)} at {RESIZE_FACTOR}x vs {_fmt(clean, v['accuracy_std'])} clean"
        )
    overall = (
        "supported"
        if all(v == "supported" for v in verdicts)
        else "not supported"
        if "not supported" in verdicts
        else "inconclusive"
    )
    return Claim(
        5,
        text,
        overall,
        "; ".join(parts),
        [
            f"'supported' means the model runs on {RESIZE_FACTOR}x upsampled test images "
            f"and keeps at least half of its above-chance accuracy (chance {chance:.3f}).",
            "Every model here ends in a size-independent head, so all variants accept other "
            "sizes by construction; a flatten+Linear classifier would not (not measured: it "
            "fails with a shape error). Accuracy at another scale tests scale robustness, "
            "which size-independence alone does not give.",
        ],
    )


def evaluate_claims(
    variants: list[dict[str, Any]], seeds: int, num_classes: int, test_images: int | None = None
) -> list[Claim]:
    """Checks the survey's five claims against the results of this run.

    Args:
        variants: the ``variants`` entries of ``results.json``.
        seeds: seeds per variant.
        num_classes: classes (chance accuracy is ``1 / num_classes``).
        test_images: size of the test split; when given, every std is raised to at least the
            binomial standard error ``sqrt(p (1 - p) / n)`` of a test accuracy, so that two seeds
            that happen to agree do not make a difference of a few images look certain.

    Returns:
        One :class:`Claim` per survey claim, verdict ``supported``, ``not supported``,
        ``inconclusive`` or ``not tested``.
    """
    scores = _Scores(variants, test_images)
    return [
        _regularisation_claim(
            scores,
            1,
            "overlapping_max2d",
            "Overlapping pooling reduces overfitting compared with non-overlapping max pooling",
            seeds,
        ),
        _regularisation_claim(
            scores,
            2,
            "stochastic2d",
            "Stochastic pooling regularises (smaller train-test gap than max pooling)",
            seeds,
        ),
        _median_claim(scores, seeds),
        _combined_claim(scores, seeds),
        _size_claim(scores, seeds, num_classes),
    ]
