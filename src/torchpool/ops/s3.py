"""S3Pool (Zhai et al. 2017, arXiv 1611.05138): pooling with stochastic spatial sampling.

Pooling seen as two steps: a dense max (2x2 window, stride 1, the input padded on the right and
bottom so the size is kept), then a downsampling. S3Pool keeps the first step and makes the second
one random in training: each spatial axis is cut into grids of ``grid_size`` cells and, in each
grid, ``grid_size // stride`` rows (columns) are drawn uniformly without replacement and kept in
their order. A larger grid distorts the map more (the paper's knob); ``grid_size = stride`` keeps
one row per stride-wide block.

Facts of the authors' code (Lasagne, ``StochasticPool2DLayer`` in github.com/Shuangfei/s3pool),
and where this implementation differs:

* the draw is shared by the whole mini-batch and every channel (one set of rows and one of
  columns per call): the default here too; ``per_sample=True`` draws one set per sample;
* ``grid_size`` defaults to the stride (their ``pool_size``);
* their dense max has no padding (``ignore_border``: one row and column fewer, so their last grid
  draws from ``grid_size - 1`` rows); here the far edge is padded with ``-inf`` (a zero padding, as
  in common PyTorch ports, is the same for non-negative input), so every grid has ``grid_size``
  rows;
* their last grid takes the rows left over when the size is not a multiple of ``grid_size``
  (their experiments never had any: 32 with grid 16, 16 with grid 8); here the ``r`` rows left over
  form a last, partial grid that keeps ``r // stride`` of them, so the output has ``size // stride``
  rows exactly as ``max_pool2d(x, stride)``;
* their dense max window is ``pool_size`` (2 in every experiment); here it is 2x2 for any stride;
* at test time (Lasagne's ``deterministic=True``) they replace the sampling by average pooling of
  the dense max map, window and stride ``stride``, ``stride // 2`` cells of padding on each side
  not counted in the mean (``average_exc_pad``): the eval rule here, cut to ``size // stride``
  outputs (their rule gives one more for some odd sizes).

Gradients reach the selected cells only (the max of each kept 2x2 window, PyTorch's max-pooling
rule on ties: one cell) in training; in eval mode, the max of every window (one cell each, as in
max pooling) averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_generator, check_input, restore_batch
from .._shape import IntOrTuple, ntuple
from ..registry import register_pool

__all__ = ["S3Pool2d", "s3_pool2d"]


def _check_s3_args(
    stride: IntOrTuple, grid_size: IntOrTuple | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    s = ntuple(stride, 2, "stride")
    if any(v < 1 for v in s):
        raise ValueError(f"stride must be positive, got {s}")
    g = s if grid_size is None else ntuple(grid_size, 2, "grid_size")
    for gg, ss in zip(g, s):
        if gg < 1 or gg % ss:
            raise ValueError(f"grid_size must be a positive multiple of stride {s}, got {g}")
    return s, g


def _axis_draw(
    size: int, s: int, g: int, batch: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """The kept rows of one axis, sorted: ``g // s`` per full grid, ``r // s`` from the partial last
    grid of ``r = size % g`` rows; shape ``batch + (size // s,)``."""
    full, rest = divmod(size, g)
    parts = []
    if full:
        keys = torch.rand(*batch, full, g, generator=generator, device=device)
        picked = keys.argsort(dim=-1)[..., : g // s].sort(dim=-1).values
        offsets = torch.arange(0, full * g, g, device=device).unsqueeze(-1)
        parts.append((picked + offsets).flatten(-2))
    if rest // s:
        keys = torch.rand(*batch, rest, generator=generator, device=device)
        parts.append(keys.argsort(dim=-1)[..., : rest // s].sort(dim=-1).values + full * g)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def _pairs(rows: Tensor, size: int) -> Tensor:
    """Each kept row and the next one (the 2-wide max window), the far edge repeated (the value of
    its ``-inf`` padding's max); interleaved along the last dim."""
    return torch.stack([rows, (rows + 1).clamp(max=size - 1)], dim=-1).flatten(-2)


def _s3_train(
    x: Tensor, s: tuple[int, ...], g: tuple[int, ...], per_sample: bool, generator: torch.Generator | None
) -> Tensor:
    n, c, h, w = x.shape
    batch = (n,) if per_sample else ()
    rows = _pairs(_axis_draw(h, s[0], g[0], batch, generator, x.device), h)
    cols = _pairs(_axis_draw(w, s[1], g[1], batch, generator, x.device), w)
    if per_sample:
        picked = x.gather(2, rows[:, None, :, None].expand(n, c, rows.shape[-1], w))
        picked = picked.gather(3, cols[:, None, None, :].expand(n, c, rows.shape[-1], cols.shape[-1]))
    else:  # one advanced-indexing gather (index_select along dims 2 and 3 is ~10x slower on the CPU)
        picked = x[:, :, rows[:, None], cols]
    return F.max_pool2d(picked, 2, 2)  # max pooling's gradient: one cell per window, also on ties


def _dense_max(x: Tensor, dim: int) -> Tensor:
    """``max(x[i], x[i + 1])`` along ``dim``, the last cell kept (its ``-inf``-padded window)."""
    n = x.shape[dim]
    return torch.cat(
        [torch.maximum(x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1)), x.narrow(dim, n - 1, 1)], dim
    )


def _s3_eval(x: Tensor, s: tuple[int, ...]) -> Tensor:
    h, w = x.shape[-2:]
    if torch.is_grad_enabled() and x.requires_grad:  # max pooling's backward: far cheaper than maximum's
        dense = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 2, 1)
    else:  # the same values as separable maxima: 2-3x faster than max_pool2d stride 1 on the CPU
        dense = _dense_max(_dense_max(x, -2), -1)
    pad = (s[0] // 2, s[1] // 2)
    mean = F.avg_pool2d(dense, s, s, pad, count_include_pad=False)
    return mean[..., : h // s[0], : w // s[1]]


def s3_pool2d(
    x: Tensor,
    stride: IntOrTuple = 2,
    grid_size: IntOrTuple | None = None,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
    per_sample: bool = False,
) -> Tensor:
    """S3Pool (Zhai et al. 2017): a dense 2x2 max, then rows and columns kept at random per grid.

    Training: ``m = max_pool2d(x, 2, stride=1)`` with the far edge padded by ``-inf`` (size kept);
    each axis is cut into grids of ``grid_size`` cells (a partial last grid of ``r`` cells keeps
    ``r // stride``) and each grid keeps ``grid_size // stride`` of its rows (columns), drawn
    uniformly without replacement, in order; the output is ``m`` at the kept rows and columns. One
    draw is shared by the batch and the channels (as in the authors' code) unless ``per_sample``.
    Eval: the authors' deterministic rule, ``avg_pool2d(m, stride, stride, stride // 2,
    count_include_pad=False)`` cut to ``size // stride`` outputs. See :mod:`torchpool.ops.s3`.

    Args:
        x: input, batched or batch-less, floating point.
        stride: the downsampling factor (int or pair); the output has ``size // stride`` rows.
        grid_size: grid width (int or pair), a multiple of ``stride``; ``None`` means ``stride``.
        training: draw at random (True) or apply the deterministic eval rule (False).
        generator: random source for the draws.
        per_sample: one draw per sample instead of one for the whole batch.

    Returns:
        The pooled tensor.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``, with ``H >= stride`` and ``W >= stride``.
        - Output: ``(N, C, H // stride, W // stride)`` or ``(C, H // stride, W // stride)``.

    Example:
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> s3_pool2d(x, 2, training=False).flatten().tolist()
        [5.0, 6.5, 11.0, 12.5]
        >>> g = torch.Generator().manual_seed(0)
        >>> s3_pool2d(x, 2, generator=g).shape
        torch.Size([1, 1, 2, 2])
    """
    s, g = _check_s3_args(stride, grid_size)
    check_bool(training, "training")
    check_bool(per_sample, "per_sample")
    batched, unbatched = check_input(x, 2)
    if any(size < ss for size, ss in zip(batched.shape[-2:], s)):
        raise ValueError(
            f"input of shape {tuple(x.shape)} is smaller than stride {s}: the output would be empty"
        )
    generator = check_generator(generator, x)
    n, c, h, w = batched.shape
    if c == 0:  # PyTorch's pools refuse C = 0: the same computation on an empty batch of planes
        batched = batched.reshape(0, 1, h, w)
    y = _s3_train(batched, s, g, per_sample, generator) if training else _s3_eval(batched, s)
    return restore_batch(y.reshape(n, c, h // s[0], w // s[1]) if c == 0 else y, unbatched)


class S3Pool2d(nn.Module):
    """Module form of :func:`s3_pool2d` (S3Pool); draws in training mode, the eval rule otherwise.

    Args:
        stride: the downsampling factor (int or pair).
        grid_size: grid width (int or pair), a multiple of ``stride``; ``None`` means ``stride``.
        per_sample: one draw per sample instead of one for the whole batch.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(N, C, H // stride, W // stride)`` or ``(C, H // stride, W // stride)``.

    Example:
        >>> S3Pool2d(2)(torch.ones(1, 3, 6, 6)).shape
        torch.Size([1, 3, 3, 3])
    """

    def __init__(
        self, stride: IntOrTuple = 2, grid_size: IntOrTuple | None = None, *, per_sample: bool = False
    ) -> None:
        super().__init__()
        _check_s3_args(stride, grid_size)
        self.stride = stride
        self.grid_size = grid_size
        self.per_sample = check_bool(per_sample, "per_sample")

    def forward(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        return s3_pool2d(
            x,
            self.stride,
            self.grid_size,
            training=self.training,
            generator=generator,
            per_sample=self.per_sample,
        )

    def extra_repr(self) -> str:
        return f"stride={self.stride}, grid_size={self.grid_size}, per_sample={self.per_sample}"


register_pool(
    "s3pool2d",
    S3Pool2d,
    family="s3",
    dims=(2,),
    description="dense 2x2 max, then rows and columns drawn at random per grid "
    "(S3Pool, Zhai et al. 2017, arXiv 1611.05138)",
    example_kwargs={"stride": 2},
)
