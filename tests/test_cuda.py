"""Every registered pool on CUDA: same results as on the CPU, half precision, determinism, compile.

Skipped without a CUDA device (CI has none); run on a GPU machine with
``python -m pytest tests/test_cuda.py``. The registry walk means a new pool is covered here
as soon as it is registered.

* CPU parity: eval mode, float32, forward and input gradient (rtol = atol = 1e-4).
* float16 / bfloat16: the module and input converted; finite, and close to float32 on CUDA.
* ``torch.use_deterministic_algorithms(True)``: forward and backward run (PyTorch raises on its
  non-deterministic kernels) and two runs are bitwise equal, except ``DETERMINISTIC_EXCEPTIONS``
  (the records' ``deterministic_exception``, asserted to still raise).
* inductor on CUDA for a few pools, pooling + unpooling, the median's compiled path, and
  stochastic pooling with a CUDA generator.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, cast

import pytest
import torch
from records import POOLS
from torch import nn

import torchpool as tp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

INFOS = tp.list_pools()
CASES = [pytest.param(info, d, id=f"{info.name}-{d}d") for info in INFOS for d in info.dims]
SEED = 1234
#: draws random regions even in eval mode: not comparable across devices (``PoolRecord.random_in_eval``)
RANDOM_IN_EVAL = frozenset(name for name, record in POOLS.items() if record.random_in_eval)
#: pools whose backward has no deterministic CUDA kernel in PyTorch; asserted to raise
#: (``PoolRecord.deterministic_exception``)
DETERMINISTIC_EXCEPTIONS: dict[str, str] = {
    name: record.deterministic_exception for name, record in POOLS.items() if record.deterministic_exception
}
#: pools compiled with inductor on CUDA (``PoolRecord.cuda_inductor``)
INDUCTOR_POOLS = tuple(name for name, record in POOLS.items() if record.cuda_inductor)


def _build(info: tp.PoolInfo) -> nn.Module:
    torch.manual_seed(0)
    return tp.create_pool(info.name, **info.example_kwargs)


def _input(dims: int, device: str, size: int = 8, channels: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, channels, *[size] * dims, generator=g).to(device)


def _run(module: nn.Module, x: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    kwargs: dict[str, Any] = {}
    if seed is not None:
        torch.manual_seed(seed)
        if "generator" in inspect.signature(module.forward).parameters:
            kwargs["generator"] = torch.Generator(x.device).manual_seed(seed)
    y = module(x, **kwargs)
    y = y[0] if isinstance(y, tuple) else y
    weight = torch.linspace(0.5, 1.5, y.numel(), device=y.device).reshape(y.shape)
    (grad,) = torch.autograd.grad((y.float() * weight).sum(), x)
    return y.detach(), grad


@pytest.mark.parametrize(("info", "dims"), CASES)
def test_cuda_matches_cpu(info: tp.PoolInfo, dims: int) -> None:
    cpu = _build(info).eval()
    cuda = copy.deepcopy(cpu).cuda()
    x = _input(dims, "cpu")
    y_gpu, g_gpu = _run(cuda, x.cuda())
    assert y_gpu.is_cuda and g_gpu.is_cuda
    if info.name in RANDOM_IN_EVAL:
        return
    y_cpu, g_cpu = _run(cpu, x)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize(("info", "dims"), CASES)
def test_cuda_half_precision(info: tp.PoolInfo, dims: int, dtype: torch.dtype) -> None:
    module = _build(info).eval().cuda()
    x = _input(dims, "cuda", size=16) * 50  # activations up to 50
    y32, _ = _run(module, x, SEED)
    y, g = _run(copy.deepcopy(module).to(dtype), x.to(dtype), SEED)
    assert y.dtype == dtype
    assert torch.isfinite(y).all() and torch.isfinite(g).all()
    if info.name not in RANDOM_IN_EVAL:
        tol = 2e-2 if dtype == torch.float16 else 6e-2
        torch.testing.assert_close(y.float(), y32.float(), rtol=tol, atol=tol * float(y32.abs().max()))


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize(("info", "dims"), CASES)
def test_cuda_deterministic_algorithms(info: tp.PoolInfo, dims: int, mode: str) -> None:
    module = _build(info).cuda().train(mode == "train")
    x = _input(dims, "cuda", size=16 if dims < 3 else 8, channels=4)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        if info.name in DETERMINISTIC_EXCEPTIONS:
            with pytest.raises(RuntimeError, match="deterministic"):
                _run(module, x, SEED)
            return
        y1, g1 = _run(module, x, SEED)
        y2, g2 = _run(module, x, SEED)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(y1, y2) and torch.equal(g1, g2)


def test_cuda_deterministic_paths_match_default() -> None:
    """The routes taken under the flag compute the same function as PyTorch's kernels."""
    x = _input(3, "cuda", size=9)
    cases = (("adaptive_avg3d", {"output_size": 4}), ("avgmax3d", {"kernel_size": 3, "stride": 2}))
    for name, kwargs in cases:
        module = tp.create_pool(name, **kwargs)
        y, g = _run(module, x)
        with tp.deterministic():
            y_det, g_det = _run(module, x)
        torch.testing.assert_close(y_det, y, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g_det, g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", INDUCTOR_POOLS)
def test_cuda_inductor_matches_eager(name: str) -> None:
    torch._dynamo.reset()
    info = tp.get_pool_info(name)
    dims = 2 if 2 in info.dims else info.dims[0]
    module = _build(info).eval().cuda()
    x = _input(dims, "cuda", size=16)
    y_c, g_c = _run(cast(nn.Module, torch.compile(module)), x, SEED)
    y_e, g_e = _run(module, x, SEED)
    torch.testing.assert_close(y_c, y_e, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g_c, g_e, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_cuda_unpool_matches_cpu(reduce: str) -> None:
    x = _input(2, "cpu", size=9)
    y, idx = torch.nn.functional.max_pool2d(x, 3, 2, 1, return_indices=True)
    cpu = tp.max_unpool2d(y, idx, 3, 2, 1, output_size=(9, 9), reduce=reduce)
    gpu = tp.max_unpool2d(y.cuda(), idx.cuda(), 3, 2, 1, output_size=(9, 9), reduce=reduce)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_cuda_median_compiled_path(stride: int) -> None:
    x = torch.randn(2, 8, 33, 31, device="cuda", requires_grad=True)
    eager = tp.median_pool2d(x, 3, stride, 1)
    compiled = tp.median_pool2d(x, 3, stride, 1, compiled=True)
    assert torch.equal(eager, compiled)
    (g_e,) = torch.autograd.grad(eager.sum(), x)
    (g_c,) = torch.autograd.grad(compiled.sum(), x)
    assert torch.equal(g_e, g_c)


def test_cuda_stochastic_generator() -> None:
    x = torch.rand(4, 8, 32, 32, device="cuda")

    def draw(seed: int) -> torch.Tensor:
        return tp.stochastic_pool2d(x, 3, 2, generator=torch.Generator("cuda").manual_seed(seed))

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))
    with pytest.raises(ValueError, match="generator is on cpu"):
        tp.stochastic_pool2d(x, 3, 2, generator=torch.Generator().manual_seed(1))
