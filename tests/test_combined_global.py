"""Combined and global pooling beyond the generic table: the seed's snippets, mixing, GeM."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

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
        torch.autograd.backward(loss)
        optimiser.step()
    assert first is not None and loss.item() < gain * first


def test_gem_limits_and_zero_safety() -> None:
    x = torch.rand(2, 3, 5, 5) + 0.1
    torch.testing.assert_close(tp.gem(x, p=1.0), tp.global_avg_pool(x))
    torch.testing.assert_close(tp.gem(x, p=200.0), tp.global_max_pool(x), rtol=2e-2, atol=0)
    zeros = torch.zeros(2, 3, 4, 4, requires_grad=True)
    pool = tp.GeM()
    y = pool(zeros)
    y.sum().backward()
    assert zeros.grad is not None and pool.p.grad is not None
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


@pytest.mark.parametrize(
    "make",
    [
        lambda: tp.GeM(),
        lambda: tp.GeM(p=2.5, channels=3),
        lambda: tp.GeM(flatten=False),
        lambda: tp.GlobalMaxPool(),
        lambda: tp.GlobalMaxPool(flatten=False),
    ],
    ids=["gem", "gem_per_channel", "gem_unflattened", "global_max", "global_max_unflattened"],
)
def test_global_pool_output_survives_inplace_dropout(make: Callable[[], torch.nn.Module]) -> None:
    """EfficientNet's head: an in-place Dropout after the pool must not break backward."""
    grads: list[list[torch.Tensor | None]] = []
    for inplace in (True, False):
        torch.manual_seed(0)
        pool = make()
        model = torch.nn.Sequential(pool, torch.nn.Flatten(), torch.nn.Dropout(inplace=inplace)).train()
        x = (torch.rand(2, 3, 5, 4, dtype=torch.float64) + 0.1).requires_grad_()
        torch.manual_seed(1)  # the same dropout mask both times
        model(x).square().sum().backward()
        grads.append([x.grad, *(p.grad for p in pool.parameters())])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_gem_trains_with_inplace_dropout() -> None:
    gem = tp.GeM()
    model = torch.nn.Sequential(gem, torch.nn.Flatten(), torch.nn.Dropout(inplace=True)).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(4, 6, 7, 7)
    p_before = gem.p.detach().clone()
    model(x).sum().backward()
    optimiser.step()
    assert not torch.equal(gem.p.detach(), p_before)


_CEIL_POOLS: dict[str, Callable[..., torch.nn.Module]] = {
    "avgmax2d": lambda **kw: tp.AvgMaxPool2d(3, 2, 1, **kw),
    "catavgmax2d": lambda **kw: tp.CatAvgMaxPool2d(3, 2, 1, **kw),
    "mixed2d": lambda **kw: tp.MixedPool2d(3, 2, 1, **kw),
    "learned_mixed2d": lambda **kw: tp.LearnedMixedPool2d(3, 2, 1, **kw),
    "gated2d": lambda **kw: tp.GatedPool2d(3, 2, 1, **kw),
}


@pytest.mark.parametrize("name", list(_CEIL_POOLS))
def test_combined_pools_ceil_mode_size(name: str) -> None:
    x = torch.randn(2, 3, 8, 9)
    want = F.max_pool2d(x, 3, 2, 1, ceil_mode=True).shape[-2:]
    assert want != F.max_pool2d(x, 3, 2, 1).shape[-2:]
    assert _CEIL_POOLS[name](ceil_mode=True).eval()(x).shape[-2:] == want
    assert (
        _CEIL_POOLS[name](dilation=(2, 1)).eval()(x).shape[-2:] == F.max_pool2d(x, 3, 2, 1, (2, 1)).shape[-2:]
    )
    with pytest.raises(TypeError, match="ceil_mode must be a bool"):
        _CEIL_POOLS[name](ceil_mode="yes")
    with pytest.raises(ValueError, match="dilation must be positive"):
        _CEIL_POOLS[name](dilation=0)


def test_combined_pools_take_ceil_mode_positionally_as_pytorch() -> None:
    """``ceil_mode`` follows ``padding`` positionally, as in ``F.avg_pool2d``/``nn.AvgPool2d``."""
    x = torch.randn(2, 3, 8, 9)
    want = F.max_pool2d(x, 3, 2, 1, ceil_mode=True).shape[-2:]
    for cls in (tp.AvgMaxPool2d, tp.CatAvgMaxPool2d, tp.MixedPool2d, tp.LearnedMixedPool2d, tp.GatedPool2d):
        pool = cls(3, 2, 1, True)
        assert pool.ceil_mode is True and pool.eval()(x).shape[-2:] == want, cls.__name__
    for n in (1, 2, 3):
        mixed = getattr(tp, f"mixed_pool{n}d")
        y = torch.randn(1, 2, *[7] * n)
        assert torch.equal(
            mixed(y, 3, 2, 1, True, training=False), mixed(y, 3, 2, 1, training=False, ceil_mode=True)
        )


