"""The claims lab's parts that need no training: statistics, verdicts, the YOLOv3 cfg, measurements.

Every expected value here comes from an independent computation (scipy's t quantiles, the
published darknet cfg files, explicit loops), not from the lab's own code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from torchpool.darknet import trace_cfg
from torchpool.lab.claims import evaluate_claims, metric
from torchpool.lab.measure import costs, fixed_size_head, no_pool_model, spp_receptive_fields, unpooling
from torchpool.lab.models import (
    DEFAULT_VARIANTS,
    OPTIONAL_VARIANTS,
    build_model,
    default_variants,
    init_shared,
    resolve_variant,
)
from torchpool.lab.stats import paired_interval, t_quantile, verdict
from torchpool.lab.training import SCALES, rotate, shift
from torchpool.lab.yolocfg import spp_block, yolov3_cfg

DARKNET = Path(__file__).parent / "data" / "darknet"


# ---------------------------------------------------------------------------------------------- statistics


def test_t_quantiles_match_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in [*range(1, 40), 50, 100, 1000]:
        assert t_quantile(df) == pytest.approx(float(stats.t.ppf(0.975, df)), abs=2e-3)
    with pytest.raises(ValueError, match="df"):
        t_quantile(0)


def test_paired_interval_by_hand() -> None:
    values = [0.02, 0.05, -0.01, 0.04]
    mean = sum(values) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    half = 3.182 * sd / 2  # t_{0.975, 3} * sd / sqrt(4)
    i = paired_interval(values)
    assert (i.mean, i.low, i.high, i.n) == pytest.approx((mean, mean - half, mean + half, 4))
    one = paired_interval([0.3])
    assert one.n == 1 and math.isnan(one.low)
    with pytest.raises(ValueError):
        paired_interval([])


@pytest.mark.parametrize(
    ("values", "direction", "expected"),
    [
        ([0.02, 0.03, 0.025], "higher", "supported"),
        ([0.02, 0.03, 0.025], "lower", "not supported"),
        ([-0.02, -0.03, -0.025], "lower", "supported"),
        ([-0.02, 0.03, 0.01], "higher", "inconclusive"),
        ([0.05], "higher", "inconclusive"),
    ],
)
def test_verdict_rule(values: list[float], direction: str, expected: str) -> None:
    result, reason = verdict(paired_interval(values), direction)
    assert result == expected
    if len(values) == 1:
        assert "one seed" in reason
    elif expected == "inconclusive":
        assert "contains 0" in reason
    with pytest.raises(ValueError, match="direction"):
        verdict(paired_interval(values), "up")


# ---------------------------------------------------------------------------------------------- claims


def _record(seed: int, acc: float, train: float = 1.0, **sets: float) -> dict[str, Any]:
    accuracy = {"sp 0.1": acc, "gauss 0.2": acc, "rot -15": acc, "rot +15": acc}
    accuracy.update({f"scale {s:g}": acc for s in SCALES})
    accuracy.update(
        {
            k.replace("_", " ").replace("sp ", "sp 0.").replace("gauss ", "gauss 0."): v
            for k, v in sets.items()
        }
    )
    return {"seed": seed, "test_accuracy": acc, "train_accuracy": train, "accuracy": accuracy,
            "shift_consistency": sets.get("shift", 0.8)}  # fmt: skip


def _variant(name: str, records: list[dict[str, Any]], role: str = "pool") -> dict[str, Any]:
    return {"name": name, "status": "ok", "role": role, "per_seed": records}


def test_metrics_from_a_record() -> None:
    r = _record(0, 0.9, 0.95)
    r["accuracy"]["sp 0.1"] = 0.6
    r["accuracy"]["rot -15"], r["accuracy"]["rot +15"] = 0.7, 0.8
    assert metric("gap", r) == pytest.approx(0.05)
    assert metric("sp", r) == pytest.approx(-0.3)
    assert metric("rotation", r) == pytest.approx(-0.15)
    r["accuracy"]["scale 1.5"] = None
    assert metric("scale", r) is None
    with pytest.raises(ValueError, match="unknown metric"):
        metric("speed", r)


def test_claims_are_judged_on_paired_differences() -> None:
    # median2d loses less than max2d under salt-and-pepper noise in every seed: supported, although
    # the seeds' own accuracies spread far more than the difference (pairing removes that spread)
    seeds = [0.70, 0.90, 0.80]
    max_runs = [_record(s, a) for s, a in enumerate(seeds)]
    for r in max_runs:
        r["accuracy"]["sp 0.1"] = r["test_accuracy"] - 0.30
    median_runs = [_record(s, a) for s, a in enumerate(seeds)]
    for r, d in zip(median_runs, (0.10, 0.11, 0.12)):
        r["accuracy"]["sp 0.1"] = r["test_accuracy"] - d
    # stochastic2d: a larger gap than max2d in two seeds, smaller in one: inconclusive
    stochastic = [_record(s, a, train=t) for s, (a, t) in enumerate(zip(seeds, (0.8, 0.9, 0.95)))]
    # overlapping: a consistently larger gap: not supported
    overlapping = [_record(s, a - 0.05) for s, a in enumerate(seeds)]
    variants = [
        _variant("max2d", max_runs),
        _variant("median2d", median_runs),
        _variant("stochastic2d", stochastic),
        _variant("overlapping_max2d", overlapping),
        {"name": "mixed2d", "status": "skipped", "per_seed": []},
    ]
    claims = {c.id: c for c in evaluate_claims(variants, {}, 10)}
    assert claims["1a"].verdict == "supported"
    first = claims["1a"].comparisons[0]
    assert first.values == pytest.approx([0.20, 0.19, 0.18]) and first.interval is not None
    assert first.interval.mean == pytest.approx(0.19)
    assert claims["5b"].verdict == "inconclusive" and "contains 0" in claims["5b"].reason
    assert claims["5a"].verdict == "not supported"
    assert claims["5c"].verdict == "not tested" and "mixed2d" in claims["5c"].reason
    assert claims["4"].verdict == "not tested" and claims["8"].verdict == "not tested"
    one_seed = [_variant(v["name"], v["per_seed"][:1]) for v in variants[:4]]
    assert {c.id: c.verdict for c in evaluate_claims(one_seed, {}, 10)}["1a"] == "inconclusive"


def test_global_head_claim_keeps_half_of_above_chance_accuracy() -> None:
    def head(name: str, kept: float) -> dict[str, Any]:
        runs = []
        for s in range(3):
            r = _record(s, 0.9 + 0.01 * s)
            for f in SCALES:
                r["accuracy"][f"scale {f:g}"] = kept + 0.005 * s
            runs.append(r)
        return _variant(name, runs, role="head")

    # chance 0.1, clean ~0.91: half of the above-chance accuracy is ~0.5
    claims = {c.id: c for c in evaluate_claims([head("gem", 0.64)], {}, 10)}
    assert claims["9"].verdict == "supported"
    claims = {c.id: c for c in evaluate_claims([head("gem", 0.64), head("spp2d", 0.3)], {}, 10)}
    assert claims["9"].verdict == "not supported" and "spp2d" in claims["9"].reason
    failing = head("netvlad", 0.7)
    failing["per_seed"][1]["accuracy"]["scale 0.75"] = None
    claims = {c.id: c for c in evaluate_claims([failing], {}, 10)}
    assert claims["9"].verdict == "not supported"


def test_deterministic_claims_from_measurements() -> None:
    cost = {
        "max2d": {"flops": 100, "latency_runs": [1.0, 1.1, 0.9, 1.0]},
        "(no pooling)": {"flops": 900, "latency_runs": [3.0, 3.2, 2.9, 3.1]},
    }
    u = unpooling(torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    measured = {"costs": cost, "unpooling": u, "spp_receptive_fields": spp_receptive_fields()}
    claims = {c.id: c for c in evaluate_claims([], measured, 10)}
    assert claims["4"].verdict == "supported" and claims["7a"].verdict == "supported"
    assert claims["8"].verdict == "supported"
    cost["max2d"]["flops"] = 1000
    assert {c.id: c.verdict for c in evaluate_claims([], measured, 10)}["4"] == "not supported"


# ---------------------------------------------------------------------------------------------- measurements


@pytest.mark.parametrize(("name", "spp"), [("yolov3", None), ("yolov3-spp", (5, 9, 13))])
def test_generated_cfg_matches_the_published_file(name: str, spp: tuple[int, ...] | None) -> None:
    def key(text: str) -> list[tuple[object, ...]]:
        return [
            (s.type, s.width, s.height, s.channels, s.rf_width, s.rf_height, s.jump_width)
            for s in trace_cfg(text, 608, 608)
        ]

    assert key(yolov3_cfg(spp)) == key((DARKNET / f"{name}.cfg").read_text())


def test_spp_receptive_fields_grow_by_the_extra_pool() -> None:
    rf = spp_receptive_fields()
    assert rf["yolov3"] == [917, 949, 965] and rf["jump"] == [32, 16, 8]
    # an SPP block grows the field by (largest kernel - 1) * jump at the block (stride 32)
    assert [b - a for a, b in zip(rf["yolov3"], rf["yolov3-spp"])] == [12 * 32] * 3
    assert [b - a for a, b in zip(rf["yolov3-spp"], rf["yolov3-spp-19"])] == [6 * 32] * 3
    with pytest.raises(ValueError, match="sizes"):
        spp_block(())


def test_unpooling_errors_by_hand() -> None:
    x = torch.tensor(
        [[[[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5], [0.2, 0.2, 0.0, 0.0], [0.2, 0.2, 0.0, 0.0]]]]
    )
    u = unpooling(x)
    # max-unpool keeps 1.0, 0.5, one 0.2 (the first maximum) and zeros: error 3 * 0.04 / 16
    assert u["mse"]["max_unpool"] == pytest.approx(3 * 0.04 / 16)
    # nearest copies each maximum over its window: three errors of 1 around the 1.0, three of 0.25 around 0.5
    assert u["mse"]["nearest"] == pytest.approx((3 * 1.0 + 3 * 0.25) / 16)
    assert u["images"] == 1


def test_costs_count_flops_and_time_every_model() -> None:
    spec = resolve_variant("max2d")
    models = {"max2d": build_model(spec, 10, (16, 16)), "(no pooling)": no_pool_model(10)}
    out = costs(models, (16, 16), batch=8, repeats=2)
    # conv flops by hand: 2 * k*k * cin * cout * h * w per conv; the classifier 2 * 64 * 10
    by_hand = 2 * 9 * (1 * 16 * 256 + 16 * 32 * 64 + 32 * 64 * 16) + 2 * 64 * 10
    assert out["max2d"]["flops"] == by_hand
    assert out["(no pooling)"]["flops"] == 2 * 9 * (16 + 16 * 32 + 32 * 64) * 256 + 2 * 64 * 10
    for entry in out.values():
        assert len(entry["latency_runs"]) == 2 and entry["latency_ms"] > 0 and entry["step_seconds"] > 0


def test_fixed_size_head_fails_at_other_sizes() -> None:
    out = fixed_size_head(10, (16, 16), (0.75, 1.5))
    assert out["scale 1"] == "runs"
    assert (
        "shapes cannot be multiplied" in out["scale 0.75"]
        and "shapes cannot be multiplied" in out["scale 1.5"]
    )


def test_rotation_and_shift_by_hand() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 1, 2] = 1.0  # one pixel above the centre
    turned = rotate(x, 90.0)
    assert turned.flatten().argmax().item() in (2 * 5 + 1, 2 * 5 + 3)  # now left or right of the centre
    assert torch.equal(rotate(x, 0.0), x)
    images = torch.arange(2 * 36, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    moved = shift(images, 2, torch.Generator().manual_seed(3))
    for i in range(2):
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                expected = torch.zeros(6, 6)
                for r in range(6):
                    for c in range(6):
                        if 0 <= r - dy < 6 and 0 <= c - dx < 6:
                            expected[r, c] = images[i, 0, r - dy, c - dx]
                if torch.equal(moved[i, 0], expected):
                    matches.append((dy, dx))
        assert len(matches) == 1 and matches[0] != (0, 0)


# ---------------------------------------------------------------------------------------------- variants


def test_default_variants_and_zoo_pools() -> None:
    names = default_variants()
    assert names[: len(DEFAULT_VARIANTS)] == list(DEFAULT_VARIANTS)
    for name in names[len(DEFAULT_VARIANTS) :]:
        assert name in OPTIONAL_VARIANTS
    for name in names:
        spec = resolve_variant(name)
        model = build_model(spec, 10, (16, 16)).eval()
        with torch.no_grad():
            assert model(torch.rand(2, 1, 16, 16)).shape == (2, 10)
    assert resolve_variant("strided_conv").family == "control"
    assert resolve_variant("yolo_spp_k19").kwargs == {"kernel_sizes": (5, 9, 13, 19)}


def test_shared_layers_start_alike_across_variants() -> None:
    a = build_model(resolve_variant("max2d"), 10, (16, 16))
    b = build_model(resolve_variant("gated2d"), 10, (16, 16))  # its pools draw parameters when built
    torch.manual_seed(123)
    init_shared(a, 5)
    init_shared(b, 5)
    for part in ("stage1", "stage2", "stage3", "classifier"):
        for pa, pb in zip(getattr(a, part).parameters(), getattr(b, part).parameters()):
            assert torch.equal(pa, pb)
    state = torch.random.get_rng_state()
    init_shared(a, 6)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is left alone
    assert not torch.equal(next(a.stage1.parameters()), next(b.stage1.parameters()))
