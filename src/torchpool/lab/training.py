"""The training and evaluation protocol of ``torchpool compare``, one model at a time.

:func:`train_one` trains one variant's CNN for one seed (under ``torchrun``, its share of every
global batch) and scores it on the fixed evaluation sets of :func:`eval_sets`, all built from
one seeded test subset (``--test-limit`` images): the clean images, salt-and-pepper noise
(``SP_LEVELS``), Gaussian noise (``GAUSS_SIGMAS``), other input sizes (``SCALES``), rotations
(``ROTATIONS``) and 1 to ``SHIFT_MAX`` pixel shifts (the fraction of unchanged predictions,
Zhang 2019's consistency). :func:`summarise` folds the seeds into one variant's entry of
``results.json``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import ImageData
from .models import VariantSpec, build_model, init_shared

__all__ = [
    "BN_CALIBRATION",
    "GAUSS_SIGMAS",
    "NOISE_LEVELS",
    "RESIZE_FACTOR",
    "ROTATIONS",
    "SCALES",
    "SHIFT_MAX",
    "SP_LEVELS",
    "Context",
    "EvalSets",
    "TrainingDiverged",
    "eval_sets",
    "gaussian_noise",
    "mean_std",
    "rotate",
    "salt_and_pepper",
    "shift",
    "skipped",
    "summarise",
    "train_one",
]

SP_LEVELS: tuple[float, ...] = (0.05, 0.1, 0.2)  # salt-and-pepper: fraction of pixels set to 0 or 1
NOISE_LEVELS: tuple[float, ...] = (0.0, *SP_LEVELS)  # with the clean images, for the noise plot
GAUSS_SIGMAS: tuple[float, ...] = (0.1, 0.2, 0.3)  # additive Gaussian noise, std in [0, 1] pixel units
SCALES: tuple[float, ...] = (0.75, 1.25, 1.5)  # test images resized (bilinear) by these factors
RESIZE_FACTOR = 1.5  # the largest of SCALES (kept for the text of earlier reports)
ROTATIONS: tuple[float, ...] = (-15.0, 15.0)  # degrees
SHIFT_MAX = 3  # shift consistency: every test image shifted by 1..SHIFT_MAX pixels (zero fill)
BN_CALIBRATION = 1024  # training images used to recompute batch-norm statistics after training


class TrainingDiverged(Exception):
    """A model's weights became NaN or infinite; the variant is reported as ``diverged``, not scored."""


@dataclass
class Context:
    """Where this process trains: device and distributed rank."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def salt_and_pepper(x: Tensor, level: float, generator: torch.Generator) -> Tensor:
    """Sets a fraction ``level`` of pixels to 0 or 1 (half each), reproducibly."""
    if level <= 0:
        return x.clone()
    hit = torch.rand(x.shape, generator=generator) < level
    salt = torch.rand(x.shape, generator=generator) < 0.5
    out = x.clone()
    out[hit & salt] = 1.0
    out[hit & ~salt] = 0.0
    return out


def gaussian_noise(x: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """Adds N(0, sigma^2) noise to every pixel and clips to ``[0, 1]``, reproducibly."""
    return (x + sigma * torch.randn(x.shape, generator=generator)).clamp_(0.0, 1.0)


def rotate(x: Tensor, degrees: float) -> Tensor:
    """Rotates ``(N, C, H, W)`` images about their centre (bilinear, zero outside), same size."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translates each image by its own ``(dy, dx)`` in ``-max_shift..max_shift``, not both 0, zero fill.

    The displacement of each image is drawn uniformly from the ``(2 m + 1)^2 - 1`` non-zero
    offsets, so every image moves by 1 to ``max_shift`` pixels along at least one axis.
    """
    m = max_shift
    offsets = [(dy, dx) for dy in range(-m, m + 1) for dx in range(-m, m + 1) if (dy, dx) != (0, 0)]
    choice = torch.randint(len(offsets), (len(x),), generator=generator)
    h, w = x.shape[-2:]
    padded = F.pad(x, (m, m, m, m))
    out = torch.empty_like(x)
    for k in torch.unique(choice).tolist():
        dy, dx = offsets[k]
        rows = choice == k
        out[rows] = padded[rows, :, m - dy : m - dy + h, m - dx : m - dx + w]
    return out


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def _recalibrate_batch_norm(net: nn.Module, x: Tensor, batch: int) -> None:
    """Recomputes batch-norm running statistics as a plain average over ``x`` with the final weights.

    A few epochs leave the exponential running averages dominated by early, untrained
    activations; recomputing them ("precise BN") makes eval-mode accuracy reflect the trained
    model. The pools run in eval mode here, as they will at test time.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    net.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
        m.train()
    for start in range(0, len(x), batch):
        net(x[start : start + batch])
    net.eval()


