r"""One record per op: its function, its Module, its float64 reference and its cases.

Records of later families live in their family's ``records/<family>.py`` (a list ``OPS``, beside
the family's ``PoolRecord``\ s).

The generic tests in ``test_ops.py`` iterate over ``OPS``; a new op gets the whole test set
by adding a record here. An op's name is its pool's registry name (with a ``-`` suffix for a
rank or a mode of a rank-generic pool: ``gem-1d``, ``stochastic1d-eval``), which links it to
the pool's ``PoolRecord`` (``tests/records/``): :data:`OPS_BY_POOL`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from op_record import Case, OpRecord
from records import FAMILIES
from reference import (
    adaptive_reference,
    avg_pool_reference,
    gated_reference,
    gem_reference,
    global_reference,
    max_pool_reference,
    max_unpool_reference,
    median_pool_reference,
    stochastic_eval_reference,
)
from torch import Tensor, nn

import torchpool as tp

Size = int | tuple[int, ...]


def _avgmax_ref(
    x: Tensor,
    kernel_size: Size,
    stride: Size | None = None,
    padding: Size = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    avg = avg_pool_reference(x, kernel_size, stride, padding, ceil_mode, count_include_pad)
    return 0.5 * (avg + max_pool_reference(x, kernel_size, stride, padding, ceil_mode))


def _catavgmax_ref(
    x: Tensor,
    kernel_size: Size,
    stride: Size | None = None,
    padding: Size = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    avg = avg_pool_reference(x, kernel_size, stride, padding, ceil_mode, count_include_pad)
    return torch.cat([avg, max_pool_reference(x, kernel_size, stride, padding, ceil_mode)], 1)


def _mixed_ref(
    x: Tensor,
    kernel_size: Size,
    stride: Size | None = None,
    padding: Size = 0,
    max_probability: float = 0.5,
    ceil_mode: bool = False,
) -> Tensor:
    mx = max_pool_reference(x, kernel_size, stride, padding, ceil_mode)
    avg = avg_pool_reference(x, kernel_size, stride, padding, ceil_mode)
    return max_probability * mx + (1 - max_probability) * avg


# ceil_mode cases of the combined pools (their 2-d ones are in _WINDOW_CASES)
_CEIL_CASES = {
    1: (Case((2, 2, 8), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),),
    2: (),
    3: (Case((1, 2, 4, 5, 4), {"kernel_size": 2, "stride": 2, "ceil_mode": True}),),
}
_CEIL_2D = Case((1, 2, 8, 8), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True})


_WINDOW_CASES = {
    1: (Case((2, 3, 9), {"kernel_size": 3, "stride": 2, "padding": 1}), Case((1, 2, 8), {"kernel_size": 2})),
    2: (
        Case((2, 3, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1}),
        Case((1, 2, 5, 5), {"kernel_size": (2, 3), "stride": (1, 2)}),
        Case((1, 2, 5, 5), {"kernel_size": 2, "stride": 2, "ceil_mode": True, "count_include_pad": False}),
    ),
    3: (Case((1, 2, 4, 5, 4), {"kernel_size": 2, "stride": (1, 2, 2), "padding": 1}),),
}


def _without(cases: tuple[Case, ...], *names: str) -> tuple[Case, ...]:
    return tuple(Case(c.shape, {k: v for k, v in c.kwargs.items() if k not in names}) for c in cases)


def _median_ref(
    x: Tensor,
    kernel_size: Size,
    stride: Size | None = None,
    padding: Size = 0,
    dilation: Size = 1,
    ceil_mode: bool = False,
    padding_mode: str = "reflect",
) -> Tensor:
    return median_pool_reference(x, kernel_size, stride, padding, padding_mode, dilation, ceil_mode)


def _median_cases(n: int) -> tuple[Case, ...]:
    base = _without(_WINDOW_CASES[n], "count_include_pad")
    modes = ("reflect", "zeros", "replicate")
    cases = tuple(Case(c.shape, {**c.kwargs, "padding_mode": modes[i % 3]}) for i, c in enumerate(base))
    extra = {"dilation": 2, "ceil_mode": True, "padding_mode": "circular"}
    return (*cases, Case(base[0].shape, {**base[0].kwargs, **extra}))


def _unpool_indices(shape: tuple[int, ...], kernel_size: int, stride: int, padding: int) -> Tensor:
    """Switches from a real max pool whose output has ``shape`` (overlapping windows give duplicates)."""
    n = 2
    k, s, p = (torch.nn.modules.utils._pair(v) for v in (kernel_size, stride, padding))
    batched = shape if len(shape) == n + 2 else (1, *shape)
    size = [(o - 1) * ss - 2 * pp + kk for o, kk, ss, pp in zip(batched[2:], k, s, p)]
    g = torch.Generator().manual_seed(1)
    source = torch.randn(1, batched[1], *size, generator=g)  # same switches for every sample
    _, indices = F.max_pool2d(source, k, s, p, return_indices=True)
    return indices.expand(batched[0], -1, -1, -1) if len(shape) == n + 2 else indices[0]


def _unpool_fn(x: Tensor, kernel_size: int, stride: int, padding: int, reduce: str = "mean") -> Tensor:
    indices = _unpool_indices(tuple(x.shape), kernel_size, stride, padding)
    return tp.max_unpool2d(x, indices, kernel_size, stride, padding, reduce=reduce)


class _UnpoolModule(nn.Module):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.unpool = tp.MaxUnpool2d(**kwargs)

    def forward(self, x: Tensor) -> Tensor:
        k = self.kwargs
        indices = _unpool_indices(tuple(x.shape), k["kernel_size"], k["stride"], k["padding"])
        out: Tensor = self.unpool(x, indices)
        return out


def _unpool_ref(x: Tensor, kernel_size: int, stride: int, padding: int, reduce: str = "mean") -> Tensor:
    indices = _unpool_indices(tuple(x.shape), kernel_size, stride, padding)
    size = [(o - 1) * stride - 2 * padding + kernel_size for o in x.shape[2:]]
    return max_unpool_reference(x, indices, size, reduce)


def _gated_module(
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    channels: int | None = None,
    ceil_mode: bool = False,
) -> tp.GatedPool2d:
    module = tp.GatedPool2d(kernel_size, stride, padding, channels=channels, ceil_mode=ceil_mode)
    with torch.no_grad():
        module.gate_weight.copy_(
            torch.linspace(-1.5, 1.0, module.gate_weight.numel()).reshape_as(module.gate_weight)
        )
    return module


def _gated_fn(x: Tensor, **kwargs: Any) -> Tensor:
    out: Tensor = _gated_module(**kwargs).to(x.dtype)(x)
    return out


def _gated_ref(
    x: Tensor,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    channels: int | None = None,
    ceil_mode: bool = False,
) -> Tensor:
    weight = _gated_module(kernel_size, stride, padding, channels).gate_weight.detach()
    return gated_reference(x, weight, kernel_size, stride or kernel_size, padding, ceil_mode)


def _learned_module(
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    channels: int | None = None,
    ceil_mode: bool = False,
) -> tp.LearnedMixedPool2d:
    module = tp.LearnedMixedPool2d(kernel_size, stride, padding, channels=channels, ceil_mode=ceil_mode)
    with torch.no_grad():
        module.mix_logit.copy_(torch.linspace(-2.0, 1.0, module.mix_logit.numel()))
    return module


def _learned_ref(
    x: Tensor,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    channels: int | None = None,
    ceil_mode: bool = False,
) -> Tensor:
    a = torch.sigmoid(torch.linspace(-2.0, 1.0, channels or 1).double()).reshape(-1, 1, 1)
    return a * max_pool_reference(x, kernel_size, stride, padding, ceil_mode) + (1 - a) * avg_pool_reference(
        x, kernel_size, stride, padding, ceil_mode
    )


def _gem_ref(
    x: Tensor, p: float = 3.0, eps: float = 1e-6, flatten: bool = True, input_fmt: str = "NCHW"
) -> Tensor:
    return gem_reference(x if input_fmt == "NCHW" else x.movedim(-1, 1), p, eps)


def _global_ref(reduce: str) -> Callable[..., Tensor]:
    def ref(x: Tensor, flatten: bool = True, input_fmt: str = "NCHW") -> Tensor:
        return global_reference(x, reduce, channels_last=input_fmt == "NHWC")

    return ref


def _eval_module(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    return lambda **kwargs: cls(**kwargs).eval()


def _records() -> list[OpRecord]:
    records: list[OpRecord] = []
    for n in (1, 2, 3):
        cases = _WINDOW_CASES[n]
        combined_cases = cases + _CEIL_CASES[n]
        records += [
            OpRecord(
                f"avgmax{n}d",
                getattr(tp, f"avgmax_pool{n}d"),
                getattr(tp, f"AvgMaxPool{n}d"),
                _avgmax_ref,
                combined_cases,
                n,
            ),
            OpRecord(
                f"catavgmax{n}d",
                getattr(tp, f"catavgmax_pool{n}d"),
                getattr(tp, f"CatAvgMaxPool{n}d"),
                _catavgmax_ref,
                combined_cases,
                n,
            ),
            OpRecord(
                f"adaptive_avgmax{n}d",
                getattr(tp, f"adaptive_avgmax_pool{n}d"),
                getattr(tp, f"AdaptiveAvgMaxPool{n}d"),
                lambda x, output_size=1: (
                    0.5
                    * (adaptive_reference(x, output_size, "avg") + adaptive_reference(x, output_size, "max"))
                ),
                (Case(cases[0].shape, {"output_size": 1}), Case(cases[0].shape, {"output_size": 3})),
                n,
            ),
            OpRecord(
                f"adaptive_catavgmax{n}d",
                getattr(tp, f"adaptive_catavgmax_pool{n}d"),
                getattr(tp, f"AdaptiveCatAvgMaxPool{n}d"),
                lambda x, output_size=1: torch.cat(
                    [adaptive_reference(x, output_size, "avg"), adaptive_reference(x, output_size, "max")], 1
                ),
                (Case(cases[0].shape, {"output_size": 2}),),
                n,
            ),
            OpRecord(
                f"mixed{n}d-eval",
                partial(getattr(tp, f"mixed_pool{n}d"), training=False),
                _eval_module(getattr(tp, f"MixedPool{n}d")),
                _mixed_ref,
                tuple(
                    Case(c.shape, {**c.kwargs, "max_probability": 0.3})
                    for c in _without(combined_cases, "count_include_pad")
                ),
                n,
            ),
            OpRecord(
                f"median{n}d",
                getattr(tp, f"median_pool{n}d"),
                getattr(tp, f"MedianPool{n}d"),
                _median_ref,
                _median_cases(n),
                n,
            ),
            OpRecord(
                f"stochastic{n}d-eval",
                partial(getattr(tp, f"stochastic_pool{n}d"), training=False),
                _eval_module(getattr(tp, f"StochasticPool{n}d")),
                stochastic_eval_reference,
                _without(cases, "ceil_mode", "count_include_pad"),
                n,
                inputs="positive",
            ),
        ]
    records += [
        OpRecord(
            "learned_mixed2d",
            lambda x, **kw: _learned_module(**kw).to(x.dtype)(x),
            _learned_module,
            _learned_ref,
            (
                Case((2, 3, 6, 6), {"kernel_size": 2, "channels": 3}),
                Case((1, 2, 7, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
                _CEIL_2D,
            ),
            2,
        ),
        OpRecord(
            "gated2d",
            _gated_fn,
            _gated_module,
            _gated_ref,
            (
                Case((2, 3, 6, 6), {"kernel_size": 2, "channels": 3}),
                Case((1, 2, 7, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
                _CEIL_2D,
            ),
            2,
        ),
        OpRecord(
            "max_unpool2d",
            _unpool_fn,
            _UnpoolModule,
            _unpool_ref,
            (
                Case((2, 3, 3, 3), {"kernel_size": 3, "stride": 2, "padding": 1}),
                Case((1, 2, 3, 4), {"kernel_size": 2, "stride": 2, "padding": 0, "reduce": "sum"}),
                Case((1, 2, 4, 4), {"kernel_size": 3, "stride": 1, "padding": 1, "reduce": "sum"}),
            ),
            2,
        ),
    ]
    for n in (1, 2, 3):
        shape = (2, 3, *[4, 3, 5][:n])
        records += [
            OpRecord(
                f"global_avg-{n}d",
                tp.global_avg_pool,
                tp.GlobalAvgPool,
                _global_ref("avg"),
                (Case(shape), Case(shape, {"input_fmt": "NHWC"})),
                n,
                batchless=False,
            ),
            OpRecord(
                f"global_max-{n}d",
                tp.global_max_pool,
                tp.GlobalMaxPool,
                _global_ref("max"),
                (Case(shape), Case(shape, {"input_fmt": "NHWC"})),
                n,
                batchless=False,
            ),
            OpRecord(
                f"gem-{n}d",
                lambda x, p=3.0, **kw: tp.gem(x, p, **kw),
                lambda p=3.0, **kw: tp.GeM(p, **kw),
                _gem_ref,
                (Case(shape), Case(shape, {"p": 2.5, "eps": 1e-3, "input_fmt": "NHWC"})),
                n,
                inputs="positive",
                batchless=False,
            ),
        ]
    return records


def _family_records() -> list[OpRecord]:
    records: list[OpRecord] = []
    for module in FAMILIES.values():
        records += getattr(module, "OPS", [])
    return records


OPS: tuple[OpRecord, ...] = tuple(_records() + _family_records())

#: ops under test that are no registered pool, and why.
UNREGISTERED_OPS: dict[str, str] = {
    "max_unpool2d": "unpooling is not a pool: it is not in the registry",
    "roi_spp": "SPP on regions takes boxes besides the map: no create_pool(name)(x) walk can call it",
}


def pool_of(op: OpRecord) -> str:
    """The registry name an OpRecord is named after: its name up to a ``-``, resolved as the registry
    resolves names (a suffix-less name is the 2-d pool)."""
    base = op.name.split("-", 1)[0]
    for name in (base, "spp") if base == "spp2d" else (base,):  # spp2d before the registry lists it
        try:
            return tp.get_pool_info(name).name
        except ValueError:
            continue
    return base


#: registry name -> the OpRecords (float64 reference and sample cases) of that pool.
OPS_BY_POOL: dict[str, tuple[OpRecord, ...]] = {
    name: tuple(op for op in OPS if pool_of(op) == name) for name in dict.fromkeys(map(pool_of, OPS))
}

# tolerances (rtol, atol) against the float64 reference evaluated on the same rounded input
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 3e-2),
}
