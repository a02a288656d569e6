"""Bad input raises ValueError/TypeError whose message names the parameter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import torchpool as tp

x4 = torch.rand(2, 3, 8, 8)
idx = torch.nn.functional.max_pool2d(torch.rand(2, 3, 8, 8), 2, return_indices=True)[1]
y4 = torch.rand(2, 3, 4, 4)


def _wrong(value: object) -> Any:
    """``value`` unchanged, typed ``Any``: a deliberately wrong argument the type checker must let through."""
    return value


BAD_CALLS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("shape-kernel-zero", lambda: tp.pool_output_size(5, 0), ValueError, "kernel_size"),
    ("shape-stride-negative", lambda: tp.pool_output_size(5, 2, -1), ValueError, "stride"),
    ("shape-padding-too-big", lambda: tp.pool_output_size(5, 2, 1, padding=2), ValueError, "padding"),
    ("shape-window-too-big", lambda: tp.pool_output_size(3, 5), ValueError, "larger than the padded input"),
    ("shape-float-kernel", lambda: tp.pool_output_size(5, _wrong(2.0)), TypeError, "kernel_size"),
    ("shape-bool-stride", lambda: tp.pool_output_size(5, 2, _wrong(True)), TypeError, "stride"),
    ("shape-tuple-length", lambda: tp.pool_output_size((5, 5), (2, 2, 2)), ValueError, "kernel_size"),
    ("shape-ceil-mode-int", lambda: tp.pool_output_size(5, 2, ceil_mode=_wrong(1)), TypeError, "ceil_mode"),
    ("shape-dilation-zero", lambda: tp.pool_output_size(5, 2, dilation=0), ValueError, "dilation"),
    ("avgmax-not-tensor", lambda: tp.avgmax_pool2d(_wrong([[1.0]]), 2), TypeError, "input"),
    ("avgmax-wrong-ndim", lambda: tp.avgmax_pool2d(torch.rand(8, 8), 2), ValueError, "input"),
    (
        "avgmax-int-dtype",
        lambda: tp.avgmax_pool2d(torch.ones(1, 1, 4, 4, dtype=torch.int64), 2),
        TypeError,
        "dtype",
    ),
    ("avgmax-kernel-too-big", lambda: tp.avgmax_pool2d(x4, 9), ValueError, "input"),
    ("catavgmax-stride-zero", lambda: tp.catavgmax_pool2d(x4, 2, 0), ValueError, "stride"),
    (
        "avgmax-ceil-mode-str",
        lambda: tp.avgmax_pool1d(torch.rand(1, 2, 8), 2, ceil_mode=_wrong("yes")),
        TypeError,
        "ceil_mode",
    ),
    ("adaptive-output-size-zero", lambda: tp.adaptive_avgmax_pool2d(x4, 0), ValueError, "output_size"),
    (
        "adaptive-output-size-str",
        lambda: tp.adaptive_catavgmax_pool2d(x4, _wrong("1")),
        TypeError,
        "output_size",
    ),
    ("mixed-probability", lambda: tp.mixed_pool2d(x4, 2, max_probability=1.5), ValueError, "max_probability"),
    ("mixed-generator", lambda: tp.mixed_pool2d(x4, 2, generator=_wrong(1)), TypeError, "generator"),
    ("mixed-training-str", lambda: tp.mixed_pool2d(x4, 2, training=_wrong("no")), TypeError, "training"),
    ("learned-channels", lambda: tp.LearnedMixedPool2d(2, channels=0), ValueError, "channels"),
    ("learned-channels-mismatch", lambda: tp.LearnedMixedPool2d(2, channels=4)(x4), ValueError, "channels"),
    ("gated-channels-mismatch", lambda: tp.GatedPool2d(2, channels=5)(x4), ValueError, "channels"),
    ("global-fmt", lambda: tp.global_avg_pool(x4, input_fmt="NWHC"), ValueError, "input_fmt"),
    ("global-flatten", lambda: tp.global_max_pool(x4, flatten=_wrong("yes")), TypeError, "flatten"),
    ("global-ndim", lambda: tp.global_avg_pool(torch.rand(3, 4)), ValueError, "input"),
    ("gem-p-negative", lambda: tp.gem(x4, p=-1.0), ValueError, "p"),
    ("gem-eps-zero", lambda: tp.GeM(eps=0.0), ValueError, "eps"),
    ("gem-p-shape", lambda: tp.gem(x4, p=torch.ones(5)), ValueError, "p must have"),
    ("unpool-int-indices", lambda: tp.max_unpool2d(y4, idx.int(), 2), TypeError, "indices"),
    ("unpool-indices-shape", lambda: tp.max_unpool2d(y4, idx[:, :2], 2), ValueError, "indices"),
    ("unpool-indices-range", lambda: tp.max_unpool2d(y4, idx + 100, 2), ValueError, "indices"),
    ("unpool-reduce", lambda: tp.max_unpool2d(y4, idx, 2, reduce="max"), ValueError, "reduce"),
    (
        "unpool-output-size",
        lambda: tp.max_unpool2d(y4, idx, 2, output_size=(20, 20)),
        ValueError,
        "output_size",
    ),
    (
        "unpool-output-size-type",
        lambda: tp.max_unpool2d(y4, idx, 2, output_size=_wrong(8)),
        TypeError,
        "output_size",
    ),
    (
        "median-padding-mode",
        lambda: tp.median_pool2d(x4, 3, padding=1, padding_mode="wrap"),
        ValueError,
        "padding_mode",
    ),
    ("median-kernel-zero", lambda: tp.median_pool2d(x4, 0), ValueError, "kernel_size"),
    ("stochastic-negative", lambda: tp.stochastic_pool2d(x4 - 1, 2), ValueError, "input"),
    (
        "stochastic-generator",
        lambda: tp.stochastic_pool2d(x4, 2, generator=_wrong("seed")),
        TypeError,
        "generator",
    ),
    ("registry-unknown", lambda: tp.create_pool("medain2d"), ValueError, "median2d"),
    ("registry-bad-type", lambda: tp.create_pool(_wrong(3)), TypeError, "pool"),
    (
        "registry-duplicate",
        lambda: tp.register_pool("max2d", torch.nn.MaxPool2d, family="x", dims=(2,)),
        ValueError,
        "already registered",
    ),
    ("registry-not-module", lambda: tp.create_pool(_wrong(lambda: 3)), TypeError, "nn.Module"),
]


@pytest.mark.parametrize(("call", "error", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_CALLS])
def test_bad_call_raises_naming_the_parameter(
    call: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call()


def test_enough_distinct_bad_calls() -> None:
    assert len({name for name, *_ in BAD_CALLS}) >= 25
