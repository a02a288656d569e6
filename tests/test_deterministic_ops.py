"""Deterministic mode for median and stochastic (eval) pooling.

With ``torch.use_deterministic_algorithms(True)`` PyTorch raises on CUDA in the backward of
``avg_pool3d`` and of reflection / replication padding. In torchpool's deterministic mode
(``torchpool._deterministic``) these ops avoid those kernels:

* stochastic eval, 3d: the backward is the vector-Jacobian product of the separable
  ``avg_pool2d`` + ``avg_pool1d`` form instead of ``avg_pool3d_backward``;
* median: the padding is done inside its autograd Function and differentiated by strided slice
  additions, on every path.

Checked here on the CPU, in float64: the deterministic mode gives the default path's forward and
input gradient (``assert_close`` at 1e-12), and no kernel PyTorch flags as non-deterministic on
CUDA is dispatched in its backward (a ``TorchDispatchMode`` records the aten ops).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

import torchpool as tp
from torchpool._deterministic import deterministic

# aten backward kernels that raise on CUDA under torch.use_deterministic_algorithms(True)
NONDETERMINISTIC = (
    "avg_pool3d_backward",
    "reflection_pad1d_backward",
    "reflection_pad2d_backward",
    "reflection_pad3d_backward",
    "replication_pad1d_backward",
    "replication_pad2d_backward",
    "replication_pad3d_backward",
    "_adaptive_avg_pool2d_backward",
    "_adaptive_avg_pool3d_backward",
    "adaptive_max_pool2d_backward",
    "max_pool3d_with_indices_backward",
    "fractional_max_pool2d_backward",
    "fractional_max_pool3d_backward",
)

STOCHASTIC = {1: tp.stochastic_pool1d, 2: tp.stochastic_pool2d, 3: tp.stochastic_pool3d}
MEDIAN = {1: tp.median_pool1d, 2: tp.median_pool2d, 3: tp.median_pool3d}
SPATIAL = {1: (11,), 2: (9, 8), 3: (6, 7, 5)}

EVAL_CASES = [
    pytest.param(nd, k, s, p, id=f"eval{nd}d-k{'x'.join(map(str, k)) if isinstance(k, tuple) else k}s{s}p{p}")
    for nd in (1, 2, 3)
    for k, s, p in ((2, 2, 0), (3, 2, 1), (3, 1, 1), ((3, 2, 2)[:nd] if nd > 1 else 2, 1, 1))
]
MEDIAN_CASES = [
    pytest.param(nd, k, s, p, mode, id=f"median{nd}d-k{k}s{s}p{p}-{mode}")
    for nd in (1, 2, 3)
    for mode in ("reflect", "replicate", "zeros")
    for k, s, p in ((3, 1, 1), (3, 2, 1), (2, 1, 1))
]


def _input(nd: int, seed: int) -> Tensor:
    x = torch.rand(2, 3, *SPATIAL[nd], dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    x[0, 0, ..., :2] = 0.0  # zero windows (stochastic) and ties (median)
    return x


def _forward_and_grad(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    leaf = x.clone().requires_grad_(True)
    y = fn(leaf)
    upstream = torch.rand(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(99))
    torch.autograd.backward(y, upstream)  # y.backward(upstream), typed
    assert leaf.grad is not None
    return y.detach(), leaf.grad


# TorchDispatchMode's __init__ and __init_subclass__ are unannotated in torch
class _RecordOps(TorchDispatchMode):  # type: ignore[no-untyped-call]
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.names: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names.add(func._schema.name.split("::")[-1])
        return func(*args, **(kwargs or {}))


def _backward_ops(fn: Callable[[Tensor], Tensor], x: Tensor) -> set[str]:
    leaf = x.clone().requires_grad_(True)
    y = fn(leaf)
    record = _RecordOps()
    with record:
        torch.autograd.backward(y, torch.ones_like(y))
    return record.names


def _check(fn: Callable[[Tensor], Tensor], x: Tensor) -> None:
    expected = _forward_and_grad(fn, x)
    with deterministic(True):
        got = _forward_and_grad(fn, x)
        ops = _backward_ops(fn, x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert not ops & set(NONDETERMINISTIC), (
        f"non-deterministic backward kernels: {ops & set(NONDETERMINISTIC)}"
    )


@pytest.mark.parametrize(("nd", "k", "s", "p"), EVAL_CASES)
def test_stochastic_eval_deterministic_equals_default(nd: int, k: Any, s: int, p: int) -> None:
    _check(lambda t: STOCHASTIC[nd](t, k, s, p, training=False), _input(nd, seed=nd))


@pytest.mark.parametrize(("nd", "k", "s", "p", "mode"), MEDIAN_CASES)
def test_median_deterministic_equals_default(nd: int, k: int, s: int, p: int, mode: str) -> None:
    _check(lambda t: MEDIAN[nd](t, k, s, p, padding_mode=mode), _input(nd, seed=10 + nd))


def test_stochastic_eval3d_channels_last_and_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchpool.ops import stochastic

    x = _input(3, seed=4).contiguous(memory_format=torch.channels_last_3d)
    monkeypatch.setattr(stochastic, "_CHUNK_ELEMENTS", 100)  # several chunks
    _check(lambda t: tp.stochastic_pool3d(t, 3, 2, 1, training=False), x)


def test_recorder_sees_the_default_kernels() -> None:
    """The op recorder has power: outside deterministic mode the 3d eval backward does dispatch
    ``avg_pool3d_backward``."""
    with deterministic(False):
        ops = _backward_ops(lambda t: tp.stochastic_pool3d(t, 2, 1, 1, training=False), _input(3, seed=5))
    assert "avg_pool3d_backward" in ops


#: registered pools whose backward still dispatches a kernel flagged above, with the reason
REGISTRY_EXCEPTIONS: dict[str, str] = {
    "fractional_max3d": "no deterministic CUDA backward in PyTorch, and no other form",
}
POOLS_3D = [pytest.param(info, id=info.name) for info in tp.list_pools() if 3 in info.dims]


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("info", POOLS_3D)
def test_every_3d_pool_avoids_nondeterministic_backward(info: tp.PoolInfo, training: bool) -> None:
    """Every registered 3d pool, in deterministic mode: the same forward and input gradient as the
    default path, and no backward kernel that raises on CUDA under
    ``torch.use_deterministic_algorithms(True)`` (found on an H200: 3d max pooling raised in 18
    pools before the separable route)."""
    torch.manual_seed(0)
    module = tp.create_pool(info.name, **info.example_kwargs).double().train(training)
    x = torch.rand(2, 4, 6, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def fn(t: Tensor) -> Tensor:
        torch.manual_seed(1)  # the random pools draw the same cells in both modes
        out: Tensor = module(t)
        return out

    if info.name in REGISTRY_EXCEPTIONS:
        with deterministic(True):
            assert _backward_ops(fn, x) & set(NONDETERMINISTIC)
        return
    _check(fn, x)
