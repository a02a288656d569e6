"""The figures of ``torchpool compare``: one per claim topic, and a dot plot of every effect.

Every accuracy figure shows means over seeds with 95% t-intervals on an axis zoomed to the data
(never bars on 0..1); every variant has its own colour *and* marker, and legends sit outside the
axes. matplotlib is imported lazily (``pip install "torchpool[lab]"``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch.nn.functional as F

from .claims import Claim, metric
from .data import ImageData
from .stats import paired_interval
from .training import GAUSS_SIGMAS, ROTATIONS, SCALES, SP_LEVELS, EvalSets

__all__ = ["draw_figures"]

_MARKERS = "osD^vP*Xh<>p8d"
_VERDICT_COLOURS = {"supported": "tab:green", "not supported": "tab:red", "inconclusive": "tab:gray"}
# the metrics whose differences share an axis in the summary dot plot (fractions of test images)
_FRACTION_METRICS = {"accuracy", "gap", "sp", "gauss", "scale", "rotation", "shift", "keep"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style(names: list[str]) -> dict[str, dict[str, Any]]:
    """A distinct (colour, marker) pair per variant, stable in the order given."""
    plt = _pyplot()
    colours = plt.get_cmap("tab20").colors
    return {
        n: {
            "color": colours[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20],
            "marker": _MARKERS[i % len(_MARKERS)],
        }
        for i, n in enumerate(names)
    }


def _mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (0 for one value)."""
    i = paired_interval(values)
    return i.mean, 0.0 if math.isnan(i.high) else i.high - i.mean


def _zoom(ax: Any, values: list[float]) -> None:
    """Zooms the y axis on ``values`` (the seeds' points); a wider interval runs off the axis."""
    finite = [v for v in values if not math.isnan(v)]
    if finite:
        low, high = min(finite), max(finite)
        pad = max(0.01, 0.2 * (high - low))
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))


