"""The API battery of issue 10: every public function, Module and registry entry, bad and edge calls.

The walk is built by introspection, so new pools join it automatically:

* **subjects**: every function of ``torchpool.functional`` (``fn:``), every Module class of
  ``torchpool.nn`` (``nn:``) and every registry entry (``pool:``, built with
  ``create_pool(name, **info.example_kwargs)``). ``inspect.signature`` says which parameters a
  subject has; :data:`BASE` and :data:`EXTRA` add the few arguments introspection cannot guess
  (the tensors of ``netvlad``, the switches of ``max_unpool``, a per-channel ``GeM``).
* **argument cases** (:data:`BAD_ARGS`, one per bad value of each parameter the subject has):
  kernel 0/-1/1.5/"3"/True/a tuple of the wrong length, stride 0/-1, padding -1 and over half the
  window, bad choices and flags, out-of-range sizes and probabilities, GeM's ``p``.
* **input cases** (:data:`INPUT_CASES`): too few / too many dims, int64 / bool / complex input,
  N=0, C=0, H=0, NaN, +inf, a meta tensor, a wrong channel count (where it is fixed), and two
  that must give the same numbers: a non-contiguous input and a batch-less ``(C, *S)`` one.
* **state-dict cases**: each tensor of a Module's state dict loaded with the wrong shape, NaN, or
  a value outside its meaning (GeM ``p <= 0``, hash buckets out of range, signs not +-1).
* **helper cases** (:data:`HELPER_CASES`): the public functions that take no pooling input.

Each outcome must be (a) a ValueError/TypeError whose message names the parameter (``input`` or
the tensor's own name for input problems), (b) a correct result (N=0 / C=0: an empty output of
the shape PyTorch's own pools give; meta: the CPU's shape on ``meta``; int / bool: the float
answer; GeM ``p``: the float64 power mean, refused exactly where ``gem(x, p=<float>)`` refuses it),
or (c) an entry of :data:`KNOWN`, marked ``xfail(strict=True)`` so that the table shrinks as
fixes land. ``python tests/test_battery.py`` prints the failing cases as KNOWN lines. To stay
short, the 1d / 3d twins of a 2d function or Module get only the cases that depend on the number
of dims (:data:`SIBLING_INPUT_CASES`, :data:`SIBLING_ARG_CASES`).

PyTorch's own pools in the registry (``max2d``, ``lp1d``, ``fractional_max2d``, ...) get the
argument cases only: the factory must refuse bad arguments; their forward is PyTorch's.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import torchpool as tp
import torchpool.functional as TPF
import torchpool.nn as TPNN

SIZE = 8  # spatial size per dim of every input
CHANNELS = 4  # the registry's example arguments are made for 4 channels
BATCH = 2
SEED = 0
CLEAR = (ValueError, TypeError)

# ------------------------------------------------------------------ subjects

#: base arguments introspection cannot find, by function or Module name (``example_kwargs``
#: of the registry entry is used for a registered Module class).
BASE: dict[str, dict[str, Any]] = {
    "compact_bilinear_pool": {"out_dim": 64},
    "GeM": {"channels": CHANNELS},
    "GatedPool2d": {"kernel_size": 2, "channels": CHANNELS},
    "LearnedMixedPool2d": {"kernel_size": 2, "channels": CHANNELS},
    "MaxUnpool1d": {"kernel_size": 2},
    "MaxUnpool2d": {"kernel_size": 2},
    "MaxUnpool3d": {"kernel_size": 2},
}
#: base value of a required parameter, by parameter name.
REQUIRED: dict[str, Any] = {"kernel_size": 2, "output_size": 1, "k": 2}

#: parameters whose value fixes the input's channel count.
CHANNEL_PARAMS = ("channels", "dim", "dim_a")
K_CLUSTERS, CLASSES, RANK = 8, 3, 2


def _float(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.float32


def _rand(x: Tensor, *shape: int) -> Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.rand(*shape, generator=g).to(device=x.device, dtype=_float(x))


def _topleft_switches(x: Tensor, n: int) -> Tensor:
    """Max-unpooling indices of ``x``'s shape: each 2-wide window's first cell (kernel 2, stride 2)."""
    spatial = tuple(x.shape[-n:]) if x.dim() >= n else (1,) * n
    full = [2 * s for s in spatial]
    grids = torch.meshgrid(*[torch.arange(s) * 2 for s in spatial], indexing="ij")
    index = torch.zeros(spatial, dtype=torch.long)
    for axis, grid in enumerate(grids):
        index = index + grid * math.prod(full[axis + 1 :])
    return index.expand(x.shape).to(x.device) if x.dim() >= n else index.to(x.device)


def _roi_boxes(x: Tensor) -> Tensor:
    """Two regions per image of ``x`` (none for N=0), on its device: ``roi_spatial_pyramid_pool``'s boxes."""
    images = x.shape[0] if x.dim() == 4 else 1
    rows = [[i, 0.0, 0.0, 5.0, 3.0] for i in range(images)] + [[i, 2.0, 1.0, 7.0, 7.0] for i in range(images)]
    return torch.tensor(rows, dtype=_float(x)).reshape(-1, 5).to(x.device)


