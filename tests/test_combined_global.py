"""Combined and global pooling beyond the generic table: the seed's snippets, mixing, GeM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torchpool as tp


def seed_add_avgmax_pool2d(x: torch.Tensor, output_size: int = 1) -> torch.Tensor:
    x_avg = F.adaptive_avg_pool2d(x, output_size)
    x_max = F.adaptive_max_pool2d(x, output_size)
    return 0.5 * (x_avg + x_max)


def seed_cat_avgmax_pool2d(x: torch.Tensor, output_size: int = 1) -> torch.Tensor:
    x_avg = F.adaptive_avg_pool2d(x, output_size)
    x_max = F.adaptive_max_pool2d(x, output_size)
    return torch.cat([x_avg, x_max], 1)


@pytest.mark.parametrize("output_size", [1, 2, 3])
def test_seed_snippets_exactly(output_size: int) -> None:
    x = torch.randn(4, 5, 7, 9)
    assert torch.equal(tp.adaptive_avgmax_pool2d(x, output_size), seed_add_avgmax_pool2d(x, output_size))
    assert torch.equal(tp.adaptive_catavgmax_pool2d(x, output_size), seed_cat_avgmax_pool2d(x, output_size))


def test_seed_global_average_example() -> None:
    x = torch.zeros(4, 12, 18, 18)
    assert tp.GlobalAvgPool(flatten=False)(x).shape == (4, 12, 1, 1)
    assert tp.GlobalAvgPool()(x).shape == (4, 12)


def test_mixed_training_draws_max_or_avg_per_sample() -> None:
    x = torch.randn(400, 2, 4, 4)
    mx, avg = F.max_pool2d(x, 2), F.avg_pool2d(x, 2)
    y = tp.mixed_pool2d(x, 2, training=True, max_probability=0.3, generator=torch.Generator().manual_seed(0))
    is_max = (y == mx).flatten(1).all(1)
    is_avg = (y == avg).flatten(1).all(1)
    assert torch.all(is_max ^ is_avg)
    share = is_max.double().mean().item()
    assert abs(share - 0.3) < 4 * (0.3 * 0.7 / 400) ** 0.5
    again = tp.mixed_pool2d(
        x, 2, training=True, max_probability=0.3, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(y, again)


def test_mixed_module_follows_training_flag() -> None:
    pool = tp.MixedPool2d(2)
    x = torch.randn(64, 2, 4, 4)
    pool.eval()
    torch.testing.assert_close(pool(x), 0.5 * (F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)))
    pool.train()
    y = pool(x, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(y, 0.5 * (F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)))


@pytest.mark.parametrize(("cls", "gain"), [(tp.LearnedMixedPool2d, 0.5), (tp.GatedPool2d, 0.95)])
def test_mixing_parameters_learn(cls: type[torch.nn.Module], gain: float) -> None:
    """Trained towards max pooling, the learned mix must move there (the gate only partly can)."""
    torch.manual_seed(0)
    pool = cls(2, channels=3)
    x = torch.randn(8, 3, 6, 6)
    target = F.max_pool2d(x, 2)
    optimiser = torch.optim.SGD(pool.parameters(), lr=2.0)
    first = None
    for _ in range(60):
        loss = F.mse_loss(pool(x), target)
        first = loss.item() if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < gain * first


def test_gem_limits_and_zero_safety() -> None:
    x = torch.rand(2, 3, 5, 5) + 0.1
    torch.testing.assert_close(tp.gem(x, p=1.0), tp.global_avg_pool(x))
    torch.testing.assert_close(tp.gem(x, p=200.0), tp.global_max_pool(x), rtol=2e-2, atol=0)
    zeros = torch.zeros(2, 3, 4, 4, requires_grad=True)
    pool = tp.GeM()
    y = pool(zeros)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(zeros.grad).all() and torch.isfinite(pool.p.grad).all()


def test_gem_half_precision_does_not_overflow() -> None:
    x = (torch.rand(2, 8, 7, 7) * 30).half()
    y = tp.gem(x, p=6.0)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), tp.gem(x.float(), p=6.0), rtol=2e-3, atol=0)


def test_gem_per_channel_p_and_state_dict() -> None:
    pool = tp.GeM(p=2.0, channels=4)
    assert pool.p.shape == (4,)
    buffer_pool = tp.GeM(p=2.0, learnable=False)
    assert "p" in buffer_pool.state_dict() and not list(buffer_pool.parameters())
    assert pool(torch.rand(2, 4, 3, 3)).shape == (2, 4)


def test_global_channels_last_format_any_rank() -> None:
    x = torch.randn(2, 5, 6, 7, 3)  # N, D, H, W, C
    torch.testing.assert_close(tp.global_avg_pool(x, input_fmt="NHWC"), x.mean(dim=(1, 2, 3)))
    assert tp.global_max_pool(x, input_fmt="NHWC", flatten=False).shape == (2, 1, 1, 1, 3)
