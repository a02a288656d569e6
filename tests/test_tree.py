"""Tree pooling (Lee, Gallagher & Tu 2016): the paper's properties beyond the generic walks.

The float64 reference :func:`records.tree.tree_loops` loops over the windows and evaluates the
paper's recursion node by node (no convolution); the op table (``records/tree.py``) runs it on
fixed weights, here it runs on random ones.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from records.tree import tree_loops

import torchpool as tp
from torchpool.ops.tree import INIT_STD, tree_pool2d


def _weights(
    leaves: int, k: tuple[int, int], rows: int = 0, seed: int = 0, scale: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float64 leaf filters and gating masks: 3-d (``rows=0``) or ``(rows, nodes, kh, kw)``."""
    g = torch.Generator().manual_seed(seed)
    lead = (rows,) if rows else ()
    leaf = scale * torch.randn(*lead, leaves, *k, generator=g, dtype=torch.float64)
    gate = 2 * scale * torch.randn(*lead, leaves - 1, *k, generator=g, dtype=torch.float64)
    return leaf, gate


def _x(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _as_rows(t: torch.Tensor) -> torch.Tensor:
    return t if t.dim() == 4 else t[None]


CONFIGS = [
    pytest.param(dict(k=(2, 2), s=(2, 2), p=(0, 0), depth=2, rows=0), id="k2s2-d2"),
    pytest.param(dict(k=(3, 3), s=(2, 2), p=(1, 1), depth=2, rows=0), id="k3s2p1-d2"),
    pytest.param(dict(k=(3, 3), s=(1, 1), p=(1, 1), depth=3, rows=3), id="k3s1p1-d3-per-channel"),
    pytest.param(dict(k=(3, 2), s=(2, 1), p=(1, 0), depth=4, rows=0), id="k3x2-d4"),
    pytest.param(dict(k=(2, 3), s=(1, 3), p=(0, 1), depth=1, rows=3), id="k2x3-d1-per-channel"),
]


# ------------------------------------------------------------------ the recursion


@pytest.mark.parametrize("cfg", CONFIGS)
def test_recursion_matches_loop_reference(cfg: dict[str, Any]) -> None:
    leaf, gate = _weights(2 ** (cfg["depth"] - 1), cfg["k"], cfg["rows"])
    x = _x(2, 3, 7, 8)
    got = tree_pool2d(x, leaf, gate, cfg["k"], cfg["s"], cfg["p"])
    want = tree_loops(x, _as_rows(leaf), _as_rows(gate), cfg["k"], cfg["s"], cfg["p"])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    y32 = tree_pool2d(x.float(), leaf.float(), gate.float(), cfg["k"], cfg["s"], cfg["p"])
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), want, rtol=1e-5, atol=1e-5)


def test_heap_order_of_nodes() -> None:
    """Saturated gates pick one root-to-leaf path: gate m = +big picks node 2m (left), -big 2m + 1."""
    k = (2, 2)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)  # w . x = 10 for w = 1
    leaf = torch.stack(
        [torch.full(k, float(j + 1), dtype=torch.float64) for j in range(4)]
    )  # leaf j: 10 (j+1)
    for path, signs in {4: (1, 1, 0), 5: (1, -1, 0), 6: (-1, 0, 1), 7: (-1, 0, -1)}.items():
        gate = torch.stack([torch.full(k, 100.0 * s, dtype=torch.float64) for s in signs])  # nodes 1, 2, 3
        got = tree_pool2d(x, leaf, gate, 2).item()
        assert got == pytest.approx(10.0 * (path - 4 + 1), abs=1e-9), path