#: extra positional tensors (after the input) of a function or a Module's forward.
EXTRA: dict[str, Callable[[Tensor, int], tuple[Tensor | None, ...]]] = {
    "netvlad": lambda x, n: (
        _rand(x, K_CLUSTERS, CHANNELS),
        _rand(x, K_CLUSTERS, CHANNELS),
        _rand(x, K_CLUSTERS),
    ),
    "ghostvlad": lambda x, n: (
        _rand(x, K_CLUSTERS, CHANNELS),
        _rand(x, K_CLUSTERS + 1, CHANNELS),
        _rand(x, K_CLUSTERS + 1),
    ),
    "low_rank_bilinear_pool": lambda x, n: (
        _rand(x, CLASSES, CHANNELS, RANK),
        _rand(x, CLASSES, CHANNELS, RANK),
        _rand(x, CLASSES),
    ),
    "lip_pool2d": lambda x, n: (_rand(x, *x.shape).expand_as(x),),  # the logit: the input's shape
    "tree_pool2d": lambda x, n: (_rand(x, 2, 2, 2), _rand(x, 1, 2, 2)),  # 2 leaf filters, 1 gate (k=2)
    "roi_spatial_pyramid_pool": lambda x, n: (_roi_boxes(x),),
    "RoISpatialPyramidPool": lambda x, n: (_roi_boxes(x),),
    **{f"max_unpool{d}d": (lambda x, n: (_topleft_switches(x, n),)) for d in (1, 2, 3)},
    **{f"MaxUnpool{d}d": (lambda x, n: (_topleft_switches(x, n),)) for d in (1, 2, 3)},
}
#: functions whose channel count the EXTRA tensors fix.
EXTRA_FIXES_CHANNELS = frozenset({"netvlad", "ghostvlad", "low_rank_bilinear_pool"})


@dataclass(frozen=True)
class Subject:
    """One thing to walk: a function, a Module class or a registry entry."""

    id: str
    kind: str  # "fn", "nn" or "pool"
    name: str  # function / class / registry name
    target: Any
    n: int  # spatial dims the walk uses
    multi_dim: bool  # accepts 1, 2 and 3 spatial dims
    params: tuple[str, ...]
    base: dict[str, Any] = field(default_factory=dict)
    fixed_channels: bool = False  # the arguments fix the input's channel count
    torch_forward: bool = False  # PyTorch's own Module: its forward is not walked
    smoke_only: bool = False  # a registry entry of a public Module class, walked in full as nn:<class>

    def call(self, x: Tensor, **override: Any) -> Any:
        kwargs = {**self.base, **override}
        extra = self.extra(x)
        if self.kind == "fn":
            return self.target(x, *extra, **kwargs)
        module = self.target(**kwargs) if self.kind == "nn" else tp.create_pool(self.target, **kwargs)
        module.eval()
        if x.device.type == "meta":
            module = module.to("meta")
        return module(x, *extra)

    def extra(self, x: Tensor) -> tuple[Tensor | None, ...]:
        """The extra positional tensors after the input (registry Modules take none)."""
        return EXTRA[self.name](x, self.n) if self.kind != "pool" and self.name in EXTRA else ()

    def input_names(self) -> tuple[str, ...]:
        """Names an input problem may be reported under: ``input``, the tensor parameters, ``dtype``."""
        if self.kind == "pool":
            return ("input", "x", "dtype")
        target = self.target if self.kind == "fn" else self.target.forward
        parameters = inspect.signature(target).parameters.values()
        tensors = tuple(p.name for p in parameters if "Tensor" in str(p.annotation))
        return ("input", *tensors, "dtype")

    def module(self) -> nn.Module:
        if self.kind == "nn":
            built: nn.Module = self.target(**self.base)
            return built
        return tp.create_pool(self.target, **self.base)


def _dims_of(name: str) -> int | None:
    match = re.search(r"([123])d(_with_indices)?$", name, flags=re.IGNORECASE)
    return int(match.group(1)) if match else None


def _params(target: Any) -> tuple[str, ...]:
    signature = inspect.signature(target)
    return tuple(
        p.name for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )


def _registered_kwargs() -> dict[Any, dict[str, Any]]:
    kwargs: dict[Any, dict[str, Any]] = {}
    for info in tp.list_pools():
        builder = getattr(info.builder, "__wrapped__", info.builder)
        kwargs.setdefault(builder, dict(info.example_kwargs))
    return kwargs


def _base(
    name: str, target: Any, params: tuple[str, ...], registered: dict[Any, dict[str, Any]]
) -> dict[str, Any]:
    if name in BASE:
        return dict(BASE[name])
    if target in registered:
        return dict(registered[target])
    signature = inspect.signature(target)
    return {
        p: REQUIRED[p]
        for p in params
        if p in REQUIRED and signature.parameters[p].default is inspect.Parameter.empty
    }


def _subjects() -> list[Subject]:
    registered = _registered_kwargs()
    out: list[Subject] = []
    for name in TPF.__all__:
        fn = getattr(TPF, name)
        if name == "pool_output_size":  # takes sizes, not a tensor: a helper case
            continue
        params = _params(fn)[1:]  # after the input tensor
        n = _dims_of(name)
        base = _base(name, fn, params, registered)
        extra_params = 3 if name in EXTRA_FIXES_CHANNELS else 1 if name in EXTRA else 0
        params = params[extra_params:]
        out.append(
            Subject(
                f"fn:{name}",
                "fn",
                name,
                fn,
                n or 2,
                n is None,
                params,
                base,
                fixed_channels=name in EXTRA_FIXES_CHANNELS,
            )
        )
    for name in TPNN.__all__:
        cls = getattr(TPNN, name)
        params = _params(cls)
        base = _base(name, cls, params, registered)
        n = _dims_of(name)
        fixed = any(p in base for p in CHANNEL_PARAMS)
        out.append(Subject(f"nn:{name}", "nn", name, cls, n or 2, n is None, params, base, fixed))
    public = {getattr(TPNN, name) for name in TPNN.__all__}
    for info in tp.list_pools():
        cls = type(tp.create_pool(info.name, **info.example_kwargs))
        out.append(
            Subject(
                f"pool:{info.name}",
                "pool",
                info.name,
                info.name,
                info.dims[0] if len(info.dims) == 1 else 2,
                len(info.dims) > 1,
                () if cls in public else _params(info.builder),
                dict(info.example_kwargs),
                fixed_channels=any(p in info.example_kwargs for p in CHANNEL_PARAMS),
                torch_forward=not cls.__module__.startswith("torchpool"),
                smoke_only=cls in public,
            )
        )
    return out