def _out_size(i: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    # PyTorch's Pool.h rule, written out here
    o = (i + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    return o - 1 if ceil_mode and (o - 1) * s >= i + p else o


def _dilated_reference(
    x: torch.Tensor,
    k: int,
    s: int,
    p: int,
    d: int,
    ceil_mode: bool,
    count_include_pad: bool = True,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(avg, max, gate logits) over dilated windows, by loops over every cell in float64.

    The average divides by the cells inside the padded input (count_include_pad) or the input,
    avg_pool's rule cell by cell; the gate logit dots the mask with the cells (zeros outside).
    """
    x = x.double()
    n = x.dim() - 2
    sizes = x.shape[2:]
    outs = [_out_size(i, k, s, p, d, ceil_mode) for i in sizes]
    avg = torch.empty(*x.shape[:2], *outs, dtype=torch.float64)
    mx, logit = torch.empty_like(avg), torch.zeros_like(avg)
    for b, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for pos in itertools.product(*(range(o) for o in outs)):
            values: list[torch.Tensor] = []
            counted = 0
            out_index = (b, c, *pos)
            for taps in itertools.product(range(k), repeat=n):
                cell = [o * s - p + a * d for o, a in zip(pos, taps)]
                inside = all(0 <= q < i for q, i in zip(cell, sizes))
                padded_inside = all(-p <= q < i + p for q, i in zip(cell, sizes))
                counted += inside or (count_include_pad and padded_inside)
                if inside:
                    in_index = (b, c, *cell)
                    values.append(x[in_index])
                    if mask is not None:
                        mask_index = (c if mask.shape[0] > 1 else 0, 0, *taps)
                        logit[out_index] += mask[mask_index] * x[in_index]
            avg[out_index] = sum(values) / counted
            mx[out_index] = max(values)
    return avg, mx, logit


_DILATED = [
    (1, 3, 2, 1, 2, True, False),
    (1, 2, 1, 0, 3, False, True),
    (2, 3, 2, 1, 2, True, True),
    (2, 2, 3, 1, 2, True, False),
    (2, 3, 1, 0, 2, False, True),
    (3, 2, 2, 1, 2, True, True),
]


@pytest.mark.parametrize(("n", "k", "s", "p", "d", "ceil_mode", "include"), _DILATED)
def test_dilated_combined_pools_match_reference(
    n: int, k: int, s: int, p: int, d: int, ceil_mode: bool, include: bool
) -> None:
    x = torch.randn(2, 3, *[9, 8, 7][:n], dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    avg, mx, _ = _dilated_reference(x, k, s, p, d, ceil_mode, include)
    kw = {"ceil_mode": ceil_mode, "count_include_pad": include, "dilation": d}
    torch.testing.assert_close(getattr(tp, f"avgmax_pool{n}d")(x, k, s, p, **kw), 0.5 * (avg + mx))
    torch.testing.assert_close(getattr(tp, f"catavgmax_pool{n}d")(x, k, s, p, **kw), torch.cat([avg, mx], 1))
    mixed = getattr(tp, f"mixed_pool{n}d")
    want = _dilated_reference(x, k, s, p, d, ceil_mode)
    y = mixed(x, k, s, p, training=False, max_probability=0.3, ceil_mode=ceil_mode, dilation=d)
    torch.testing.assert_close(y, 0.3 * want[1] + 0.7 * want[0])
    module = getattr(tp, f"AvgMaxPool{n}d")(k, s, p, ceil_mode, include, dilation=d)
    assert torch.equal(module(x), getattr(tp, f"avgmax_pool{n}d")(x, k, s, p, **kw))
    assert torch.autograd.gradcheck(
        lambda t: getattr(tp, f"catavgmax_pool{n}d")(t, k, s, p, **kw), (x[:1, :2].clone().requires_grad_(),)
    )


@pytest.mark.parametrize(("k", "s", "p", "d", "ceil_mode"), [(3, 2, 1, 2, True), (2, 1, 0, 3, False)])
def test_dilated_learned_and_gated_match_reference(k: int, s: int, p: int, d: int, ceil_mode: bool) -> None:
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    gated = tp.GatedPool2d(k, s, p, channels=3, ceil_mode=ceil_mode, dilation=d).double()
    learned = tp.LearnedMixedPool2d(k, s, p, ceil_mode=ceil_mode, dilation=d).double()
    with torch.no_grad():
        gated.gate_weight.copy_(
            torch.linspace(-1.5, 1.0, gated.gate_weight.numel()).reshape_as(gated.gate_weight)
        )
        learned.mix_logit.fill_(0.7)
    avg, mx, logit = _dilated_reference(x, k, s, p, d, ceil_mode, mask=gated.gate_weight.detach())
    gate = torch.sigmoid(logit)
    torch.testing.assert_close(gated(x), gate * mx + (1 - gate) * avg)
    a = torch.sigmoid(torch.tensor(0.7, dtype=torch.float64))
    torch.testing.assert_close(learned(x), a * mx + (1 - a) * avg)
    x1 = x[:1, :3].clone().requires_grad_()
    assert torch.autograd.gradcheck(gated, (x1,))


@pytest.mark.parametrize("name", ["avgmax2d", "mixed2d", "learned_mixed2d", "gated2d"])
def test_swap_pooling_keeps_ceil_mode_and_dilation_of_combined_targets(name: str) -> None:
    """squeezenet's MaxPool2d(3, 2, ceil_mode=True) swapped: the combined pool gets ceil_mode."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.MaxPool2d(3, 2, ceil_mode=True))
    x = torch.randn(2, 3, 10, 10)
    new, report = tp.swap_pooling(model, name, example_input=x, return_report=True)
    assert isinstance(new, torch.nn.Sequential)
    swapped: Any = new[1]  # the combined pool that replaced the max pool
    assert swapped.ceil_mode is True and report.replaced[0].note.startswith("same")
    assert new.eval()(x).shape == model(x).shape == (2, 4, 4, 4)
    dilated = torch.nn.Sequential(torch.nn.MaxPool2d(3, 2, dilation=2, ceil_mode=True))
    new = tp.swap_pooling(dilated, name, example_input=x)
    assert isinstance(new, torch.nn.Sequential)
    swapped = new[0]
    assert swapped.dilation == 2 and swapped.ceil_mode is True
    assert new.eval()(x).shape == dilated(x).shape
