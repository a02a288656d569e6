"""Every registered Module survives a state_dict round trip through ``torch.load(weights_only=True)``."""

from __future__ import annotations

import io

import pytest
import torch
from exactness import assert_same_computation

import torchpool as tp


def _output(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)  # fractional max pooling draws its windows even in eval mode
    y = module(x)
    out: torch.Tensor = y[0] if isinstance(y, tuple) else y
    return out


@pytest.mark.parametrize("info", [pytest.param(i, id=i.name) for i in tp.list_pools()])
def test_state_dict_round_trip_with_weights_only(info: tp.PoolInfo) -> None:
    torch.manual_seed(1)
    module = tp.create_pool(info.name, **info.example_kwargs).eval()
    with torch.no_grad():
        for p in module.parameters():  # move off the initial values so a missed load is visible
            p.add_(0.1 * torch.randn_like(p))
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state.keys() == module.state_dict().keys()
    torch.manual_seed(2)
    rebuilt = tp.create_pool(info.name, **info.example_kwargs).eval()
    rebuilt.load_state_dict(state)
    x = torch.rand(2, 4, *[8] * info.dims[0])
    assert_same_computation(_output(rebuilt, x), _output(module, x))


def test_compact_bilinear_buffers_are_saved() -> None:
    module = tp.CompactBilinearPool(4, out_dim=64, seed=3)
    names = set(module.state_dict())
    assert names, "fixed random projections must be in the state dict"
    other = tp.CompactBilinearPool(4, out_dim=64, seed=4)
    assert any(not torch.equal(module.state_dict()[n], other.state_dict()[n]) for n in names)
    other.load_state_dict(module.state_dict())
    x = torch.rand(2, 4, 5, 5)
    assert_same_computation(other(x), module(x))