SUBJECTS = _subjects()
BY_ID = {s.id: s for s in SUBJECTS}


def _is_sibling(s: Subject) -> bool:
    """A 1d / 3d subject with a 2d twin (same kind and name but for the digit): walked in brief."""
    twin = re.sub(r"[13]d(?=(_with_indices)?$)", "2d", s.id, flags=re.IGNORECASE)
    # ... and runs the same code: not the registry's 3d subclass of a PyTorch pool whose 2d twin is PyTorch's
    return twin != s.id and twin in BY_ID and BY_ID[twin].torch_forward == s.torch_forward


#: to keep the walk short, 1d / 3d twins of a 2d subject get only the cases that depend on the
#: number of dims (their other checks share the 2d code); everything else runs on the 2d one.
SIBLING_INPUT_CASES = frozenset(
    {"input:ndim-low", "input:ndim-high", "input:N=0", "input:C=0", "input:H=0", "input:meta"}
)
SIBLING_ARG_CASES = frozenset(
    {"kernel_size=0", "kernel_size=wrong-length", "output_size=wrong-length", "stride=0", "padding=over-half"}
)


def _input(s: Subject, channels: int = CHANNELS) -> Tensor:
    g = torch.Generator().manual_seed(SEED)
    return torch.rand(BATCH, channels, *(SIZE,) * s.n, generator=g)


def _tensors(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)) and all(isinstance(t, Tensor) for t in out):
        return list(out)
    raise AssertionError(f"returned {type(out).__name__}, not a tensor or a tuple of tensors")


def _run(s: Subject, x: Tensor, **override: Any) -> list[Tensor]:
    torch.manual_seed(SEED)
    with torch.no_grad():
        return _tensors(s.call(x, **override))


@functools.cache
def _clean(subject_id: str) -> list[Tensor]:
    s = BY_ID[subject_id]
    return _run(s, _input(s))


# ------------------------------------------------------------------ outcome checks

Outcome = str | None  # None: acceptable; else what went wrong


def _names(message: str, names: tuple[str, ...]) -> bool:
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", message) for n in names)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:160]}"


def _refused(error: BaseException | None, names: tuple[str, ...]) -> Outcome:
    if error is None:
        return None
    if isinstance(error, CLEAR) and _names(str(error), names):
        return None
    return f"unclear error (want ValueError/TypeError naming {'/'.join(names)}): {_describe(error)}"


def _attempt(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as error:
        return None, error


def _shapes(outs: list[Tensor]) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in outs]


def must_refuse(call: Callable[[], list[Tensor]], names: tuple[str, ...]) -> Outcome:
    out, error = _attempt(call)
    if error is None:
        return f"accepted: returned shapes {_shapes(out)}"
    return _refused(error, names)


# ------------------------------------------------------------------ argument cases


def _wrong_length(s: Subject, param: str) -> tuple[int, ...]:
    value = s.base.get(param, REQUIRED.get(param, 2))
    first = value[0] if isinstance(value, (tuple, list)) else value
    return (first if isinstance(first, int) and first > 0 else 2,) * (s.n + 1)


def _over_half(s: Subject, param: str) -> int:
    k = s.base.get("kernel_size", 2)
    k = max(k) if isinstance(k, (tuple, list)) else k
    over: int = k // 2 + 1
    return over


NAN = math.nan

#: bad values per parameter name: a value, or a function of the subject giving it.
BAD_ARGS: dict[str, dict[str, Any]] = {
    "kernel_size": {
        "0": 0,
        "-1": -1,
        "1.5": 1.5,
        "'3'": "3",
        "True": True,
        "wrong-length": _wrong_length,
    },
    "stride": {"0": 0, "-1": -1},
    "padding": {"-1": -1, "over-half": _over_half},
    "dilation": {"0": 0, "-1": -1},
    "output_size": {"0": 0, "-1": -1, "1.5": 1.5, "'1'": "1", "wrong-length": _wrong_length},
    "kernel_sizes": {"(0,)": (0,), "(-1,)": (-1,), "('5',)": ("5",), "(5, 5)": (5, 5)},
    "levels": {"()": (), "(0,)": (0,), "(-1,)": (-1,)},
    "n": {"-1": -1},
    "max_probability": {"-0.5": -0.5, "1.5": 1.5, "nan": NAN},
    "norm_type": {"0": 0.0, "-1": -1.0, "nan": NAN},
    "output_ratio": {"0": 0.0, "1.5": 1.5},
    "eps": {"-1": -1.0, "nan": NAN},
    "alpha": {"-1": -1.0, "nan": NAN},
    "channels": {"0": 0, "-1": -1},
    "num_clusters": {"0": 0},
    "ghost_clusters": {"-1": -1},
    "dim": {"0": 0},
    "dim_a": {"0": 0},
    "dim_b": {"0": 0},
    "out_dim": {"0": 0},
    "num_classes": {"0": 0},
    "rank": {"0": 0},
    "num_iters": {"-1": -1},
    **{
        choice: {"'nosuch'": "nosuch"}
        for choice in ("mode", "order", "padding_mode", "reduce", "method", "path", "input_fmt")
    },
    **{
        flag: {"'yes'": "yes"}
        for flag in (
            "ceil_mode",
            "count_include_pad",
            "return_indices",
            "flatten",
            "signed_sqrt",
            "l2_normalize",
            "normalize_input",
            "learnable",
            "triu",
            "training",
            "compiled",
        )
    },
    "generator": {"'seed'": "seed"},
}


