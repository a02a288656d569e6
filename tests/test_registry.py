"""The factory: every registered name builds and runs; names, classes and callables resolve."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import torchpool as tp
from torchpool.cli import main

INFOS = tp.list_pools()


@pytest.mark.parametrize("info", [pytest.param(i, id=i.name) for i in INFOS])
def test_every_registered_pool_builds_and_runs(info: tp.PoolInfo) -> None:
    module = tp.create_pool(info.name, **info.example_kwargs)
    assert isinstance(module, nn.Module)
    assert info.dims and all(d in (1, 2, 3) for d in info.dims)
    for dims in info.dims:
        x = torch.rand(2, 4, *[8] * dims, requires_grad=True)
        y = module(x)
        y = y[0] if isinstance(y, tuple) else y
        if info.channel_multiplier is not None:
            assert y.shape[1] == 4 * info.channel_multiplier, (info.name, y.shape)
        y.float().sum().backward()
        assert x.grad is not None
    has_params = any(p.requires_grad for p in module.parameters())
    assert has_params == info.trainable


def test_families_cover_the_seed() -> None:
    families = {info.family for info in INFOS}
    assert {"max/avg", "stochastic", "median", "combined", "global"} <= families


def test_resolves_class_callable_and_instance() -> None:
    assert isinstance(tp.create_pool(tp.MedianPool2d, kernel_size=3), tp.MedianPool2d)
    assert isinstance(tp.create_pool(lambda: nn.MaxPool2d(2)), nn.MaxPool2d)
    pool = nn.AvgPool2d(2)
    assert tp.create_pool(pool) is pool
    with pytest.raises(TypeError, match="arguments cannot be applied"):
        tp.create_pool(pool, kernel_size=3)


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ValueError, match="stochastic2d"):
        tp.create_pool("stochastc2d")


def test_register_and_overwrite() -> None:
    tp.register_pool("test_identity", nn.Identity, family="demo", dims=(2,), overwrite=True)
    assert tp.get_pool_info("test_identity").family == "demo"
    with pytest.raises(ValueError, match="already registered"):
        tp.register_pool("test_identity", nn.Identity, family="demo", dims=(2,))
    tp.register_pool("test_identity", nn.Identity, family="demo2", dims=(2,), overwrite=True)
    assert tp.get_pool_info("test_identity").family == "demo2"


def test_decorator_form() -> None:
    @tp.register_pool("test_decorated", family="demo", dims=(1,), overwrite=True)
    class Decorated(nn.Identity):
        pass

    assert isinstance(tp.create_pool("test_decorated"), Decorated)


def test_list_command_prints_every_pool(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["name", "family", "dims"]
    for info in tp.list_pools():
        assert info.name in out
    assert main(["list", "--family", "median"]) == 0
    assert "median2d" in capsys.readouterr().out


def test_list_command_rejects_unknown_family() -> None:
    with pytest.raises(SystemExit):
        main(["list", "--family", "nope"])


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "torchpool", "list"], capture_output=True, text=True, check=True
    )
    assert "catavgmax2d" in result.stdout and "2C" in result.stdout


def test_public_api_surface() -> None:
    """Fails when a public name disappears."""
    expected = {
        "pool_output_size",
        "create_pool",
        "list_pools",
        "register_pool",
        "get_pool_info",
        "PoolInfo",
        "stochastic_pool2d",
        "stochastic_pool2d_with_indices",
        "StochasticPool2d",
        "median_pool2d",
        "median_pool2d_with_indices",
        "MedianPool2d",
        "avgmax_pool2d",
        "catavgmax_pool2d",
        "adaptive_avgmax_pool2d",
        "adaptive_catavgmax_pool2d",
        "mixed_pool2d",
        "MixedPool2d",
        "LearnedMixedPool2d",
        "GatedPool2d",
        "GlobalAvgPool",
        "GlobalMaxPool",
        "GeM",
        "gem",
        "max_unpool2d",
        "MaxUnpool2d",
    }
    assert expected <= set(tp.__all__)
    for name in tp.__all__:
        assert hasattr(tp, name), name
    assert set(tp.functional.__all__).isdisjoint(tp.nn.__all__)
    assert all(callable(getattr(tp.functional, n)) for n in tp.functional.__all__)
    assert all(issubclass(getattr(tp.nn, n), nn.Module) for n in tp.nn.__all__)


@pytest.mark.parametrize(
    ("short", "full"),
    [
        ("median", "median2d"),
        ("stochastic", "stochastic2d"),
        ("avgmax", "avgmax2d"),
        ("catavgmax", "catavgmax2d"),
        ("mixed", "mixed2d"),
        ("gated", "gated2d"),
        ("max", "max2d"),
        ("avg", "avg2d"),
        ("lp", "lp2d"),
        ("adaptive_avg", "adaptive_avg2d"),
        ("spp", "spp2d"),
    ],
)
def test_name_without_suffix_is_the_2d_pool(short: str, full: str) -> None:
    assert tp.get_pool_info(short) is tp.get_pool_info(full)
    info = tp.get_pool_info(full)
    kwargs = dict(info.example_kwargs) or {"kernel_size": 2}
    if full == "adaptive_avg2d":
        kwargs = {"output_size": 1}
    assert type(tp.create_pool(short, **kwargs)) is type(tp.create_pool(full, **kwargs))
    assert short == full or short not in [i.name for i in tp.list_pools()]  # aliases are not listed


def test_every_2d_name_has_its_suffixless_alias() -> None:
    """One rule for every family, so a newly registered 2-d pool gets its short name too."""
    for info in tp.list_pools():
        if info.name.endswith("2d"):
            assert tp.get_pool_info(info.name[:-2]) is info


def test_suffixless_name_does_not_guess_other_dims() -> None:
    with pytest.raises(ValueError, match="not registered"):
        tp.get_pool_info("median4d")
    with pytest.raises(TypeError, match="pool name must be a string"):
        tp.get_pool_info(3)  # type: ignore[arg-type]


def test_positional_kernel_size_through_the_factory() -> None:
    x = torch.rand(1, 2, 9, 9)
    assert torch.equal(tp.create_pool("median2d", 3)(x), tp.create_pool("median2d", kernel_size=3)(x))
    assert tp.create_pool("max2d", 3, 1).stride == 1
    assert tp.create_pool("lp2d", 2.0, 3).kernel_size == 3
    with pytest.raises(TypeError, match=r"^median2d: .*'foo'.*it takes \(kernel_size"):
        tp.create_pool("median2d", 3, foo=1)
    with pytest.raises(TypeError, match=r"^max2d: too many positional arguments"):
        tp.create_pool("max2d", 2, 2, 0, 1, False, False, 3)
    with pytest.raises(TypeError, match="arguments cannot be applied"):
        tp.create_pool(nn.MaxPool2d(2), 3)


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "error", "match"),
    [
        ("max2d", (), {"kernel_size": 2, "stride": 0}, ValueError, "stride must be positive"),
        ("max2d", (), {"kernel_size": 0}, ValueError, "kernel_size must be positive"),
        ("max1d", (), {"kernel_size": -1}, ValueError, "kernel_size must be positive"),
        ("max3d", (), {"kernel_size": 2, "padding": -1}, ValueError, "padding must be non-negative"),
        ("max2d", (), {"kernel_size": 3, "padding": 2}, ValueError, "padding must be at most half"),
        ("max2d", (), {"kernel_size": 2, "dilation": 0}, ValueError, "dilation must be positive"),
        ("max2d", (), {"kernel_size": 1.5}, TypeError, "kernel_size"),
        ("max2d", (), {"kernel_size": "3"}, TypeError, "kernel_size"),
        ("max2d", (), {"kernel_size": True}, TypeError, "kernel_size"),
        (
            "max2d",
            (),
            {"kernel_size": (2, 2, 2)},
            ValueError,
            "kernel_size must be an int or a sequence of 2",
        ),
        ("max2d", (), {"kernel_size": 2, "ceil_mode": 1}, TypeError, "ceil_mode must be a bool"),
        ("max", (), {}, TypeError, "max2d: missing a required argument: 'kernel_size'"),
        ("overlapping_max2d", (), {"padding": 3}, ValueError, "padding must be at most half"),
        ("avg2d", (), {"kernel_size": 2, "padding": 2}, ValueError, "padding must be at most half"),
        ("avg1d", (), {"kernel_size": 2, "stride": -1}, ValueError, "stride must be positive"),
        ("avg3d", (), {"kernel_size": 2, "divisor_override": 0}, ValueError, "divisor_override"),
        ("avg2d", (), {"kernel_size": 2, "count_include_pad": "no"}, TypeError, "count_include_pad"),
        ("lp2d", (0.0, 2), {}, ValueError, "norm_type must be in"),
        ("lp1d", (float("nan"), 2), {}, ValueError, "norm_type must be in"),
        ("lp3d", (float("inf"), 2), {}, ValueError, "norm_type must be finite"),
        ("lp2d", ("2", 2), {}, TypeError, "norm_type must be a number"),
        ("lp2d", (2.0, 2), {"stride": 0}, ValueError, "stride must be positive"),
        ("fractional_max2d", (), {"kernel_size": 0, "output_ratio": 0.5}, ValueError, "kernel_size must be"),
        (
            "fractional_max2d",
            (),
            {"kernel_size": 2},
            ValueError,
            "exactly one of output_size and output_ratio",
        ),
        ("fractional_max3d", (), {"kernel_size": 2, "output_size": 0}, ValueError, "output_size must be"),
        ("fractional_max2d", (), {"kernel_size": 2, "output_ratio": 1.5}, ValueError, "output_ratio must be"),
        ("fractional_max2d", (), {"kernel_size": 2, "output_ratio": (0.5,)}, ValueError, "output_ratio"),
    ],
)
def test_pytorch_pools_are_checked_at_the_factory(
    name: str, args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        tp.create_pool(name, *args, **kwargs)


def test_pytorch_pools_still_build_what_pytorch_builds() -> None:
    x = torch.rand(2, 3, 9, 9)
    pairs = [
        (tp.create_pool("max2d", 3, 2, 1, 2, ceil_mode=True), nn.MaxPool2d(3, 2, 1, 2, ceil_mode=True)),
        (
            tp.create_pool("avg2d", (3, 2), divisor_override=5),
            nn.AvgPool2d((3, 2), divisor_override=5),
        ),
        (tp.create_pool("lp2d", 3.0, 2), nn.LPPool2d(3.0, 2)),
    ]
    for ours, theirs in pairs:
        assert isinstance(ours, type(theirs)) and repr(ours) == repr(theirs)
        torch.testing.assert_close(ours(x), theirs(x))
    frac = tp.create_pool("fractional_max2d", 2, output_size=(4, 4))
    assert isinstance(frac, nn.FractionalMaxPool2d) and frac(x).shape == (2, 3, 4, 4)


def test_register_pool_validates_its_arguments() -> None:
    ok = {"family": "demo", "dims": (2,)}
    bad: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"dims": "2d"}, TypeError, "dims must be a tuple of ints"),
        ({"dims": (7,)}, ValueError, "dims must be a non-empty tuple of distinct ints from 1, 2, 3"),
        ({"dims": ()}, ValueError, "dims must be a non-empty"),
        ({"dims": (2, 2)}, ValueError, "distinct"),
        ({"dims": (True,)}, TypeError, "dims"),
        ({"dims": [2]}, TypeError, "dims"),
        ({"family": ""}, TypeError, "family"),
        ({"trainable": 1}, TypeError, "trainable must be a bool"),
        ({"channel_multiplier": 0}, ValueError, "channel_multiplier"),
        ({"channel_multiplier": 1.5}, TypeError, "channel_multiplier"),
        ({"description": None}, TypeError, "description"),
        ({"example_kwargs": [1]}, TypeError, "example_kwargs"),
    ]
    for change, error, match in bad:
        with pytest.raises(error, match=match):
            tp.register_pool("test_bad", nn.Identity, **{**ok, **change}, overwrite=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not registered"):
        tp.get_pool_info("test_bad")  # nothing was stored


def test_list_pools_refuses_an_unknown_family() -> None:
    with pytest.raises(ValueError, match=r"family must be one of \[.*'median'.*\], got 'nosuch'"):
        tp.list_pools("nosuch")
    with pytest.raises(TypeError, match="family"):
        tp.list_pools(3)  # type: ignore[arg-type]
    assert {i.family for i in tp.list_pools("median")} == {"median"}