def _counts(ctx: Context, values: list[int]) -> list[int]:
    """``values`` summed over the ranks."""
    counts = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    if ctx.world > 1:
        torch.distributed.all_reduce(counts)
    return [int(c) for c in counts.tolist()]


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, ctx: Context, batch: int = 256) -> Tensor:
    """Predicted classes of this rank's shard (every ``world``-th image from ``rank``)."""
    xs = x[ctx.rank :: ctx.world]
    out = [model(xs[i : i + batch].to(ctx.device)).argmax(1).cpu() for i in range(0, len(xs), batch)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@dataclass
class EvalSets:
    """The fixed evaluation inputs, identical for every variant and seed.

    Attributes:
        train_x: the training images the train accuracy (for the gap) is measured on.
        train_y: their labels.
        test_x: the clean test images (the seeded test subset).
        test_y: their labels, also the labels of every entry of ``corrupted``.
        corrupted: ``name -> images``: ``sp P`` (salt-and-pepper), ``gauss S``, ``scale F``
            (resized, another input size), ``rot D`` (degrees).
        shifted: ``test_x`` with every image shifted by 1 to :data:`SHIFT_MAX` pixels.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    corrupted: dict[str, Tensor]
    shifted: Tensor

    @property
    def images(self) -> int:
        """Image forwards one evaluation costs, in units of one test image at the training size."""
        h, w = self.test_x.shape[-2:]
        area = sum(x.shape[-2] * x.shape[-1] * len(x) for x in [*self.corrupted.values(), self.shifted])
        return len(self.train_x) + len(self.test_x) + round(area / (h * w))


def _subset(n: int, limit: int | None, seed: int) -> Tensor:
    """A seeded subset of ``limit`` indices of ``range(n)``, increasing (all of them for ``limit=None``)."""
    if limit is None or limit >= n:
        return torch.arange(n)
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]
    return keep.sort().values


def eval_sets(data: ImageData, seed: int, test_limit: int | None = None) -> EvalSets:
    """The evaluation inputs: a seeded test subset of ``test_limit`` images and its corruptions.

    Args:
        data: the dataset.
        seed: the base seed (subset, noise and shifts).
        test_limit: test images to evaluate on (a seeded subset, the same for every variant
            and seed); None uses the whole test split. The train accuracy of the gap is
            measured on as many training images (at most).
    """
    gen = torch.Generator().manual_seed(seed + 7919)
    test = _subset(len(data.test_y), test_limit, seed + 1)
    x, y = data.test_x[test], data.test_y[test]
    n_train = len(data.train_y) if test_limit is None else min(len(data.train_y), test_limit)
    h, w = data.image_size
    corrupted: dict[str, Tensor] = {}
    for level in SP_LEVELS:
        corrupted[f"sp {level:g}"] = salt_and_pepper(x, level, gen)
    for sigma in GAUSS_SIGMAS:
        corrupted[f"gauss {sigma:g}"] = gaussian_noise(x, sigma, gen)
    for factor in SCALES:
        size = (max(1, round(h * factor)), max(1, round(w * factor)))
        corrupted[f"scale {factor:g}"] = F.interpolate(
            x, size=size, mode="bilinear", align_corners=False, antialias=factor < 1
        ).clamp_(0, 1)
    for degrees in ROTATIONS:
        corrupted[f"rot {degrees:+g}"] = rotate(x, degrees)
    return EvalSets(
        train_x=data.train_x[:n_train],
        train_y=data.train_y[:n_train],
        test_x=x,
        test_y=y,
        corrupted=corrupted,
        shifted=shift(x, SHIFT_MAX, gen),
    )


def _evaluate(net: nn.Module, evals: EvalSets, ctx: Context) -> dict[str, Any]:
    """Accuracies on every evaluation set and the shift consistency (``None`` where a forward fails)."""
    y = evals.test_y[ctx.rank :: ctx.world]
    clean = _predict(net, evals.test_x, ctx)
    train = _predict(net, evals.train_x, ctx)
    counts = [int((clean == y).sum()), len(y), int((train == evals.train_y[ctx.rank :: ctx.world]).sum())]
    counts += [len(train), int((_predict(net, evals.shifted, ctx) == clean).sum())]
    names, values, failed = [], [], []
    for name, x in evals.corrupted.items():
        try:
            values.append(int((_predict(net, x, ctx) == y).sum()))
            names.append(name)
        except (RuntimeError, ValueError):
            failed.append(name)  # the same on every rank: the sizes are
    total = _counts(ctx, counts + values)
    correct, n, train_correct, n_train, same = total[:5]
    accuracy: dict[str, float | None] = dict.fromkeys(evals.corrupted)
    for name, value in zip(names, total[5:]):
        accuracy[name] = value / n
    return {
        "test_accuracy": correct / n,
        "train_accuracy": train_correct / n_train,
        "accuracy": accuracy,
        "shift_consistency": same / n,
        "failed": failed,
    }


def train_one(
    spec: VariantSpec,
    data: ImageData,
    evals: EvalSets,
    seed: int,
    args: argparse.Namespace,
    ctx: Context,
    tick: Callable[[int], None],
) -> tuple[dict[str, Any], int]:
    """Trains and scores one model; returns its per-seed record and parameter count.

    Pairing: the shared layers start from the same weights for every variant of a seed
    (:func:`~torchpool.lab.models.init_shared`) and every variant sees the same batches in
    the same order (the shuffling generator is seeded with ``seed`` alone).
    """
    torch.manual_seed(seed)
    model: nn.Module = build_model(spec, data.num_classes, data.image_size)
    init_shared(model, seed)
    model = model.to(ctx.device)
    parameters = sum(p.numel() for p in model.parameters())
    if ctx.world > 1:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    torch.manual_seed(seed * 1_000_003 + ctx.rank)  # each rank's own stream for stochastic / mixed pooling
    shuffle = torch.Generator().manual_seed(seed)  # the same global batches on every rank and variant
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_x, train_y = data.train_x.to(ctx.device), data.train_y.to(ctx.device)
    n, batch = len(train_y), args.batch_size
    epoch_seconds: list[float] = []
    for epoch in range(args.epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n, generator=shuffle).to(ctx.device)
        for first in range(0, n, batch):
            idx = order[first : first + batch]
            if len(idx) < ctx.world:
                break
            idx = idx[ctx.rank :: ctx.world]
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
        epoch_seconds.append(time.perf_counter() - start)
        # the weights are the same on every rank, so every rank takes the same decision
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise TrainingDiverged(
                f"the weights became NaN or infinite in epoch {epoch + 1} of seed {seed} "
                f"(--lr {args.lr} too high for this pool?)"
            )
        tick(epoch + 1)
    net = _unwrap(model)
    start = time.perf_counter()
    _recalibrate_batch_norm(net, evals.train_x[:BN_CALIBRATION].to(ctx.device), batch)
    if ctx.world > 1:  # every rank computed the same statistics; make sure they agree bit for bit
        for buffer in net.buffers():
            torch.distributed.broadcast(buffer, 0)
    net.eval()
    record = {"seed": seed, **_evaluate(net, evals, ctx)}
    record["epoch_seconds"] = statistics.fmean(epoch_seconds) if epoch_seconds else 0.0
    record["eval_seconds"] = time.perf_counter() - start
    return record, parameters


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value, NaN for none)."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_of(per_seed: list[dict[str, Any]], name: str) -> tuple[float | None, float | None]:
    values = [r["accuracy"][name] for r in per_seed]
    if any(v is None for v in values):
        return None, None
    return mean_std(values)


def summarise(spec: VariantSpec, per_seed: list[dict[str, Any]], parameters: int) -> dict[str, Any]:
    """One variant's entry of ``results.json``: means and sample stds over seeds, and the seeds."""
    acc, acc_std = mean_std([r["test_accuracy"] for r in per_seed])
    train, _ = mean_std([r["train_accuracy"] for r in per_seed])
    gap, gap_std = mean_std([r["train_accuracy"] - r["test_accuracy"] for r in per_seed])
    shift_mean, shift_std = mean_std([r["shift_consistency"] for r in per_seed])
    names = list(per_seed[0]["accuracy"])
    return {
        "name": spec.name,
        "family": spec.family,
        "role": spec.role,
        "setting": spec.setting,
        "status": "ok",
        "reason": None,
        "accuracy_mean": acc,
        "accuracy_std": acc_std,
        "train_accuracy_mean": train,
        "gap": gap,
        "gap_std": gap_std,
        "shift_consistency": shift_mean,
        "shift_consistency_std": shift_std,
        "accuracy": {k: _mean_of(per_seed, k)[0] for k in names},
        "accuracy_std_by_set": {k: _mean_of(per_seed, k)[1] for k in names},
        "parameters": parameters,
        "epoch_seconds": statistics.fmean(r["epoch_seconds"] for r in per_seed),
        "per_seed": per_seed,
    }


def skipped(name: str, family: str, reason: str, status: str = "skipped") -> dict[str, Any]:
    """The entry of a variant that did not run (``skipped`` or ``diverged``) and why."""
    return {
        "name": name,
        "family": family,
        "role": None,
        "setting": None,
        "status": status,
        "reason": reason,
        "accuracy_mean": None,
        "accuracy_std": None,
        "train_accuracy_mean": None,
        "gap": None,
        "gap_std": None,
        "shift_consistency": None,
        "shift_consistency_std": None,
        "accuracy": {},
        "accuracy_std_by_set": {},
        "parameters": None,
        "epoch_seconds": None,
        "per_seed": [],
    }