def test_depth_one_is_a_strided_filter() -> None:
    """One leaf, no gate: the sum of the window's cells times the filter (shifted strided slices)."""
    g = torch.Generator().manual_seed(3)
    leaf = torch.randn(1, 3, 2, generator=g, dtype=torch.float64)
    x = _x(2, 2, 7, 9)
    y = tree_pool2d(x, leaf, torch.empty(0, 3, 2, dtype=torch.float64), (3, 2), (2, 2))
    want = sum(leaf[0, a, b] * x[:, :, a : a + 5 : 2, b : b + 7 : 2] for a in range(3) for b in range(2))
    assert isinstance(want, torch.Tensor)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ average pooling as a special case


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize(("k", "s", "p"), [(2, 2, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 1))])
def test_uniform_leaves_give_average_pooling(depth: int, k: Any, s: Any, p: Any) -> None:
    """Every leaf ``1 / (kh kw)``, any gates: ``avg_pool2d`` with ``count_include_pad=True``."""
    kh, kw = (k, k) if isinstance(k, int) else k
    _, gate = _weights(2 ** (depth - 1), (kh, kw), seed=depth)
    leaf = torch.full((2 ** (depth - 1), kh, kw), 1.0 / (kh * kw), dtype=torch.float64)
    x = _x(2, 3, 7, 6)
    want = F.avg_pool2d(x, k, s, p, count_include_pad=True)
    torch.testing.assert_close(tree_pool2d(x, leaf, gate, k, s, p), want, rtol=1e-12, atol=1e-12)
    if p != 0:  # and not the divisor that ignores padding
        assert not torch.allclose(want, F.avg_pool2d(x, k, s, p, count_include_pad=False))


def test_average_init_is_average_pooling() -> None:
    pool = tp.TreePool2d(3, 2, 1, depth=3, init="average")
    assert bool((pool.gate_weight == 0).all()) and bool((pool.leaf_weight == 1 / 9).all())
    x = _x(2, 4, 9, 9).float()
    torch.testing.assert_close(pool(x), F.avg_pool2d(x, 3, 2, 1), rtol=1e-6, atol=1e-6)