def _power_mean(x: Tensor, p: float, eps: float) -> Tensor:
    """GeM's float64 reference: the power mean of ``clamp(x, eps)`` over the spatial dims (p=0: geometric)."""
    x = x.double().clamp(min=eps).flatten(2)
    if p == 0:
        return x.log().mean(-1).exp()
    return x.pow(p).mean(-1).pow(1.0 / p)


@functools.cache
def _float_p_refused(value: float) -> bool:
    """The rule for ``p``, as ``gem(x, p=<float>)`` applies it; every other route must follow it."""
    return _attempt(lambda: tp.gem(torch.rand(1, 1, 2, 2), p=value))[1] is not None


def gem_p(s: Subject, call: Callable[[], list[Tensor]], value: float, eps: float = 1e-6) -> Outcome:
    """GeM's ``p`` (float, tensor, constructor, state dict, set in place): one rule for all.

    Refused naming ``p`` where ``gem(x, p=<float>)`` refuses it (always for NaN), else the float64
    power mean for that ``p`` (p=0: the geometric mean).
    """
    out, error = _attempt(call)
    if error is not None:
        if not _float_p_refused(value):
            return f"p={value} refused here, but gem(x, p={value}) accepts it: {_describe(error)}"
        return _refused(error, ("p",))
    if math.isnan(value) or _float_p_refused(value):
        return f"p={value} accepted (gem(x, p={value}) refuses it): returned {_shapes(out)}"
    want = _power_mean(_input(s), value, eps)
    got = out[0].double().reshape(want.shape)
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-6):
        return f"p={value}: not the power mean (max error {(got - want).abs().max().item():.3g})"
    return None


@dataclass(frozen=True)
class ArgCase:
    subject: Subject
    param: str
    label: str
    value: Any

    @property
    def id(self) -> str:
        return f"{self.param}={self.label}"


def _arg_cases() -> Iterator[ArgCase]:
    for s in SUBJECTS:
        for param in s.params:
            if param == "output_size" and s.name.lower().startswith(("max_unpool", "maxunpool")):
                continue  # a full output size, not a grid: see UNPOOL_CASES
            if param == "p" and "gem" in s.name.lower():
                for value in (0.0, -1.0, NAN):
                    yield ArgCase(s, param, f"{value}", value)
                    if s.kind == "fn":
                        yield ArgCase(s, param, f"tensor({value})", torch.tensor(value))
                continue
            if param == "ghost_clusters" and s.base.get(param, _default(s, param)) != 0:
                yield ArgCase(s, param, "0", 0)  # GhostVLAD: 0 ghosts is NetVLAD
            for label, value in BAD_ARGS.get(param, {}).items():
                if _is_sibling(s) and f"{param}={label}" not in SIBLING_ARG_CASES:
                    continue
                yield ArgCase(s, param, label, value(s, param) if callable(value) else value)


def _default(s: Subject, param: str) -> Any:
    target = s.target if s.kind != "pool" else tp.get_pool_info(s.name).builder
    default = inspect.signature(target).parameters[param].default
    return None if default is inspect.Parameter.empty else default


ARG_CASES = list(_arg_cases())


def check_arg(case: ArgCase) -> Outcome:
    s = case.subject
    x = _input(s)

    def call() -> list[Tensor]:
        return _run(s, x, **{case.param: case.value})

    if case.param == "p" and "gem" in s.name.lower():
        return gem_p(s, call, float(case.value), s.base.get("eps", 1e-6))
    return must_refuse(call, (case.param,))


# ------------------------------------------------------------------ input cases


def _too_many(s: Subject) -> Tensor:
    x = _input(s)
    while x.dim() <= s.n + 2:
        x = x.unsqueeze(0)
    return x


