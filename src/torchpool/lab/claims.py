"""The survey's claims (and the new pools' papers' claims), judged on one ``torchpool compare`` run.

Each claim names the variants it compares, the metric, and the claimed direction. The effect is
the mean of the per-seed differences *variant - baseline* (paired: same seed, same data order,
same initial weights of the shared layers) with a 95% t-interval over the seeds; the verdict
follows :data:`torchpool.lab.stats.RULE`. A claim with several comparisons states how they
combine (``primary``: the first decides, the others are reported; ``all``: supported only if
every comparison is). A claim whose variants are not in the run is *not tested*.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .stats import RULE, Interval, paired_interval, verdict
from .training import ROTATIONS, SCALES

__all__ = ["NOT_TESTABLE", "RULE", "Claim", "Comparison", "PAPER_CLAIMS", "evaluate_claims", "metric"]

Record = dict[str, Any]

# the metric of one seed's record, or None when it cannot be computed (a forward that failed)
_METRICS: dict[str, tuple[str, Callable[[Record], float | None]]] = {}


def _register(key: str, label: str) -> Callable[[Callable[[Record], float | None]], None]:
    def wrap(fn: Callable[[Record], float | None]) -> None:
        _METRICS[key] = (label, fn)

    return wrap


def _retention(r: Record, names: list[str]) -> float | None:
    values = [r["accuracy"].get(n) for n in names]
    if any(v is None for v in values):
        return None
    return statistics.fmean(float(v) for v in values if v is not None) - float(r["test_accuracy"])


_register("accuracy", "test accuracy")(lambda r: r["test_accuracy"])
_register("gap", "train - test accuracy (gap)")(lambda r: r["train_accuracy"] - r["test_accuracy"])
_register("sp", "accuracy under 10% salt-and-pepper minus clean accuracy")(
    lambda r: _retention(r, ["sp 0.1"])
)
_register("gauss", "accuracy under Gaussian noise (sigma 0.2) minus clean accuracy")(
    lambda r: _retention(r, ["gauss 0.2"])
)
_register("scale", "mean accuracy at " + "/".join(f"{s:g}x" for s in SCALES) + " input size minus clean")(
    lambda r: _retention(r, [f"scale {s:g}" for s in SCALES])
)
_register(
    "rotation", "mean accuracy under " + "/".join(f"{d:+g}" for d in ROTATIONS) + " deg rotation minus clean"
)(lambda r: _retention(r, [f"rot {d:+g}" for d in ROTATIONS]))
_register("shift", "shift consistency (share of predictions unchanged by a 1-3 px shift)")(
    lambda r: r["shift_consistency"]
)


def metric(key: str, record: Record) -> float | None:
    """The value of metric ``key`` (``accuracy``, ``gap``, ``sp``, ``gauss``, ``scale``, ``rotation``,
    ``shift``) for one seed's record.

    Raises:
        ValueError: for an unknown key.
    """
    if key not in _METRICS:
        raise ValueError(f"unknown metric {key!r}; expected one of {sorted(_METRICS)}")
    return _METRICS[key][1](record)


@dataclass
class Comparison:
    """One paired comparison: ``variant - baseline`` on a metric, per seed.

    Attributes:
        variant: the claimed-better variant (or the measured quantity).
        baseline: what it is compared with (``None``: the value itself against 0).
        metric: a metric key or a free label.
        label: the metric in words.
        direction: ``higher``, ``lower`` or ``report`` (shown, not judged).
        values: the per-seed (or per-pair) differences.
        interval: their mean and 95% interval (``None`` when not tested).
        verdict: the verdict of this comparison.
        reason: why.
    """

    variant: str
    baseline: str | None
    metric: str
    label: str
    direction: str
    values: list[float] = field(default_factory=list)
    interval: Interval | None = None
    verdict: str = "not tested"
    reason: str = ""
    unit: str = ""

    @property
    def name(self) -> str:
        """``variant - baseline`` (or the variant alone)."""
        return self.variant if self.baseline is None else f"{self.variant} - {self.baseline}"

    def effect_text(self) -> str:
        """The effect and its interval; an exact count (``unit`` set) as a number with its unit."""
        if self.interval is None:
            return "-"
        if self.unit:
            return f"{self.interval.mean:+,.0f} {self.unit} (exact)"
        return self.interval.text()


@dataclass
class Claim:
    """One claim and what this run says about it.

    Attributes:
        id: ``"1a"``, ``"5b"``, ...
        topic: the survey's heading (noise, scale, ...).
        text: the claim.
        source: who claims it, with the published figure where there is one.
        measurement: what this run measures.
        rule: how the comparisons give the verdict.
        comparisons: the paired comparisons.
        verdict: ``supported``, ``not supported``, ``inconclusive`` or ``not tested``.
        reason: why, in words.
        notes: caveats.
        figure: the PNG of this claim (set by the plots).
    """

    id: str
    topic: str
    text: str
    source: str
    measurement: str
    rule: str
    comparisons: list[Comparison]
    verdict: str = "not tested"
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    figure: str | None = None


def _judge(c: Comparison, values: list[float]) -> Comparison:
    c.values = values
    c.interval = paired_interval(values)
    if c.direction == "report":
        c.verdict, c.reason = "reported", "shown for context, not judged"
    else:
        c.verdict, c.reason = verdict(c.interval, c.direction)
    return c


def _paired(
    ok: dict[str, Record], variant: str, baseline: str | None, key: str, direction: str
) -> Comparison:
    """The comparison of ``variant`` with ``baseline`` on metric ``key``, paired by seed."""
    label = _METRICS[key][0]
    c = Comparison(variant, baseline, key, label, direction)
    absent = [n for n in (variant, baseline) if n is not None and n not in ok]
    if absent:
        c.reason = f"not in this run (or skipped): {', '.join(absent)}"
        return c
    seeds_a = {r["seed"]: metric(key, r) for r in ok[variant]["per_seed"]}
    seeds_b = {r["seed"]: metric(key, r) for r in ok[baseline]["per_seed"]} if baseline else None
    values: list[float] = []
    for seed, a in seeds_a.items():
        b = 0.0 if seeds_b is None else seeds_b.get(seed)
        if a is None or b is None:
            c.verdict = "not supported" if direction != "report" else "reported"
            c.reason = f"the forward pass failed for seed {seed} ({variant if a is None else baseline})"
            return c
        values.append(a - b)
    if not values:
        c.reason = "no seed in common"
        return c
    return _judge(c, values)


def _combine(claim: Claim, how: str) -> Claim:
    judged = [c for c in claim.comparisons if c.direction != "report"]
    if how == "primary":
        first = judged[0]
        claim.verdict, claim.reason = first.verdict, f"{first.name}: {first.reason}"
        return claim
    if any(c.verdict == "not tested" for c in judged):
        missing = [c.name for c in judged if c.verdict == "not tested"]
        claim.verdict, claim.reason = "not tested", f"not in this run: {', '.join(missing)}"
        return claim
    verdicts = [c.verdict for c in judged]
    if all(v == "supported" for v in verdicts):
        claim.verdict, claim.reason = "supported", "every comparison's interval is on the claimed side of 0"
    elif "not supported" in verdicts:
        against = [f"{c.name} [{c.metric}]" for c in judged if c.verdict == "not supported"]
        claim.verdict, claim.reason = "not supported", f"against the claim: {', '.join(against)}"
    else:
        open_ = [f"{c.name} [{c.metric}]: {c.reason}" for c in judged if c.verdict == "inconclusive"]
        claim.verdict, claim.reason = "inconclusive", "; ".join(open_)
    return claim


_PRIMARY = "the first comparison decides (" + RULE + "); the others are reported"
_ALL = (
    "supported when every comparison is supported, not supported when any is against the claim, "
    "else inconclusive"
)


#: published claims of the newer pools, judged when the variant is in the run:
#: (variant, baseline, metric, direction, claim, source)
PAPER_CLAIMS: tuple[tuple[str, str, str, str, str, str], ...] = (
    (
        "soft2d",
        "max2d",
        "accuracy",
        "higher",
        "SoftPool keeps more information than max pooling and is more accurate",
        "Stergiou et al. 2021 (SoftPool): higher ImageNet top-1 than max pooling in every network they test",
    ),
    (
        "lip2d",
        "max2d",
        "accuracy",
        "higher",
        "Local importance pooling is more accurate than max pooling",
        "Gao et al. 2019 (LIP): ResNet-50 with LIP gains ImageNet top-1 over the max/strided baseline",
    ),
    (
        "tree2d",
        "max2d",
        "accuracy",
        "higher",
        "Learned tree pooling is more accurate than max pooling",
        "Lee et al. 2016: every generalised pool beats max and average pooling in their experiments",
    ),
    (
        "spectral2d",
        "max2d",
        "accuracy",
        "higher",
        "Spectral pooling keeps more information than max pooling",
        "Rippel et al. 2015: spectral pooling preserves more information per parameter",
    ),
    (
        "gem",
        "max2d",
        "accuracy",
        "higher",
        "Generalised-mean pooling beats global average pooling",
        "Radenovic et al. 2018 (GeM): better retrieval than average (SPoC) and max (MAC) pooling",
    ),
    (
        "lse",
        "max2d",
        "accuracy",
        "higher",
        "Log-sum-exp pooling beats global average pooling",
        "Pinheiro & Collobert 2015: LSE pooling between average and max",
    ),
    (
        "rmac",
        "max2d",
        "accuracy",
        "higher",
        "R-MAC regional max pooling beats global average pooling",
        "Tolias et al. 2016: R-MAC beats MAC/SPoC on retrieval",
    ),
    (
        "attention_latent",
        "max2d",
        "accuracy",
        "higher",
        "Attention (latent query) pooling beats global average",
        "attention pooling heads (e.g. timm's AttentionPoolLatent) replace global average pooling",
    ),
    (
        "simpool",
        "max2d",
        "accuracy",
        "higher",
        "SimPool beats global average pooling",
        "Psomas et al. 2023 (SimPool): better than GAP in CNNs and ViTs",
    ),
)

#: claims the lab cannot test at this scale: (claim, published figure, why not here)
NOT_TESTABLE: tuple[tuple[str, str, str], ...] = (
    (
        "YOLOv3-SPP detects better than YOLOv3 (the SPP block's large pools)",
        "COCO test-dev at 608: 36.2 AP (60.6 AP50) for YOLOv3-SPP vs 33.0 AP (57.9 AP50) for YOLOv3 "
        "(darknet's model table)",
        "needs COCO (118k images) and about a GPU-week of training; here only the receptive field is "
        "measured (claim 7a)",
    ),
    (
        "NetVLAD pooling beats max/average pooling for place recognition",
        "Pitts30k-test recall@1 of about 85% for VGG-16 + NetVLAD, well above max pooling "
        "(Arandjelovic et al. 2016)",
        "needs Pittsburgh 250k/30k street-view images with GPS ground truth and a pretrained VGG-16",
    ),
    (
        "Bilinear pooling gives fine-grained accuracy",
        "CUB-200-2011: about 84% for B-CNN [D,M] without part annotations (Lin et al. 2015)",
        "needs CUB's 11,788 bird photos at 448x448 and ImageNet-pretrained VGG backbones",
    ),
)


def _claim(
    id_: str,
    topic: str,
    text: str,
    source: str,
    comparisons: list[Comparison],
    how: Literal["primary", "all"],
) -> Claim:
    """A claim judged by rule ``how``: the first comparison decides, or all must agree."""
    measurement = "; ".join(f"{c.name}: {c.label}" for c in comparisons if c.direction != "report")
    rule = _PRIMARY if how == "primary" else _ALL
    return _combine(Claim(id_, topic, text, source, measurement, rule, comparisons), how)


def _robustness_claims(ok: dict[str, Record], measured: dict[str, Any]) -> list[Claim]:
    claims = _robustness(ok)
    fixed = measured.get("fixed_size_head")
    for claim in claims:
        if claim.id == "2":
            claim.notes.append(
                "every model here ends in global average pooling (or a size-free head), so it accepts "
                "the resized images; a windowed classifier (flatten + linear, as in LeNet or VGG's fully "
                "connected layers) cannot take them at all"
                + (": " + "; ".join(f"{k}x: {v}" for k, v in fixed.items() if v != "runs") if fixed else "")
            )
    return claims


def _robustness(ok: dict[str, Record]) -> list[Claim]:
    c = _paired
    return [
        _claim(
            "1a",
            "noise",
            "Median pooling suppresses salt-and-pepper noise better than max pooling",
            "the survey (median pooling: the median of a window ignores isolated extreme pixels); no figure",
            [
                c(ok, "median2d", "max2d", "sp", "higher"),
                c(ok, "median2d", "avg2d", "sp", "higher"),
                c(ok, "median2d", "max2d", "gauss", "report"),
            ],
            "primary",
        ),
        _claim(
            "1b",
            "noise",
            "Pooling suppresses noise (max pooling vs a strided convolution that does not pool)",
            "the survey's opening claim; no figure",
            [
                c(ok, "max2d", "strided_conv", "sp", "higher"),
                c(ok, "max2d", "strided_conv", "gauss", "higher"),
            ],
            "all",
        ),
        _claim(
            "2",
            "scale",
            "Pooling improves scale invariance",
            "the survey's opening claim; no figure",
            [
                c(ok, "max2d", "strided_conv", "scale", "higher"),
                c(ok, "avg2d", "strided_conv", "scale", "report"),
            ],
            "primary",
        ),
        _claim(
            "3a",
            "rotation",
            "Pooling improves rotation invariance",
            "the survey's opening claim; no figure",
            [
                c(ok, "max2d", "strided_conv", "rotation", "higher"),
                c(ok, "avg2d", "strided_conv", "rotation", "report"),
            ],
            "primary",
        ),
        _claim(
            "3b",
            "shift",
            "Anti-aliased (blurred) pooling makes predictions more shift-consistent",
            "Zhang 2019 (BlurPool): ResNet-50 ImageNet consistency 87.4% with MaxPool, "
            "up to 91.3% anti-aliased",
            [
                c(ok, "maxblur2d", "max2d", "shift", "higher"),
                c(ok, "blur2d", "max2d", "shift", "report"),
                c(ok, "max2d", "strided_conv", "shift", "report"),
            ],
            "primary",
        ),
    ]


def _overfitting_claims(ok: dict[str, Record]) -> list[Claim]:
    out = []
    table = (
        (
            "5a",
            "overlapping_max2d",
            "Overlapping pooling makes a network harder to overfit than non-overlapping pooling",
            "Krizhevsky et al. 2012: overlapping 3x3/2 pooling cut ImageNet top-1/top-5 error by 0.4%/0.3%",
        ),
        (
            "5b",
            "stochastic2d",
            "Stochastic pooling regularises: a smaller train-test gap than max pooling",
            "Zeiler & Fergus 2013: CIFAR-10 test error 15.13% with stochastic pooling "
            "vs 19.40% with max pooling",
        ),
        (
            "5c",
            "mixed2d",
            "Mixed max/average pooling reduces overfitting",
            "Yu et al. 2014 (mixed pooling): lower test error than max and average pooling "
            "on CIFAR-10/100, SVHN",
        ),
        (
            "5d",
            "s3pool2d",
            "S3Pool (stochastic spatial sampling) regularises",
            "Zhai et al. 2017 (S3Pool): lower CIFAR test error than max pooling, as a regulariser",
        ),
    )
    for id_, name, text, source in table:
        comparisons = [
            _paired(ok, name, "max2d", "gap", "lower"),
            _paired(ok, name, "max2d", "accuracy", "report"),
        ]
        out.append(_claim(id_, "overfitting", text, source, comparisons, "primary"))
    return out


def _combined_claim(ok: dict[str, Record]) -> Claim:
    comparisons = [
        _paired(ok, name, base, "accuracy", "higher")
        for name in ("avgmax2d", "catavgmax2d")
        for base in ("max2d", "avg2d")
    ]
    claim = Claim(
        "6",
        "combined",
        "Combining average and max pooling enriches features (more accurate than both)",
        "the survey (combined pooling); no figure",
        "supported when some combined variant is supported against "
        "both max2d and avg2d; not supported when every combined variant is significantly below "
        "at least one; "
        "else inconclusive",
        "test accuracy",
        comparisons,
        notes=[
            "avgmax2d has the parameters of max2d; catavgmax2d doubles the channels into the next "
            "convolution (about twice the parameters of stage 2 and 3), so it is not an "
            "equal-parameter comparison"
        ],
    )
    by_variant: dict[str, list[Comparison]] = {}
    for c in comparisons:
        if c.verdict != "not tested":
            by_variant.setdefault(c.variant, []).append(c)
    if not by_variant or any(len(v) < 2 for v in by_variant.values()):
        claim.reason = "needs max2d, avg2d and avgmax2d or catavgmax2d in the run"
        return claim
    if any(all(c.verdict == "supported" for c in cs) for cs in by_variant.values()):
        claim.verdict, claim.reason = "supported", "a combined variant is above both baselines"
    elif all(any(c.verdict == "not supported" for c in cs) for cs in by_variant.values()):
        claim.verdict, claim.reason = "not supported", "every combined variant is below max2d or avg2d"
    else:
        claim.verdict = "inconclusive"
        claim.reason = "; ".join(f"{c.name}: {c.reason}" for c in comparisons if c.verdict == "inconclusive")
    return claim


def _deterministic(c: Comparison, value: float, unit: str) -> Comparison:
    c.values, c.interval, c.unit = [value], Interval(value, value, value, 1), unit
    good = value > 0 if c.direction == "higher" else value < 0
    c.verdict = "supported" if good else "not supported"
    c.reason = f"{value:+,.0f} {unit}, an exact count (no sampling noise)"
    return c


def _computation_claim(measurements: dict[str, Any]) -> Claim:
    costs = measurements.get("costs", {})
    text = "Pooling reduces computation"
    source = "the survey's opening claim; no figure"
    rule = (
        "supported when max pooling's FLOPs are below the pool-free network's and the 95% interval of the "
        "paired latency differences (one pair per timing round) is below 0"
    )
    if "max2d" not in costs or "(no pooling)" not in costs:
        return Claim(
            "4", "computation", text, source, "FLOPs and latency", rule, [], reason="max2d not in this run"
        )
    a, b = costs["max2d"], costs["(no pooling)"]
    flops = _deterministic(
        Comparison("max2d", "(no pooling)", "flops", "FLOPs per image", "lower"),
        a["flops"] - b["flops"],
        "FLOPs",
    )
    latency = _judge(
        Comparison("max2d", "(no pooling)", "latency", "forward latency per batch (ms)", "lower"),
        [x - y for x, y in zip(a["latency_runs"], b["latency_runs"])],
    )
    claim = Claim(
        "4",
        "computation",
        text,
        source,
        "FLOPs (counted) and forward latency (measured)",
        rule,
        [flops, latency],
    )
    claim.notes.append(
        f"per image: max2d {a['flops'] / 1e6:.2f} MFLOPs vs {b['flops'] / 1e6:.2f} without pools "
        f"({b['flops'] / a['flops']:.1f}x); forward of a batch {statistics.median(a['latency_runs']):.1f} ms "
        f"vs {statistics.median(b['latency_runs']):.1f} ms (medians of the timing rounds)"
    )
    return _combine(claim, "all")


def _spp_claims(ok: dict[str, Record], measurements: dict[str, Any]) -> list[Claim]:
    rf = measurements.get("spp_receptive_fields")
    out = []
    if rf:
        comparisons = [
            _deterministic(
                Comparison(
                    "yolov3-spp", "yolov3", "rf", "receptive field at the coarsest [yolo] (px)", "higher"
                ),
                rf["yolov3-spp"][0] - rf["yolov3"][0],
                "px",
            ),
            _deterministic(
                Comparison(
                    "yolov3-spp-19",
                    "yolov3-spp",
                    "rf",
                    "receptive field at the coarsest [yolo] (px)",
                    "higher",
                ),
                rf["yolov3-spp-19"][0] - rf["yolov3-spp"][0],
                "px",
            ),
        ]
        claim = _combine(
            Claim(
                "7a",
                "SPP",
                "The SPP block's large max pools grow YOLOv3's receptive field "
                "(and a 19x19 pool grows it more)",
                "the survey, on YOLOv3-SPP (36.2 vs 33.0 COCO AP at 608)",
                "receptive field (darknet's arithmetic) of YOLOv3, YOLOv3-SPP 5/9/13 and 5/9/13/19 "
                "at 608x608",
                "supported when the receptive field grows (an exact computation)",
                comparisons,
            ),
            "all",
        )
        claim.notes.append(
            f"receptive fields at the three [yolo] outputs (strides {rf['jump']}): yolov3 {rf['yolov3']}, "
            f"yolov3-spp {rf['yolov3-spp']}, 5/9/13/19 {rf['yolov3-spp-19']}. Every one already exceeds the "
            "608-pixel input without SPP, so the growth is of the theoretical field beyond the image: it "
            "does not by itself explain the AP gain (the effective receptive field is much smaller)."
        )
        out.append(claim)
    out.append(
        _claim(
            "7b",
            "SPP",
            "An SPP block (stride-1 max pools 5/9/13) before the head helps the lab's CNN",
            "the survey, on YOLOv3-SPP",
            [_paired(ok, "yolo_spp", "max2d", "accuracy", "higher")],
            "primary",
        )
    )
    out.append(
        _claim(
            "7c",
            "SPP",
            "Adding a 19x19 pool to the SPP block (5/9/13/19) helps further",
            "the survey's proposal; no figure",
            [_paired(ok, "yolo_spp_k19", "yolo_spp", "accuracy", "higher")],
            "primary",
        )
    )
    return out


def _unpooling_claim(measurements: dict[str, Any]) -> Claim:
    u = measurements.get("unpooling")
    rule = (
        "supported when the 95% interval of max-unpool's reconstruction error over the test images is above 0"
    )
    text = "Unpooling is not the inverse of pooling (max-pool then max-unpool loses information)"
    source = "the survey (unpooling, SegNet/DeconvNet); no figure"
    if not u:
        return Claim("8", "unpooling", text, source, "reconstruction error", rule, [], reason="not measured")
    comparisons = [
        _judge(
            Comparison("max_unpool", None, "mse", "mean squared reconstruction error", "higher"),
            u["per_image"]["max_unpool"],
        )
    ]
    for other in ("nearest", "bilinear"):
        diffs = [a - b for a, b in zip(u["per_image"]["max_unpool"], u["per_image"][other])]
        comparisons.append(
            _judge(Comparison("max_unpool", other, "mse", "reconstruction error", "report"), diffs)
        )
    claim = _combine(
        Claim(
            "8",
            "unpooling",
            text,
            source,
            f"per-image MSE of 2x2 max pooling undone, on {u['images']} test images",
            rule,
            comparisons,
        ),
        "primary",
    )
    claim.notes.append("intervals here are over test images, not seeds (nothing is trained)")
    return claim


def _global_claim(ok: dict[str, Record], measurements: dict[str, Any], num_classes: int) -> Claim:
    chance = 1.0 / num_classes
    heads = [n for n, v in ok.items() if v.get("role") in ("head", "neck")]
    if "max2d" in ok:
        heads.insert(0, "max2d")
    comparisons = []
    for name in heads:
        c = Comparison(
            name, None, "keep", "mean accuracy at other sizes - chance - half of (clean - chance)", "higher"
        )
        values: list[float] = []
        for r in ok[name]["per_seed"]:
            sized = [r["accuracy"].get(f"scale {s:g}") for s in SCALES]
            if any(v is None for v in sized):
                values = []
                c.verdict, c.reason = "not supported", "the forward pass fails at another size"
                break
            kept = statistics.fmean(v for v in sized if v is not None)
            values.append(kept - chance - 0.5 * (r["test_accuracy"] - chance))
        comparisons.append(_judge(c, values) if values else c)
    text = "Global pooling frees the model from a fixed input size"
    claim = Claim(
        "9",
        "global pooling",
        text,
        "the survey (global pooling, SPPNet); no figure",
        f"accuracy at {', '.join(f'{s:g}x' for s in SCALES)} the training size, without retraining, for each "
        "size-free head (max2d's model is the global-average head)",
        "for each head: supported when it runs at every size and keeps at least half of its above-chance "
        "accuracy (interval above 0); the claim: " + _ALL,
        comparisons,
    )
    fixed = measurements.get("fixed_size_head")
    if fixed:
        failures = {k: v for k, v in fixed.items() if v != "runs"}
        claim.notes.append(
            "a flatten + linear classifier (no global pooling) runs only at its training size: "
            + "; ".join(f"{k}x: {v}" for k, v in failures.items())
        )
    if not comparisons:
        claim.reason = "no size-free head in this run"
        return claim
    return _combine(claim, "all")


def _paper_claims(ok: dict[str, Record], present: set[str]) -> list[Claim]:
    out = []
    for i, (name, base, key, direction, text, source) in enumerate(
        [p for p in PAPER_CLAIMS if p[0] in present], start=1
    ):
        out.append(
            _claim(
                f"10{chr(96 + i)}",
                "newer pools",
                text,
                source,
                [_paired(ok, name, base, key, direction)],
                "primary",
            )
        )
    return out


def evaluate_claims(
    variants: list[dict[str, Any]],
    measurements: dict[str, Any] | None = None,
    num_classes: int = 10,
) -> list[Claim]:
    """Judges every claim on the results of this run.

    Args:
        variants: the ``variants`` entries of ``results.json`` (each with its ``per_seed`` records).
        measurements: the ``measurements`` of ``results.json`` (costs, unpooling, receptive
            fields, fixed-size head); claims that need a missing one are *not tested*.
        num_classes: classes (chance accuracy is ``1 / num_classes``).

    Returns:
        The claims in report order.
    """
    ok = {v["name"]: v for v in variants if v["status"] == "ok"}
    measured = measurements or {}
    present = {v["name"] for v in variants}
    return [
        *_robustness_claims(ok, measured),
        _computation_claim(measured),
        *_overfitting_claims(ok),
        _combined_claim(ok),
        *_spp_claims(ok, measured),
        _unpooling_claim(measured),
        _global_claim(ok, measured, num_classes),
        *_paper_claims(ok, present),
    ]