def test_normal_init_as_the_authors_code() -> None:
    """Every filter and mask from N(0, 0.1^2), drawn independently (the code's Gaussian filler)."""
    torch.manual_seed(0)
    pool = tp.TreePool2d(7, depth=6)
    for t in (pool.leaf_weight, pool.gate_weight):
        values = t.detach().flatten().double()
        assert values.numel() >= 31 * 49
        assert abs(float(values.mean())) < 0.01
        assert abs(float(values.std()) - INIT_STD) < 0.01
    assert INIT_STD == 0.1
    torch.manual_seed(1)
    again = tp.TreePool2d(7, depth=6)
    assert not torch.equal(again.leaf_weight, pool.leaf_weight)
    pool.init = "average"
    pool.reset_parameters()
    assert bool((pool.leaf_weight == 1 / 49).all()) and bool((pool.gate_weight == 0).all())


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("cfg", CONFIGS)
def test_gradcheck_input_leaves_and_gates(cfg: dict[str, Any]) -> None:
    leaf, gate = _weights(2 ** (cfg["depth"] - 1), cfg["k"], cfg["rows"], seed=5)
    x = _x(1, 3, 6, 7, seed=6).requires_grad_(True)
    leaf.requires_grad_(True)
    gate.requires_grad_(True)
    inputs = (x, leaf, gate) if gate.numel() else (x, leaf)

    def fn(*args: torch.Tensor) -> torch.Tensor:
        g = args[2] if len(args) == 3 else gate
        return tree_pool2d(args[0], args[1], g, cfg["k"], cfg["s"], cfg["p"])

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_gradcheck_mixed_sharing() -> None:
    """Leaf filters per channel, gating masks shared (and the reverse)."""
    leaf, _ = _weights(4, (3, 3), rows=2, seed=7)
    _, gate = _weights(4, (3, 3), seed=8)
    x = _x(2, 2, 5, 5, seed=9).requires_grad_(True)
    for a, b in ((leaf, gate), (leaf[0], _weights(4, (3, 3), rows=2, seed=10)[1])):
        a = a.clone().requires_grad_(True)
        b = b.clone().requires_grad_(True)

        def fn(t: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return tree_pool2d(t, v, w, 3, 2, 1)

        assert torch.autograd.gradcheck(fn, (x, a, b), eps=1e-6, atol=1e-6)
        want = tree_loops(x.detach(), _as_rows(a.detach()), _as_rows(b.detach()), 3, 2, 1)
        torch.testing.assert_close(tree_pool2d(x, a, b, 3, 2, 1), want, rtol=1e-12, atol=1e-12)


def test_module_parameters_get_gradients() -> None:
    pool = tp.TreePool2d(3, 2, 1, depth=3, per_channel=True, channels=4)
    pool(torch.randn(2, 4, 8, 8)).square().sum().backward()
    for t in (pool.leaf_weight, pool.gate_weight):
        assert t.grad is not None and t.grad.shape == t.shape and bool(t.grad.abs().sum() > 0)


# ------------------------------------------------------------------ per channel vs shared


def test_per_channel_with_equal_sets_is_shared() -> None:
    torch.manual_seed(2)
    shared = tp.TreePool2d(3, 2, 1, depth=3).double()
    per = tp.TreePool2d(3, 2, 1, depth=3, per_channel=True, channels=5).double()
    assert per.leaf_weight.shape == (5, 4, 3, 3) and per.gate_weight.shape == (5, 3, 3, 3)
    assert shared.leaf_weight.shape == (1, 4, 3, 3) and shared.gate_weight.shape == (1, 3, 3, 3)
    with torch.no_grad():
        per.leaf_weight.copy_(shared.leaf_weight.expand_as(per.leaf_weight))
        per.gate_weight.copy_(shared.gate_weight.expand_as(per.gate_weight))
    x = _x(2, 5, 8, 9)
    torch.testing.assert_close(per(x), shared(x), rtol=1e-12, atol=1e-12)


def test_per_channel_sets_act_on_their_own_channel() -> None:
    """Channel c of a per-channel pool is the shared pool with set c, run on channel c alone."""
    torch.manual_seed(3)
    per = tp.TreePool2d(2, depth=2, per_channel=True, channels=3).double()
    x = _x(2, 3, 6, 6)
    y = per(x)
    outputs = []
    for c in range(3):
        one = tree_pool2d(x[:, c : c + 1], per.leaf_weight[c], per.gate_weight[c], 2)
        outputs.append(one)
    torch.testing.assert_close(y, torch.cat(outputs, 1), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(y[:, 0], tree_pool2d(x, per.leaf_weight[1], per.gate_weight[1], 2)[:, 0])


# ------------------------------------------------------------------ Module, state dict, precision


def test_state_dict_round_trip() -> None:
    torch.manual_seed(4)
    pool = tp.TreePool2d(3, 2, 1, depth=3, per_channel=True, channels=2)
    assert set(pool.state_dict()) == {"leaf_weight", "gate_weight"}
    torch.manual_seed(5)
    other = tp.TreePool2d(3, 2, 1, depth=3, per_channel=True, channels=2)
    x = torch.randn(2, 2, 7, 7)
    assert not torch.equal(other(x), pool(x))
    other.load_state_dict(pool.state_dict())
    assert torch.equal(other(x), pool(x))
    with pytest.raises(RuntimeError, match="leaf_weight"):
        tp.TreePool2d(3, 2, 1, depth=2, per_channel=True, channels=2).load_state_dict(pool.state_dict())
    assert "depth=3" in repr(pool) and "per_channel=True" in repr(pool) and "channels=2" in repr(pool)


def test_registry_entry() -> None:
    info = tp.get_pool_info("tree2d")
    assert info.family == "tree" and info.dims == (2,) and info.trainable and info.channel_multiplier == 1
    assert isinstance(tp.create_pool("tree", kernel_size=3), tp.TreePool2d)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computed_in_float32(dtype: torch.dtype) -> None:
    leaf, gate = _weights(2, (3, 3), seed=11)
    x = (_x(2, 3, 8, 8) * 100).to(dtype)
    y = tree_pool2d(x, leaf.to(dtype), gate.to(dtype), 3, 2, 1)
    assert y.dtype == dtype
    want = tree_pool2d(x.float(), leaf.to(dtype).float(), gate.to(dtype).float(), 3, 2, 1).to(dtype)
    assert torch.equal(y, want)


# ------------------------------------------------------------------ argument checks


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"depth": 0}, ValueError, "depth must be at least 1"),
        ({"depth": -2}, ValueError, "depth"),
        ({"depth": 1.5}, TypeError, "depth must be an int"),
        ({"depth": True}, TypeError, "depth must be an int"),
        ({"per_channel": "yes"}, TypeError, "per_channel"),
        ({"per_channel": True}, ValueError, "per_channel=True needs channels"),
        ({"channels": 4}, ValueError, "channels is only used with per_channel=True"),
        ({"per_channel": True, "channels": 0}, ValueError, "channels"),
        ({"init": "zeros"}, ValueError, "init"),
        ({"kernel_size": 0}, ValueError, "kernel_size"),
        ({"padding": 2}, ValueError, "padding"),
    ],
)
def test_module_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        tp.TreePool2d(**{"kernel_size": 3, **kwargs})


