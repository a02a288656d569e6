"""The training and evaluation protocol of ``torchpool compare``, one model at a time.

:func:`train_one` trains one variant's CNN for one seed (under ``torchrun``, its share of every
global batch) and scores it on the fixed evaluation sets of :func:`eval_sets`: the clean test
split, the test split under salt-and-pepper noise at each of ``NOISE_LEVELS``, and the test
split upsampled ``RESIZE_FACTOR`` times. :func:`summarise` folds the seeds into one variant's
entry of ``results.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import ImageData
from .models import VariantSpec, build_model

__all__ = [
    "NOISE_LEVELS",
    "RESIZE_FACTOR",
    "Context",
    "EvalSets",
    "TrainingDiverged",
    "eval_sets",
    "mean_std",
    "salt_and_pepper",
    "skipped",
    "summarise",
    "train_one",
]

NOISE_LEVELS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
RESIZE_FACTOR = 1.5
_TRAIN_EVAL_MAX = 10000  # train accuracy (for the gap) is measured on at most this many training images
_BN_CALIBRATION = 2048  # training images used to recompute batch-norm statistics after training


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


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
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


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor, ctx: Context, batch: int = 512) -> float:
    """Accuracy of the (unwrapped, eval-mode) model; each rank scores its shard, counts are summed."""
    xs, ys = x[ctx.rank :: ctx.world], y[ctx.rank :: ctx.world]
    correct = 0
    for start in range(0, len(ys), batch):
        logits = model(xs[start : start + batch].to(ctx.device))
        correct += int((logits.argmax(1).cpu() == ys[start : start + batch]).sum())
    counts = torch.tensor([correct, len(ys)], dtype=torch.float64, device=ctx.device)
    if ctx.world > 1:
        torch.distributed.all_reduce(counts)
    return float(counts[0] / counts[1]) if counts[1] > 0 else float("nan")


@dataclass
class EvalSets:
    """The fixed evaluation inputs, identical for every variant."""

    train_x: Tensor
    train_y: Tensor
    noisy: dict[float, Tensor]
    resized: Tensor
    test_y: Tensor


def eval_sets(data: ImageData, seed: int) -> EvalSets:
    gen = torch.Generator().manual_seed(seed + 7919)
    n = min(len(data.train_y), _TRAIN_EVAL_MAX)
    h, w = data.image_size
    size = (round(h * RESIZE_FACTOR), round(w * RESIZE_FACTOR))
    return EvalSets(
        train_x=data.train_x[:n],
        train_y=data.train_y[:n],
        noisy={level: salt_and_pepper(data.test_x, level, gen) for level in NOISE_LEVELS},
        resized=F.interpolate(data.test_x, size=size, mode="bilinear", align_corners=False).clamp_(0, 1),
        test_y=data.test_y,
    )


def train_one(
    spec: VariantSpec,
    data: ImageData,
    evals: EvalSets,
    seed: int,
    args: argparse.Namespace,
    ctx: Context,
    tick: Callable[[int], None],
) -> tuple[dict[str, Any], int]:
    """Trains and scores one model; returns its per-seed record and parameter count."""
    torch.manual_seed(seed)
    model: nn.Module = build_model(spec, data.num_classes, data.image_size).to(ctx.device)
    parameters = sum(p.numel() for p in model.parameters())
    if ctx.world > 1:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    torch.manual_seed(seed * 1_000_003 + ctx.rank)  # each rank's own stream for stochastic / mixed pooling
    shuffle = torch.Generator().manual_seed(seed)  # the same global batches on every rank
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
    _recalibrate_batch_norm(net, evals.train_x[:_BN_CALIBRATION].to(ctx.device), batch)
    if ctx.world > 1:  # every rank computed the same statistics; make sure they agree bit for bit
        for buffer in net.buffers():
            torch.distributed.broadcast(buffer, 0)
    net.eval()
    noise = {level: _accuracy(net, x, evals.test_y, ctx) for level, x in evals.noisy.items()}
    try:
        resized: float | None = _accuracy(net, evals.resized, evals.test_y, ctx)
    except RuntimeError:
        resized = None
    record = {
        "seed": seed,
        "test_accuracy": noise[0.0],
        "train_accuracy": _accuracy(net, evals.train_x, evals.train_y, ctx),
        "noise_accuracy": {str(level): acc for level, acc in noise.items()},
        "resized_accuracy": resized,
        "epoch_seconds": statistics.fmean(epoch_seconds) if epoch_seconds else 0.0,
    }
    return record, parameters


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(spec: VariantSpec, per_seed: list[dict[str, Any]], parameters: int) -> dict[str, Any]:
    acc, acc_std = mean_std([r["test_accuracy"] for r in per_seed])
    train, _ = mean_std([r["train_accuracy"] for r in per_seed])
    gap, gap_std = mean_std([r["train_accuracy"] - r["test_accuracy"] for r in per_seed])
    resized_values = [r["resized_accuracy"] for r in per_seed]
    resized, resized_std = (None, None) if None in resized_values else mean_std(resized_values)
    levels = list(per_seed[0]["noise_accuracy"])
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
        "noise_accuracy": {k: mean_std([r["noise_accuracy"][k] for r in per_seed])[0] for k in levels},
        "noise_accuracy_std": {k: mean_std([r["noise_accuracy"][k] for r in per_seed])[1] for k in levels},
        "resized_accuracy": resized,
        "resized_accuracy_std": resized_std,
        "parameters": parameters,
        "epoch_seconds": statistics.fmean(r["epoch_seconds"] for r in per_seed),
        "per_seed": per_seed,
    }


def skipped(name: str, family: str, reason: str, status: str = "skipped") -> dict[str, Any]:
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
        "noise_accuracy": {},
        "noise_accuracy_std": {},
        "resized_accuracy": None,
        "resized_accuracy_std": None,
        "parameters": None,
        "epoch_seconds": None,
        "per_seed": [],
    }