def _with(value: float) -> Callable[[Subject], Tensor]:
    def make(s: Subject) -> Tensor:
        x = _input(s).clone()
        x[(0, 1) + (0,) * s.n] = value
        x[(1, 2) + (SIZE // 2,) * s.n] = value
        return x

    return make


def _expect_refusal(s: Subject, x: Tensor) -> Outcome:
    out, error = _attempt(lambda: _run(s, x))
    if error is None:
        return f"accepted shape {tuple(x.shape)} {x.dtype}: returned shapes {_shapes(out)}"
    return _refused(error, s.input_names())


def _expect_wrong_channels(s: Subject, x: Tensor) -> Outcome:
    out, error = _attempt(lambda: _run(s, x))
    if error is None:
        return f"accepted {x.shape[1]} channels (built for {CHANNELS}): returned shapes {_shapes(out)}"
    return _refused(error, s.input_names() + CHANNEL_PARAMS)


def _expect_same_numbers(s: Subject, x: Tensor) -> Outcome:
    """int / bool input: refused naming the input, or the float32 answer on the same values."""
    out, error = _attempt(lambda: _run(s, x))
    if error is not None:
        return _refused(error, s.input_names())
    want = _run(s, x.float())
    for got, ref in zip(out, want):
        if got.shape != ref.shape:
            return f"{x.dtype}: shape {tuple(got.shape)}, float input gives {tuple(ref.shape)}"
        if ref.is_floating_point() and not torch.allclose(got.double(), ref.double(), rtol=1e-5, atol=1e-6):
            return (
                f"{x.dtype}: returned {got.dtype}, not the float answer "
                f"(e.g. {got.flatten()[:3].tolist()} vs {ref.flatten()[:3].tolist()})"
            )
    return None


def _expect_empty(axis: int) -> Callable[[Subject, Tensor], Outcome]:
    """N=0 (axis 0) / C=0 (axis 1): the clean output's shape with that size 0 (C=0: or refused)."""

    def check(s: Subject, x: Tensor) -> Outcome:
        out, error = _attempt(lambda: _run(s, x))
        if error is not None:
            if axis == 1:  # no channels: refusing is fine (and the only answer for a fixed count)
                return _refused(error, s.input_names() + CHANNEL_PARAMS)
            return f"N=0 refused: {_describe(error)}"
        clean = _clean(s.id)
        for got, ref in zip(out, clean):
            want = list(ref.shape)
            if axis < len(want):
                want[axis] = 0
            if list(got.shape) == want:
                continue
            if axis == 1 and got.shape == ref.shape and bool((got == 0).all()):
                continue  # a fixed-size output (a sketch) of no channels: zeros
            return f"shape {tuple(got.shape)}, want {tuple(want)} (N=2, C=4 gives {tuple(ref.shape)})"
        return None

    return check


def _expect_refusal_or_empty(s: Subject, x: Tensor) -> Outcome:
    out, error = _attempt(lambda: _run(s, x))
    if error is not None:
        return _refused(error, s.input_names())
    if all(t.numel() == 0 for t in out):
        return None
    return f"H=0 accepted: returned shapes {_shapes(out)} with values"


def _expect_nonfinite(kind: str) -> Callable[[Subject, Tensor], Outcome]:
    """NaN / +inf cells: refused naming the input, or the clean shape (NaN: and some NaN output)."""

    def check(s: Subject, x: Tensor) -> Outcome:
        out, error = _attempt(lambda: _run(s, x))
        if error is not None:
            return _refused(error, s.input_names())
        clean = _clean(s.id)
        if _shapes(out) != _shapes(clean):
            return f"shape {_shapes(out)}, clean input gives {_shapes(clean)}"
        floats = [t for t in out if t.is_floating_point()]
        if kind == "nan" and not any(bool(t.isnan().any()) for t in floats):
            return "NaN input cells vanished: no NaN in the output"
        return None

    return check


def _expect_meta(s: Subject, x: Tensor) -> Outcome:
    out, error = _attempt(lambda: _run(s, x))
    if error is not None:
        return f"meta: {_describe(error)}"
    clean = _clean(s.id)
    if any(t.device.type != "meta" for t in out):
        return f"meta input gave outputs on {[t.device.type for t in out]}"
    if _shapes(out) != _shapes(clean):
        return f"meta shape {_shapes(out)}, CPU gives {_shapes(clean)}"
    return None


def _expect_as(
    reference: Callable[[Subject, Tensor], list[Tensor]], what: str
) -> Callable[[Subject, Tensor], Outcome]:
    """The same numbers as ``reference`` gives (batch-less: or refused naming the input)."""

    def check(s: Subject, x: Tensor) -> Outcome:
        out, error = _attempt(lambda: _run(s, x))
        if error is not None:
            return _refused(error, s.input_names()) if what == "batch-less" else f"{what}: {_describe(error)}"
        want = reference(s, x)
        for got, ref in zip(out, want):
            if got.shape != ref.shape:
                return f"{what}: shape {tuple(got.shape)}, want {tuple(ref.shape)}"
            if not torch.equal(got, ref) and not torch.allclose(
                got.double(), ref.double(), rtol=1e-5, atol=1e-6
            ):
                error = (got.double() - ref.double()).abs().max().item()
                return f"{what}: not the answer for the same values (max error {error:.3g})"
        return None

    return check


def _strided(s: Subject) -> Tensor:
    """The walk's input values in a non-contiguous tensor (every other column of a wider one)."""
    x = _input(s)
    wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1])
    wide[..., ::2] = x
    return wide[..., ::2]


@dataclass(frozen=True)
class InputCase:
    make: Callable[[Subject], Tensor]
    check: Callable[[Subject, Tensor], Outcome]
    applies: Callable[[Subject], bool] = lambda s: True


