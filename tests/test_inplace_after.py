"""An in-place op on a pool's output, as real models apply one (``nn.Dropout(inplace=True)`` in
EfficientNet's classifier, ``nn.ReLU(inplace=True)`` after a pool), must neither break the
backward nor reach the input: every registered pool, in training and evaluation mode.

A pool that returns a tensor autograd saved for its own backward (a view of an attention output,
an ``exp`` result) fails the backward after such an op; one that returns its input (an identity
case) lets the op change the caller's tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import torchpool as tp
import torchpool.functional as tpf


def _first(y: object) -> torch.Tensor:
    out = y[0] if isinstance(y, tuple | list) else y
    assert isinstance(out, torch.Tensor)
    return out


def _run(
    info: tp.PoolInfo, training: bool, x: torch.Tensor, inplace: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    module = tp.create_pool(info.name, **info.example_kwargs).train(training).to(torch.float64)
    leaf = x.clone().requires_grad_(True)
    y = _first(module(leaf))
    y = y.mul_(2.0) if inplace else y.mul(2.0)
    torch.manual_seed(1)
    weights = torch.rand_like(y)
    (y * weights).sum().backward()  # type: ignore[no-untyped-call]
    assert leaf.grad is not None
    return y.detach(), leaf.grad


# Pools whose backward keeps their output (autograd's version check then refuses the backward
# loudly, as after torch.sigmoid; no wrong gradient): making them tolerate an in-place op costs a
# copy of the output, which the median's memory bound (< 2x the input) has no room for. Strict:
# a pool that starts to pass leaves this list.
SAVES_ITS_OUTPUT = {
    **{
        f"median{d}d": "the median's backward finds each window's median cell from the output"
        for d in (1, 2, 3)
    },
    **{f"soft{d}d": "SoftPool's analytic gradient reads the output" for d in (1, 2, 3)},
    "lip2d": "LIP's analytic gradient reads the output",
}
EVAL_SAVES_ITS_OUTPUT = {
    f"stochastic{d}d": "stochastic pooling's evaluation backward reads the output" for d in (1, 2, 3)
}


def _cases() -> list[Any]:
    cases: list[Any] = []
    for info in tp.list_pools():
        for training in (False, True):
            reason = SAVES_ITS_OUTPUT.get(info.name) or (
                None if training else EVAL_SAVES_ITS_OUTPUT.get(info.name)
            )
            marks = [pytest.mark.xfail(strict=True, raises=RuntimeError, reason=reason)] if reason else []
            mode = "train" if training else "eval"
            cases.append(pytest.param(info, training, id=f"{info.name}-{mode}", marks=marks))
    return cases


@pytest.mark.parametrize(("info", "training"), _cases())
def test_inplace_op_on_the_output(info: tp.PoolInfo, training: bool) -> None:
    shape = (2, 4, *[8] * info.dims[0])
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 0.1
    before = x.clone()
    y_ref, grad_ref = _run(info, training, x, inplace=False)
    y, grad = _run(info, training, x, inplace=True)
    assert torch.equal(x, before)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("info", [pytest.param(i, id=i.name) for i in tp.list_pools()])
def test_output_is_not_the_input(info: tp.PoolInfo) -> None:
    """Even where the pool is the identity (a 1x1 window, spectral pooling to the same size)."""
    x = torch.rand(2, 4, *[8] * info.dims[0]) + 0.1
    module = tp.create_pool(info.name, **info.example_kwargs).eval()
    with torch.no_grad():
        y = _first(module(x))
    if y.shape == x.shape:
        assert y.data_ptr() != x.data_ptr() or y.numel() == 0


_IDENTITY_CASES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "spectral to the same size": lambda x: tpf.spectral_pool2d(x, tuple(x.shape[-2:])),
    "median 1x1": lambda x: tpf.median_pool2d(x, 1),
    "soft 1x1": lambda x: tpf.soft_pool2d(x, 1),
    "avgmax 1x1": lambda x: tpf.avgmax_pool2d(x, 1),
    "stochastic 1x1, eval": lambda x: tpf.stochastic_pool2d(x, 1, training=False),
    "blur 1 s1": lambda x: tpf.blur_pool2d(x, 1, 1),
    "maxblur 1 s1": lambda x: tpf.max_blur_pool2d(x, 1, 1, 1),
}


@pytest.mark.parametrize("case", list(_IDENTITY_CASES))
def test_identity_cases_return_a_new_tensor(case: str) -> None:
    """Pools that compute the identity here still return a tensor of their own (an in-place op
    on it must not reach the caller's input)."""
    x = torch.rand(2, 3, 8, 8) + 0.1
    before = x.clone()
    y = _IDENTITY_CASES[case](x)
    torch.testing.assert_close(y, x)  # the identity, to rounding (SoftPool: e^a a / e^a)
    y.mul_(2.0)
    assert torch.equal(x, before)