def _save(fig: Any, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return name


def _curves(
    out: Path,
    name: str,
    ok: dict[str, dict[str, Any]],
    panels: list[tuple[str, list[float], list[str | None], str]],
    title: str,
    highlight: tuple[str, ...] = (),
) -> str:
    """Accuracy (mean ± 95% CI over seeds) against a corruption level, one panel per corruption.

    ``panels``: (x label, x values, evaluation-set names per x, None meaning the clean images, title).
    The variants of ``highlight`` (the claim's) are drawn bold with their intervals, the others
    thin and faded without; with no highlight every variant is bold.
    """
    plt = _pyplot()
    style = _style(list(ok))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 2.2, 4.4), squeeze=False)
    for ax, (xlabel, xs, sets, subtitle) in zip(axes[0], panels):
        span = (max(xs) - min(xs)) or 1.0
        all_means: list[float] = []
        bold = [n for n in ok if n in highlight] or list(ok)
        for n, v in ok.items():
            k = bold.index(n) if n in bold else 0
            jitter = span * 0.005 * (k - (len(bold) - 1) / 2)  # side by side: the bars do not hide each other
            means, errs, px = [], [], []
            for x, s in zip(xs, sets):
                values = [r["test_accuracy"] if s is None else r["accuracy"].get(s) for r in v["per_seed"]]
                if any(val is None for val in values):
                    continue
                m, e = _mean_ci([float(val) for val in values if val is not None])
                means.append(m)
                errs.append(e)
                px.append(x + jitter)
            all_means += means
            if n in bold:
                ax.errorbar(px, means, yerr=errs, capsize=3, lw=2.0, ms=6, label=n, zorder=3, **style[n])
            else:
                ax.plot(px, means, lw=0.8, ms=3, alpha=0.45, label=n, **style[n])
        if all_means:  # zoom on the means; an interval wider than that runs off the axis
            low, high = min(all_means), max(all_means)
            pad = max(0.02, 0.15 * (high - low))
            ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
        ax.set_xlabel(xlabel)
        ax.set_title(subtitle, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (mean; bold: 95% CI over seeds)")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.suptitle(title)
    return _save(fig, out, name)


def _dots(
    out: Path,
    name: str,
    rows: list[tuple[str, list[float]]],
    xlabel: str,
    title: str,
    colours: list[str] | None = None,
    zero: bool = False,
) -> str:
    """One row per entry: per-seed values (small) and mean ± 95% CI (large), zoomed axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.34 * len(rows) + 1.6))
    for y, (_, values) in enumerate(rows):
        m, e = _mean_ci(values)
        colour = colours[y] if colours else "tab:blue"
        ax.scatter(values, [y] * len(values), s=10, color=colour, alpha=0.45, zorder=2)
        ax.errorbar([m], [y], xerr=[e], fmt="o", color=colour, capsize=3, ms=6, zorder=3)
    if zero:
        ax.axvline(0.0, color="black", lw=1)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out, name)


def _effects(out: Path, claims: list[Claim]) -> str | None:
    """Every judged comparison: mean paired difference and 95% CI, one panel (own zoomed axis) per claim."""
    groups: list[tuple[Claim, list[Any]]] = []
    for c in claims:
        rows = [
            x for x in c.comparisons if x.direction != "report" and x.metric in _FRACTION_METRICS and x.values
        ]
        if rows:
            groups.append((c, rows))
    if not groups:
        return None
    plt = _pyplot()
    heights = [len(rows) + 0.9 for _, rows in groups]
    fig, axes = plt.subplots(
        len(groups), 1, figsize=(8.5, 0.36 * sum(heights) + 1.2), gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )  # fmt: skip
    for ax, (claim, rows) in zip(axes[:, 0], groups):
        extent = [0.0]
        for y, x in enumerate(rows):
            colour = _VERDICT_COLOURS.get(x.verdict, "tab:gray")
            m, e = _mean_ci(x.values)
            ax.scatter(x.values, [y] * len(x.values), s=10, color=colour, alpha=0.45, zorder=2)
            ax.errorbar([m], [y], xerr=[e], fmt="o", color=colour, capsize=3, ms=6, zorder=3)
            extent += [m - e, m + e, *x.values]
        low, high = min(extent), max(extent)
        pad = 0.08 * (high - low or 1.0)
        ax.set_xlim(low - pad, high + pad)
        ax.axvline(0.0, color="black", lw=1)
        labels = [
            f"{x.name} ({x.metric}; claimed {'> 0' if x.direction == 'higher' else '< 0'})" for x in rows
        ]
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(f"{claim.id}: {claim.text} - {claim.verdict}", fontsize=8, loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel(
        "paired difference (variant - baseline), fraction of test images; each panel zoomed\n"
        "dot: mean over seeds, bar: 95% CI, small dots: seeds; green supported, red against, grey open"
    )
    fig.tight_layout()
    return _save(fig, out, "effects.png")


def _paired_lines(
    out: Path, name: str, ok: dict[str, dict[str, Any]], names: list[str], title: str
) -> str | None:
    """Test accuracy of ``names`` side by side, one line per seed (the pairing), mean ± CI."""
    present = [n for n in names if n in ok]
    if len(present) < 2:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.5 * len(present) + 3.5, 4.2))
    seeds = sorted({r["seed"] for n in present for r in ok[n]["per_seed"]})
    points: list[float] = []
    for seed in seeds:
        ys = [
            next((r["test_accuracy"] for r in ok[n]["per_seed"] if r["seed"] == seed), math.nan)
            for n in present
        ]
        ax.plot(range(len(present)), ys, "-", color="tab:gray", alpha=0.5, lw=1, marker=".")
        points += ys
    _zoom(ax, points)
    for i, n in enumerate(present):
        m, e = _mean_ci([r["test_accuracy"] for r in ok[n]["per_seed"]])
        ax.errorbar([i], [m], yerr=[e], fmt="o", color="tab:blue", capsize=4, ms=7, zorder=3)
    ax.set_xticks(range(len(present)), present, rotation=20)
    ax.set_ylabel("test accuracy (grey: one seed; blue: mean, 95% CI)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out, name)


def _computation(out: Path, cost: dict[str, dict[str, Any]]) -> str | None:
    if not cost:
        return None
    plt = _pyplot()
    names = list(cost)
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.3 * len(names) + 1.8), sharey=True)
    panels = (
        ("parameters", [cost[n]["parameters"] / 1e3 for n in names], "thousands of parameters"),
        ("FLOPs", [cost[n]["flops"] / 1e6 for n in names], "MFLOPs per image (counted)"),
        ("latency", [cost[n]["latency_ms"] for n in names], "ms per forward batch (measured, median)"),
    )
    for ax, (title, values, xlabel) in zip(axes, panels):
        colours = ["tab:red" if n == "(no pooling)" else "tab:blue" for n in names]
        ax.barh(range(len(names)), values, color=colours)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("claim 4: cost per variant (red: the same CNN without its pools)")
    return _save(fig, out, "computation.png")


def _spp(out: Path, rf: dict[str, list[int]] | None, ok: dict[str, dict[str, Any]]) -> str | None:
    if not rf:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
    ax = axes[0]
    nets = ["yolov3", "yolov3-spp", "yolov3-spp-19"]
    width = 0.25
    for i, net in enumerate(nets):
        xs = [k + (i - 1) * width for k in range(len(rf[net]))]
        ax.bar(xs, rf[net], width, label=net)
    ax.axhline(608, color="black", ls="--", lw=1, label="input 608")
    ax.set_xticks(range(len(rf["jump"])), [f"[yolo] stride {j}" for j in rf["jump"]])
    ax.set_ylabel("receptive field (px)")
    ax.set_ylim(min(min(rf[n]) for n in nets) * 0.5, max(max(rf[n]) for n in nets) * 1.08)
    ax.set_title("7a: receptive field at 608x608 (darknet cfg structure)", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax = axes[1]
    present = [n for n in ("max2d", "yolo_spp", "yolo_spp_k19") if n in ok]
    if len(present) >= 2:
        points = []
        for seed in sorted({r["seed"] for n in present for r in ok[n]["per_seed"]}):
            ys = [
                next((r["test_accuracy"] for r in ok[n]["per_seed"] if r["seed"] == seed), math.nan)
                for n in present
            ]
            ax.plot(range(len(present)), ys, "-", color="tab:gray", alpha=0.5, marker=".")
            points += ys
        _zoom(ax, points)
        for i, n in enumerate(present):
            m, e = _mean_ci([r["test_accuracy"] for r in ok[n]["per_seed"]])
            ax.errorbar([i], [m], yerr=[e], fmt="o", color="tab:blue", capsize=4, ms=7)
        ax.set_xticks(range(len(present)), present)
        ax.set_ylabel("test accuracy (grey: seed; blue: mean, 95% CI)")
    ax.set_title("7b/7c: SPP neck on the lab's CNN", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out, "spp.png")


def _unpooling(out: Path, evals: EvalSets, u: dict[str, Any] | None) -> str | None:
    if not u:
        return None
    plt = _pyplot()
    x = evals.test_x[:4]
    h, w = x.shape[-2:]
    x = x[..., : h - h % 2, : w - w % 2]
    pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    size = list(x.shape[-2:])
    recon = {
        "original": x,
        "max-unpool": F.max_unpool2d(pooled, idx, [2, 2], [2, 2], output_size=size),
        "nearest": F.interpolate(pooled, size=size, mode="nearest"),
        "bilinear": F.interpolate(pooled, size=size, mode="bilinear", align_corners=False),
    }
    fig, axes = plt.subplots(len(x), 4, figsize=(8, 2 * len(x) + 0.6))
    for col, (label, images) in enumerate(recon.items()):
        title = label if label == "original" else f"{label}\nMSE {u['mse'][label.replace('-', '_')]:.4f}"
        for row in range(len(x)):
            ax = axes[row][col]
            ax.imshow(images[row, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
    fig.suptitle(f"claim 8: 2x2 max pooling undone (MSE: mean over {u['images']} test images)", fontsize=10)
    return _save(fig, out, "unpooling.png")


def draw_figures(
    out: Path,
    variants: list[dict[str, Any]],
    claims: list[Claim],
    measurements: dict[str, Any],
    data: ImageData,
    evals: EvalSets,
) -> dict[str, str]:
    """Draws every figure into ``out``; sets each claim's ``figure``; returns topic -> file name."""
    ok = {v["name"]: v for v in variants if v["status"] == "ok"}
    pools = {n: v for n, v in ok.items() if v["role"] == "pool"}
    heads = {n: v for n, v in ok.items() if v["role"] in ("head", "neck") or n == "max2d"}
    figures: dict[str, str | None] = {}
    figures["effects"] = _effects(out, claims)
    if pools:
        figures["noise"] = _curves(
            out,
            "noise.png",
            pools,
            [
                (
                    "fraction of pixels set to 0 or 1",
                    [0.0, *SP_LEVELS],
                    [None, *[f"sp {p:g}" for p in SP_LEVELS]],
                    "salt-and-pepper",
                ),
                (
                    "noise sigma (pixels in [0, 1])",
                    [0.0, *GAUSS_SIGMAS],
                    [None, *[f"gauss {s:g}" for s in GAUSS_SIGMAS]],
                    "Gaussian",
                ),
            ],
            "claims 1a/1b: accuracy under test-time noise (pool variants; the claims' in bold)",
            highlight=("max2d", "avg2d", "median2d", "strided_conv"),
        )
        figures["scale"] = _curves(
            out,
            "scale.png",
            pools,
            [
                (
                    "input size / training size",
                    [1.0, *SCALES],
                    [None, *[f"scale {s:g}" for s in SCALES]],
                    "input size",
                )
            ],
            "claim 2: accuracy at other input sizes (pool variants, global-average head; the claim's bold)",
            highlight=("max2d", "avg2d", "strided_conv"),
        )
        figures["rotation"] = _curves(
            out,
            "rotation.png",
            pools,
            [
                (
                    "rotation (degrees)",
                    [ROTATIONS[0], 0.0, ROTATIONS[1]],
                    [f"rot {ROTATIONS[0]:+g}", None, f"rot {ROTATIONS[1]:+g}"],
                    "rotation",
                )
            ],
            "claim 3a: accuracy under rotation (pool variants; the claim's in bold)",
            highlight=("max2d", "avg2d", "strided_conv"),
        )
    if ok:
        order = sorted(ok, key=lambda n: -ok[n]["shift_consistency"])
        figures["shift"] = _dots(
            out,
            "shift.png",
            [(n, [metric("shift", r) or 0.0 for r in ok[n]["per_seed"]]) for n in order],
            "share of test predictions unchanged by a 1-3 px shift",
            "claim 3b: shift consistency (Zhang 2019)",
        )
        order = sorted(ok, key=lambda n: ok[n]["gap"])
        figures["overfitting"] = _dots(
            out,
            "overfitting.png",
            [(n, [metric("gap", r) or 0.0 for r in ok[n]["per_seed"]]) for n in order],
            "train accuracy - test accuracy",
            "claim 5: train-test gap per variant (mean, 95% CI; dots: seeds)",
        )
    if heads:
        figures["global pooling"] = _curves(
            out,
            "global.png",
            heads,
            [
                (
                    "input size / training size",
                    [1.0, *SCALES],
                    [None, *[f"scale {s:g}" for s in SCALES]],
                    "heads",
                )
            ],
            "claim 9: size-free heads at sizes they were not trained on",
        )
    figures["computation"] = _computation(out, measurements.get("costs", {}))
    figures["combined"] = _paired_lines(
        out,
        "combined.png",
        ok,
        ["max2d", "avg2d", "avgmax2d", "catavgmax2d"],
        "claim 6: combined pooling, paired by seed",
    )
    figures["SPP"] = _spp(out, measurements.get("spp_receptive_fields"), ok)
    figures["unpooling"] = _unpooling(out, evals, measurements.get("unpooling"))
    newer = [c.comparisons[0].variant for c in claims if c.topic == "newer pools" and c.comparisons]
    figures["newer pools"] = _paired_lines(
        out, "newer.png", ok, ["max2d", *newer], "claims 10: the newer pools against max2d, paired by seed"
    )
    by_topic = {
        "noise": "noise",
        "scale": "scale",
        "rotation": "rotation",
        "shift": "shift",
        "computation": "computation",
        "overfitting": "overfitting",
        "combined": "combined",
        "SPP": "SPP",
        "unpooling": "unpooling",
        "global pooling": "global pooling",
        "newer pools": "newer pools",
    }
    for c in claims:
        c.figure = figures.get(by_topic.get(c.topic, ""))
    del data
    return {k: v for k, v in figures.items() if v}