INPUT_CASES: dict[str, InputCase] = {
    "input:ndim-low": InputCase(lambda s: _input(s)[0, 0], _expect_refusal),
    # (N, C, *S) pools take any number of spatial dims: too many only for the n-d ones
    "input:ndim-high": InputCase(_too_many, _expect_refusal, applies=lambda s: not s.multi_dim),
    "input:int64": InputCase(
        lambda s: torch.randint(0, 10, _input(s).shape, generator=torch.Generator().manual_seed(1)),
        _expect_same_numbers,
    ),
    "input:bool": InputCase(lambda s: _input(s) > 0.5, _expect_same_numbers),
    "input:complex64": InputCase(lambda s: _input(s).to(torch.complex64), _expect_refusal),
    "input:N=0": InputCase(lambda s: _input(s)[:0], _expect_empty(0)),
    "input:C=0": InputCase(lambda s: _input(s)[:, :0], _expect_empty(1)),
    "input:H=0": InputCase(lambda s: _input(s)[:, :, :0], _expect_refusal_or_empty),
    "input:nan": InputCase(_with(NAN), _expect_nonfinite("nan")),
    "input:+inf": InputCase(_with(math.inf), _expect_nonfinite("inf")),
    "input:meta": InputCase(lambda s: _input(s).to("meta"), _expect_meta),
    "input:non-contiguous": InputCase(
        _strided, _expect_as(lambda s, x: _run(s, x.contiguous()), "non-contiguous")
    ),
    # (C, *S) for the n-d pools: the first sample's answer (the (N, C, *S) pools cannot tell it apart)
    "input:batch-less": InputCase(
        lambda s: _input(s)[0],
        _expect_as(lambda s, x: [t[0] for t in _run(s, x.unsqueeze(0))], "batch-less"),
        applies=lambda s: not s.multi_dim,
    ),
    "input:C+1": InputCase(
        lambda s: _input(s, CHANNELS + 1), _expect_wrong_channels, applies=lambda s: s.fixed_channels
    ),
}
#: input cases also run on registry entries whose Module class is walked as ``nn:<class>``.
SMOKE_CASES = ("input:N=0", "input:meta")


def _input_cases() -> Iterator[tuple[Subject, str]]:
    for s in SUBJECTS:
        if s.torch_forward:
            continue
        for case_id, case in INPUT_CASES.items():
            if s.smoke_only and case_id not in SMOKE_CASES:
                continue
            if _is_sibling(s) and case_id not in SIBLING_INPUT_CASES:
                continue
            if case.applies(s):
                yield s, case_id


INPUT_WALK = list(_input_cases())


def check_input_case(s: Subject, case_id: str) -> Outcome:
    case = INPUT_CASES[case_id]
    return case.check(s, case.make(s))


# ------------------------------------------------------------------ max unpooling's own cases


def _unpool(s: Subject, x: Tensor, indices: Tensor | None, **forward: Any) -> list[Tensor]:
    if s.kind == "fn":
        return _tensors(s.target(x, indices, **s.base, **forward))
    return _tensors(s.target(**s.base)(x, indices, **forward))


def _unpool_output_size(batch: int, channels: int) -> Callable[[Subject], Outcome]:
    """An ``output_size`` whose N or C disagrees with the input: refused, not ignored."""

    def check(s: Subject) -> Outcome:
        x = _input(s)
        size = (batch, channels, *(2 * SIZE,) * s.n)
        out, error = _attempt(lambda: _unpool(s, x, *s.extra(x), output_size=size))
        if error is None:
            return f"output_size={size} for input {tuple(x.shape)} accepted: returned {_shapes(out)}"
        return _refused(error, ("output_size",))

    return check


def _unpool_meta_values_cpu_indices(s: Subject) -> Outcome:
    x = _input(s)
    (indices,) = s.extra(x)
    out, error = _attempt(lambda: _unpool(s, x.to("meta"), indices))
    if error is None:
        return f"values on meta, indices on the CPU accepted: returned {[t.device.type for t in out]}"
    return _refused(error, ("indices", "input", "x"))


UNPOOL_CASES: dict[str, Callable[[Subject], Outcome]] = {
    "output_size=wrong-N": _unpool_output_size(BATCH + 1, CHANNELS),
    "output_size=wrong-C": _unpool_output_size(BATCH, CHANNELS + 1),
    "input:meta-with-cpu-indices": _unpool_meta_values_cpu_indices,
}
UNPOOL_WALK = [
    (s, case)
    for s in SUBJECTS
    if s.kind != "pool" and s.name.lower().startswith(("max_unpool", "maxunpool"))
    for case in UNPOOL_CASES
]

# ------------------------------------------------------------------ state-dict cases


def _one_past_last_bucket(t: Tensor, m: nn.Module) -> Tensor:
    out_dim = vars(m)["out_dim"]  # a plain int attribute of CompactBilinearPool
    return torch.full_like(t, int(out_dim))


#: values a state-dict entry must not take, by key: (label, value).
BAD_STATE: dict[str, tuple[tuple[str, Callable[[Tensor, nn.Module], Tensor]], ...]] = {
    "p": (("0", lambda t, m: torch.zeros_like(t)), ("-1", lambda t, m: torch.full_like(t, -1.0))),
    **{
        key: (
            ("out-of-range", _one_past_last_bucket),
            ("negative", lambda t, m: torch.full_like(t, -1)),
        )
        for key in ("hash_a", "hash_b")
    },
    **{key: (("0.5", lambda t, m: torch.full_like(t, 0.5)),) for key in ("sign_a", "sign_b")},
}


def _state_cases() -> Iterator[tuple[Subject, str, str]]:
    seen: set[type] = set()
    for s in SUBJECTS:
        if s.kind != "nn":
            continue
        module = s.module()
        if type(module) in seen or not module.state_dict():
            continue
        seen.add(type(module))
        for key, value in module.state_dict().items():
            yield s, key, "shape"
            if value.is_floating_point():
                yield s, key, "nan"
            for label, _ in BAD_STATE.get(key, ()):
                yield s, key, label
                yield s, key, f"set-{label}"  # written in place (an optimizer step): no load hook runs


STATE_WALK = list(_state_cases())


def _store(module: nn.Module, key: str, value: Tensor, in_place: bool) -> None:
    """``value`` into ``module[key]``: through ``load_state_dict``, or written in place."""
    if in_place:
        target = dict(module.named_parameters()).get(key)
        with torch.no_grad():
            (module.get_buffer(key) if target is None else target).copy_(value)
    else:
        module.load_state_dict({**module.state_dict(), key: value})


