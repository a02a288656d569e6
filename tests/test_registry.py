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
    with pytest.raises(TypeError, match="kwargs"):
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
