"""Regression tests for issue 10's silent results and unclear errors, one group per op family.

Each test failed on the code before its fix: a wrong result returned without a word, or an
error that did not say what was wrong.
"""

from __future__ import annotations

import math

import pytest
import torch

import torchpool as tp
from tests.reference import gem_reference

# --------------------------------------------------------------------------- 1. GeM's p


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_gem_refuses_tensor_p_that_is_not_finite_and_positive(bad: float) -> None:
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="p must be finite and positive"):
        tp.gem(x, p=torch.tensor(bad))  # p = 0 returned the per-channel max
    with pytest.raises(ValueError, match="p must be finite and positive"):
        tp.gem(x, p=torch.tensor([3.0, bad, 2.0]))  # one bad value per channel


@pytest.mark.parametrize("bad", [0.0, -2.0, math.nan, math.inf])
def test_gem_refuses_float_p_like_tensor_p(bad: float) -> None:
    with pytest.raises(ValueError, match="p"):
        tp.gem(torch.rand(2, 3, 4, 4), p=bad)
    with pytest.raises(ValueError, match="p"):
        tp.GeM(p=bad)


def test_gem_refuses_complex_or_bool_p() -> None:
    with pytest.raises(TypeError, match="p must be a real"):
        tp.gem(torch.rand(2, 3, 4, 4), p=torch.tensor(True))


def test_gem_module_checks_p_at_forward() -> None:
    pool = tp.GeM(p=3.0)
    x = torch.rand(2, 3, 4, 4)
    pool.load_state_dict({"p": torch.tensor([0.0])})  # a bad state dict
    with pytest.raises(ValueError, match=r"p must be finite and positive, got 0\.0"):
        pool(x)
    pool = tp.GeM(p=0.5)
    optimizer = torch.optim.SGD(pool.parameters(), lr=10.0)
    pool(x).sum().backward()  # a step that drives p below 0 (the mean grows with p)
    optimizer.step()
    assert float(pool.p.detach()) < 0
    with pytest.raises(ValueError, match="p must be finite and positive"):
        pool(x)


def test_gem_unchecked_only_where_values_cannot_be_read() -> None:
    """meta tensors (shape inference) run without the data-dependent checks."""
    pool = tp.GeM(p=3.0, channels=3).to("meta")
    y = pool(torch.empty(2, 3, 4, 4, device="meta"))
    assert y.shape == (2, 3) and y.device.type == "meta"


@pytest.mark.parametrize("p", [1.0, 3.0, 13.0, torch.tensor([2.5, 10.0, 13.0])])
def test_gem_direct_and_scaled_paths_match_the_reference(p: float | torch.Tensor) -> None:
    """Ordinary planes take the direct powers, planes whose powers overflow (1000^13 = 1e39)
    or underflow (a dead channel: 1e-6^13 = 0) the max-scaled path: all match float64."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 5) * 2
    x[0, 1] *= 1000.0  # overflows float32 for p = 13
    x[1, 2] = 0.0  # dead: clamped to eps
    y = tp.gem(x, p=p)
    exponents = p.tolist() if isinstance(p, torch.Tensor) else [p] * 3
    for c, e in enumerate(exponents):
        torch.testing.assert_close(
            y[:, c].double(), gem_reference(x[:, c : c + 1], e, 1e-6)[:, 0], rtol=2e-5, atol=0
        )
    ordinary = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(
        tp.gem(ordinary, p=3.0).double(), gem_reference(ordinary, 3.0, 1e-6), rtol=2e-6, atol=0
    )


# --------------------------------------------------------------------------- 6. helpers


@pytest.mark.parametrize("size", [8.0, "8", None, b"8"])
def test_pool_output_size_refuses_a_size_that_is_no_int_or_sequence(size: object) -> None:
    with pytest.raises(TypeError, match="size must be an int or a sequence of ints"):
        tp.pool_output_size(size, 2)  # type: ignore[call-overload]  # float: "has no len()"


@pytest.mark.parametrize("x", [3, "cuda", [torch.zeros(1)]])
def test_is_deterministic_refuses_a_non_tensor(x: object) -> None:
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor or None"):
        tp.is_deterministic(x)  # type: ignore[arg-type]  # returned False