def check_state_case(s: Subject, key: str, what: str) -> Outcome:
    module = s.module().eval()
    t = module.state_dict()[key]
    in_place, label = what.startswith("set-"), what.removeprefix("set-")
    if label == "shape":
        value = torch.zeros(*t.shape, 2, dtype=t.dtype)
    elif label == "nan":
        value = torch.full_like(t, NAN)
    else:
        value = dict(BAD_STATE[key])[label](t, module)
    x = _input(s)

    def forward() -> list[Tensor]:
        torch.manual_seed(SEED)
        return _tensors(module(x, *s.extra(x)))

    def store_and_forward() -> list[Tensor]:
        _store(module, key, value, in_place)
        return forward()

    if key == "p" and label in ("0", "-1"):  # GeM: the rule of gem(x, p=<float>), wherever p comes from
        return gem_p(s, store_and_forward, float(label))
    names = (key, key.split(".")[-1])
    _, error = _attempt(lambda: _store(module, key, value, in_place))
    if error is not None:  # refused on load; PyTorch's own size-mismatch RuntimeError names the key
        if isinstance(error, (*CLEAR, RuntimeError)) and _names(str(error), names):
            return None
        return f"load: {_describe(error)}"
    how = "set in place" if in_place else "loaded"
    out, error = _attempt(forward)
    if error is not None:
        return _refused(error, names)
    if label == "nan":
        return None if any(bool(o.isnan().any()) for o in out) else f"{how} NaN, output has no NaN"
    return f"{how} {key} ({label}) without complaint: returned {_shapes(out)}"


# ------------------------------------------------------------------ helper cases (no pooling input)


def _nan_descriptors() -> Tensor:
    x = torch.rand(20, 4)
    x[3, 1] = NAN
    return x


_SPP_CFG = (
    "[maxpool]\nstride=1\nsize={}\n[route]\nlayers=-2\n[maxpool]\nstride=1\nsize=9\n[route]\nlayers=-1,-3,-4"
)


def _register(**kwargs: Any) -> Any:
    try:
        return tp.register_pool("battery_probe", nn.Identity, **{"family": "demo", **kwargs})
    finally:
        tp.registry._REGISTRY.pop("battery_probe", None)


def _enter_deterministic(mode: Any) -> None:
    with tp.deterministic(mode):
        pass


#: (function, case, call, the parameter the error must name).
HELPER_CASES: list[tuple[str, str, Callable[[], Any], str]] = [
    ("pool_output_size", "size=8.0", lambda: tp.pool_output_size(8.0, 2), "size"),  # type: ignore[call-overload]
    ("pool_output_size", "size=0", lambda: tp.pool_output_size(0, 2), "size"),
    ("pool_output_size", "kernel_size=0", lambda: tp.pool_output_size(8, 0), "kernel_size"),
    ("pool_output_size", "stride=-1", lambda: tp.pool_output_size(8, 2, -1), "stride"),
    ("pool_output_size", "padding=over-half", lambda: tp.pool_output_size(8, 2, padding=2), "padding"),
    ("kmeans", "descriptors=nan", lambda: tp.kmeans(_nan_descriptors(), 2), "descriptors"),
    ("kmeans", "descriptors=int64", lambda: tp.kmeans(torch.ones(20, 4, dtype=torch.long), 2), "descriptors"),
    ("kmeans", "iters=0", lambda: tp.kmeans(torch.rand(20, 4), 2, iters=0), "iters"),
    ("kmeans", "k=0", lambda: tp.kmeans(torch.rand(20, 4), 0), "k"),
    ("kmeans", "k>M", lambda: tp.kmeans(torch.rand(3, 4), 5), "k"),
    ("kmeans", "tol=-1", lambda: tp.kmeans(torch.rand(20, 4), 2, tol=-1.0), "tol"),
    (
        "netvlad_alpha",
        "descriptors=nan",
        lambda: tp.netvlad_alpha(_nan_descriptors(), torch.rand(3, 4)),
        "descriptors",
    ),
    (
        "netvlad_alpha",
        "centroids=wrong-D",
        lambda: tp.netvlad_alpha(torch.rand(20, 4), torch.rand(3, 5)),
        "descriptors",
    ),
    (
        "compact_bilinear_path",
        "dim_a=0",
        lambda: tp.compact_bilinear_path("tensor_sketch", 0, 4, 16, 64),
        "dim_a",
    ),
    (
        "compact_bilinear_path",
        "positions=-1",
        lambda: tp.compact_bilinear_path("tensor_sketch", 4, 4, -1, 64),
        "positions",
    ),
    (
        "compact_bilinear_path",
        "out_dim=0",
        lambda: tp.compact_bilinear_path("tensor_sketch", 4, 4, 16, 0),
        "out_dim",
    ),
    (
        "compact_bilinear_path",
        "method=nosuch",
        lambda: tp.compact_bilinear_path("nosuch", 4, 4, 16, 64),
        "method",
    ),
    ("register_pool", "dims='2d'", lambda: _register(dims="2d"), "dims"),
    ("register_pool", "dims=(7,)", lambda: _register(dims=(7,)), "dims"),
    ("register_pool", "family=3", lambda: _register(dims=(2,), family=3), "family"),
    ("list_pools", "family='nosuch'", lambda: tp.list_pools("nosuch"), "family"),
    ("get_pool_info", "name=3", lambda: tp.get_pool_info(3), "name"),  # type: ignore[arg-type]
    ("create_pool", "pool=3", lambda: tp.create_pool(3), "pool"),  # type: ignore[arg-type]
    ("create_pool", "pool='nosuch'", lambda: tp.create_pool("nosuch"), "pool"),
    ("is_deterministic", "x=3", lambda: tp.is_deterministic(3), "x"),  # type: ignore[arg-type]
    ("use_deterministic", "mode='yes'", lambda: tp.use_deterministic("yes"), "mode"),  # type: ignore[arg-type]
    ("deterministic", "mode='yes'", lambda: _enter_deterministic("yes"), "mode"),
    ("from_darknet_cfg", "text=3", lambda: tp.from_darknet_cfg(3), "text"),  # type: ignore[arg-type]
    ("from_darknet_cfg", "size=5_1", lambda: tp.from_darknet_cfg(_SPP_CFG.format("5_1")), "size"),
    ("from_darknet_cfg", "size=4", lambda: tp.from_darknet_cfg(_SPP_CFG.format("4")), "size"),
    ("spp_to_sppf", "module=Identity", lambda: tp.spp_to_sppf(nn.Identity()), "module"),  # type: ignore[arg-type]
    ("swap_pooling", "model=None", lambda: tp.swap_pooling(None, "avg2d", kernel_size=2), "model"),  # type: ignore[call-overload]
    ("swap_pooling", "to=3", lambda: tp.swap_pooling(nn.Sequential(nn.MaxPool2d(2)), 3), "to"),  # type: ignore[call-overload]
]
#: public names that are data records, not calls to walk.
NOT_CALLS = frozenset({"PoolInfo", "SwapRecord", "SwapReport", "functional", "nn", "__version__"})