def test_module_channel_count() -> None:
    pool = tp.TreePool2d(2, per_channel=True, channels=3)
    with pytest.raises(ValueError, match=r"input has 4 channels, but the pool was built with channels=3"):
        pool(torch.randn(1, 4, 4, 4))
    assert pool(torch.randn(3, 4, 4)).shape == (3, 2, 2)


@pytest.mark.parametrize(
    ("leaf_shape", "gate_shape", "error", "match"),
    [
        ((2, 3, 3), (1, 2, 2), ValueError, r"gate_weights must have shape \(nodes, 3, 3\)"),
        ((2, 2, 3), (1, 3, 3), ValueError, "leaf_weights must have shape"),
        ((3, 3, 3), (2, 3, 3), ValueError, "leaf_weights must hold a power of two"),
        ((4, 3, 3), (2, 3, 3), ValueError, r"gate_weights must hold one gating mask fewer .* \(3\), got 2"),
        ((2, 2, 3, 3), (1, 3, 3), ValueError, "leaf_weights has 2 rows of filters, but the input has 3"),
        ((2, 3, 3), (1, 1, 1, 3, 3), ValueError, "gate_weights must have shape"),
        ((0, 3, 3), (0, 3, 3), ValueError, "leaf_weights must hold a power of two"),
    ],
)
def test_function_weight_checks(
    leaf_shape: tuple[int, ...], gate_shape: tuple[int, ...], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        tree_pool2d(torch.randn(2, 3, 6, 6), torch.randn(leaf_shape), torch.randn(gate_shape), 3)


def test_function_weight_types() -> None:
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(TypeError, match=r"leaf_weights must be a floating-point torch\.Tensor"):
        tree_pool2d(x, torch.ones(2, 2, 2, dtype=torch.long), torch.ones(1, 2, 2), 2)
    with pytest.raises(TypeError, match=r"gate_weights must be a floating-point torch\.Tensor, got list"):
        tree_pool2d(x, torch.ones(2, 2, 2), [[0.0]], 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="input must have a floating-point dtype"):
        tree_pool2d(x.long(), torch.ones(2, 2, 2), torch.ones(1, 2, 2), 2)


def test_empty_inputs() -> None:
    leaf, gate = torch.ones(2, 2, 2, requires_grad=True), torch.ones(1, 2, 2, requires_grad=True)
    for shape in ((0, 3, 4, 4), (2, 0, 4, 4)):
        x = torch.randn(shape, requires_grad=True)
        y = tree_pool2d(x, leaf, gate, 2)
        assert y.shape == (shape[0], shape[1], 2, 2)
        torch.autograd.backward(y.sum())
        assert x.grad is not None and x.grad.shape == x.shape
    assert math.isnan(float(tree_pool2d(torch.full((1, 1, 2, 2), math.nan), leaf, gate, 2).detach()))