def check_helper(call: Callable[[], Any], name: str) -> Outcome:
    out, error = _attempt(call)
    if error is None:
        return f"accepted: returned {type(out).__name__}"
    return _refused(error, (name,))


# ------------------------------------------------------------------ the known failures

#: (subject or function, case) -> why it fails today. Each is a strict xfail: a fix makes the
#: test XPASS and fail until its line is removed here.

KNOWN: dict[tuple[str, str], str] = {}
#: empty since the registry's 3d subclasses of PyTorch's pools (ops/standard.py) refuse complex,
#: bool and (for the average) integer input and empty spatial sizes, and answer C=0 with the
#: empty result, instead of passing them to PyTorch (NotImplementedError / RuntimeError, or an
#: integer average truncated into int64).


# ------------------------------------------------------------------ the tests


def _param(subject_id: str, case_id: str, *values: Any) -> Any:
    reason = KNOWN.get((subject_id, case_id))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(*values, id=f"{subject_id}|{case_id}", marks=marks)


def _all_cases() -> Iterator[tuple[str, str, Callable[[], Outcome]]]:
    for c in ARG_CASES:
        yield c.subject.id, c.id, functools.partial(check_arg, c)
    for s, case_id in INPUT_WALK:
        yield s.id, case_id, functools.partial(check_input_case, s, case_id)
    for s, case_id in UNPOOL_WALK:
        yield s.id, case_id, functools.partial(UNPOOL_CASES[case_id], s)
    for s, key, what in STATE_WALK:
        yield s.id, f"state:{key}:{what}", functools.partial(check_state_case, s, key, what)
    for name, case_id, call, param in HELPER_CASES:
        yield name, case_id, functools.partial(check_helper, call, param)


ALL_CASES = list(_all_cases())


@pytest.mark.parametrize("check", [_param(sid, cid, check) for sid, cid, check in ALL_CASES])
def test_battery(check: Callable[[], Outcome]) -> None:
    problem = check()
    assert problem is None, problem


def test_known_entries_exist() -> None:
    """Every KNOWN entry names a case of the walk (a typo would silently mark nothing)."""
    ids = {(sid, cid) for sid, cid, _ in ALL_CASES}
    assert not [key for key in KNOWN if key not in ids]


def test_every_public_call_is_walked() -> None:
    """Every public function and Module is a subject or has helper cases; every pool is walked."""
    walked = {s.name for s in SUBJECTS if s.kind != "pool"} | {name for name, *_ in HELPER_CASES}
    public = set(tp.__all__) | set(TPF.__all__) | set(TPNN.__all__)
    assert sorted(public - walked - NOT_CALLS) == []
    assert {s.name for s in SUBJECTS if s.kind == "pool"} == {i.name for i in tp.list_pools()}


def test_walk_is_not_empty() -> None:
    """Guards the introspection: the walk finds the parameters it is meant to find."""
    ids = {(sid, cid) for sid, cid, _ in ALL_CASES}
    for expected in (
        ("fn:avgmax_pool2d", "kernel_size=0"),
        ("nn:MedianPool3d", "padding=over-half"),
        ("pool:max2d", "stride=0"),
        ("fn:gem", "p=tensor(0.0)"),
        ("nn:GeM", "input:C+1"),
        ("pool:avg3d", "input:ndim-low"),
        ("nn:CompactBilinearPool", "state:hash_a:out-of-range"),
    ):
        assert expected in ids


if __name__ == "__main__":  # print the failing cases as KNOWN lines
    failing = 0
    for sid, cid, check in ALL_CASES:
        try:
            problem = check()
        except Exception as error:
            problem = f"check crashed: {_describe(error)}"
        if problem is not None:
            failing += 1
            print(f"    ({sid!r}, {cid!r}): {problem!r},")
    print(f"# {failing} of {len(ALL_CASES)} cases fail", file=sys.stderr)
