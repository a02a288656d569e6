"""``torchpool compare``: train one small CNN per pooling variant and seed, report which helps.

For each variant the same CNN (:mod:`torchpool.lab.models`) is trained ``--seeds`` times; the
report gives test accuracy (mean and sample std over seeds), the train-test gap, accuracy under
salt-and-pepper noise at test time, accuracy on 1.5x upsampled test images, parameters and
seconds per epoch, and checks five claims of the pooling survey against those numbers.

Run under ``torchrun --nproc_per_node=N -m torchpool compare ...`` it trains with
``DistributedDataParallel`` (gloo on CPU, nccl on CUDA): every global batch is split across the
ranks, so N processes follow the same optimisation path as one process with the same
``--batch-size`` (batch-norm statistics aside). Only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import get_pool_info
from .data import LAB_HINT, DatasetError, ImageData, load_dataset
from .models import DEFAULT_VARIANTS, VariantNotApplicable, VariantSpec, build_model, resolve_variant

__all__ = [
    "NOISE_LEVELS",
    "OUTPUT_FILES",
    "RESIZE_FACTOR",
    "add_arguments",
    "evaluate_claims",
    "run",
    "split_variants",
    "validate_arguments",
    "write_json_atomic",
]

NOISE_LEVELS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
RESIZE_FACTOR = 1.5
_TRAIN_EVAL_MAX = 10000  # train accuracy (for the gap) is measured on at most this many training images
_BN_CALIBRATION = 2048  # training images used to recompute batch-norm statistics after training
_MAX_SEED = 2**31 - 1  # torch and numpy seeds derived from --seed stay in range
_MAX_IMAGE_SIZE = 1024  # every split is held in memory at this side: 60000 Fashion-MNIST images are 250 GB
OUTPUT_FILES: tuple[str, ...] = ("results.json", "report.md", "accuracy.png", "noise.png")


class UsageError(Exception):
    """Bad arguments found after parsing (unknown variant, indivisible batch, missing CUDA)."""


class TrainingDiverged(Exception):
    """A model's weights became NaN or infinite; the variant is reported as ``diverged``, not scored."""


@dataclass
class _Context:
    """Where this process trains: device and distributed rank."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``compare`` options to ``parser``."""
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        metavar="NAME",
        help="pool factory names, separated by spaces or commas (e.g. max2d,median2d; "
        f"default: {' '.join(DEFAULT_VARIANTS)})",
    )
    parser.add_argument("--dataset", choices=["digits", "fashion-mnist", "folder"], default="digits")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="fashion-mnist: folder with the four IDX files (default /usr/share/datasets/fashion-mnist); "
        "folder: root with one subfolder of images per class",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize images to this side (default digits 16, fashion 28, folder 32)",
    )
    parser.add_argument("--limit", type=int, default=None, help="use a random subset of N training images")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2, help="training runs per variant (seed, seed+1, ...)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (data split, init, shuffling, noise)")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="global batch size (split across DDP ranks)"
    )
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--out", default="torchpool-compare", help="output folder (default torchpool-compare/)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip accuracy.png and noise.png")


# ---------------------------------------------------------------------------------------------- arguments


def split_variants(values: list[str]) -> list[str]:
    """The names given to ``--variants``, separated by spaces or commas, in order, empty parts dropped.

    Example:
        >>> split_variants(["max2d,median2d", "gem", " spp ,"])
        ['max2d', 'median2d', 'gem', 'spp']
    """
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _positive(args: argparse.Namespace, option: str, optional: bool = False) -> None:
    value = getattr(args, option)
    if optional and value is None:
        return
    if value < 1:
        raise UsageError(f"--{option.replace('_', '-')} must be a positive integer, got {value}")


def _check_out(out: Path) -> None:
    """Refuses an ``--out`` folder that cannot take the outputs, before any training."""
    try:
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is a file; expected a folder (for {', '.join(OUTPUT_FILES)})")
        for name in OUTPUT_FILES:
            if (out / name).is_dir():
                raise UsageError(
                    f"--out {out}: {out / name} is a folder, so the {name} of this run cannot be written"
                )
        existing = out
        while not existing.exists():  # the folders that do not exist yet will be created
            existing = existing.parent
        if not existing.is_dir():
            raise UsageError(f"--out {out}: {existing} is a file, not a folder")
        probe = tempfile.mkdtemp(prefix=".torchpool-probe-", dir=existing)
        os.rmdir(probe)
    except OSError as exc:
        raise UsageError(f"--out {out} is not writable: {exc.strerror or exc}") from None


def validate_arguments(args: argparse.Namespace) -> list[str]:
    """Checks every option of ``torchpool compare`` before any work; returns the variants' registry names.

    Args:
        args: the parsed options of :func:`add_arguments`.

    Returns:
        The pool names of ``--variants`` (spaces or commas), resolved to registry names, without
        duplicates, in order.

    Raises:
        UsageError: naming the first bad option and what it expects.
    """
    names = split_variants(args.variants)
    if not names:
        raise UsageError("--variants needs at least one pool name (torchpool list shows them)")
    variants: list[str] = []
    for name in names:
        try:
            variants.append(get_pool_info(name).name)
        except ValueError as exc:
            raise UsageError(f"--variants: {exc}") from None
    for option in ("epochs", "seeds", "batch_size"):
        _positive(args, option)
    for option in ("limit", "image_size", "threads"):
        _positive(args, option, optional=True)
    if args.image_size is not None and args.image_size > _MAX_IMAGE_SIZE:
        raise UsageError(
            f"--image-size must be at most {_MAX_IMAGE_SIZE} (the images are held in memory), "
            f"got {args.image_size}"
        )
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a positive finite learning rate, got {args.lr}")
    if not 0 <= args.seed <= _MAX_SEED - args.seeds:
        raise UsageError(
            f"--seed must be in 0..{_MAX_SEED - args.seeds} (with --seeds {args.seeds}), got {args.seed}"
        )
    if args.dataset == "digits" and args.data_dir is not None:
        raise UsageError(
            "--data-dir is read only with --dataset fashion-mnist or folder (the digits are built in)"
        )
    _check_out(Path(args.out))
    return list(dict.fromkeys(variants))


# ---------------------------------------------------------------------------------------------- progress


class _Progress:
    """One line per variant: rewritten in place on a terminal, printed once at the end otherwise."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self._width = 0

    def update(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self.stream.flush()
            self._width = len(text)

    def finish(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width) + "\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._width = 0


def _seconds(s: float) -> str:
    return f"{s:.0f}s" if s < 90 else f"{s / 60:.1f}min"


# ---------------------------------------------------------------------------------------------- training


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
def _accuracy(model: nn.Module, x: Tensor, y: Tensor, ctx: _Context, batch: int = 512) -> float:
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
class _EvalSets:
    """The fixed evaluation inputs, identical for every variant."""

    train_x: Tensor
    train_y: Tensor
    noisy: dict[float, Tensor]
    resized: Tensor
    test_y: Tensor


def _eval_sets(data: ImageData, seed: int) -> _EvalSets:
    gen = torch.Generator().manual_seed(seed + 7919)
    n = min(len(data.train_y), _TRAIN_EVAL_MAX)
    h, w = data.image_size
    size = (round(h * RESIZE_FACTOR), round(w * RESIZE_FACTOR))
    return _EvalSets(
        train_x=data.train_x[:n],
        train_y=data.train_y[:n],
        noisy={level: salt_and_pepper(data.test_x, level, gen) for level in NOISE_LEVELS},
        resized=F.interpolate(data.test_x, size=size, mode="bilinear", align_corners=False).clamp_(0, 1),
        test_y=data.test_y,
    )


def _train_one(
    spec: VariantSpec,
    data: ImageData,
    evals: _EvalSets,
    seed: int,
    args: argparse.Namespace,
    ctx: _Context,
    tick: Any,
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
            loss.backward()
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


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _summarise(spec: VariantSpec, per_seed: list[dict[str, Any]], parameters: int) -> dict[str, Any]:
    acc, acc_std = _mean_std([r["test_accuracy"] for r in per_seed])
    train, _ = _mean_std([r["train_accuracy"] for r in per_seed])
    gap, gap_std = _mean_std([r["train_accuracy"] - r["test_accuracy"] for r in per_seed])
    resized_values = [r["resized_accuracy"] for r in per_seed]
    resized, resized_std = (None, None) if None in resized_values else _mean_std(resized_values)
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
        "noise_accuracy": {k: _mean_std([r["noise_accuracy"][k] for r in per_seed])[0] for k in levels},
        "noise_accuracy_std": {k: _mean_std([r["noise_accuracy"][k] for r in per_seed])[1] for k in levels},
        "resized_accuracy": resized,
        "resized_accuracy_std": resized_std,
        "parameters": parameters,
        "epoch_seconds": statistics.fmean(r["epoch_seconds"] for r in per_seed),
        "per_seed": per_seed,
    }


def _skipped(name: str, family: str, reason: str, status: str = "skipped") -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------- claims


@dataclass
class Claim:
    """One survey claim and what this run says about it."""

    number: int
    text: str
    verdict: str
    evidence: str
    notes: list[str] = field(default_factory=list)


def _verdict(a: tuple[float, float], b: tuple[float, float], a_should_be: str, seeds: int) -> str:
    """``supported`` if ``a`` is lower/higher than ``b`` and the mean ± std intervals do not overlap.

    ``not supported`` if they do not overlap the other way, ``inconclusive`` if they overlap or
    there is only one seed (no spread to judge a difference by).
    """
    (ma, sa), (mb, sb) = a, b
    if seeds < 2 or any(math.isnan(v) for v in (ma, sa, mb, sb)) or abs(ma - mb) <= sa + sb:
        return "inconclusive"
    better = ma < mb if a_should_be == "lower" else ma > mb
    return "supported" if better else "not supported"


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def evaluate_claims(
    variants: list[dict[str, Any]], seeds: int, num_classes: int, test_images: int | None = None
) -> list[Claim]:
    """Checks the survey's five claims against the results of this run.

    Args:
        variants: the ``variants`` entries of ``results.json``.
        seeds: seeds per variant.
        num_classes: classes (chance accuracy is ``1 / num_classes``).
        test_images: size of the test split; when given, every std is raised to at least the
            binomial standard error ``sqrt(p (1 - p) / n)`` of a test accuracy, so that two seeds
            that happen to agree do not make a difference of a few images look certain.

    Returns:
        One :class:`Claim` per survey claim, verdict ``supported``, ``not supported``,
        ``inconclusive`` or ``not tested``.
    """
    ok = {v["name"]: v for v in variants if v["status"] == "ok"}
    claims: list[Claim] = []

    def missing(names: list[str]) -> str | None:
        absent = [n for n in names if n not in ok]
        return f"not in this run (or skipped): {', '.join(absent)}" if absent else None

    def floor(name: str, std: float) -> float:
        if not test_images:
            return std
        p = min(max(ok[name]["accuracy_mean"], 0.0), 1.0)
        return max(std, math.sqrt(p * (1 - p) / test_images))

    def gap(name: str) -> tuple[float, float]:
        return ok[name]["gap"], floor(name, ok[name]["gap_std"])

    def acc(name: str) -> tuple[float, float]:
        return ok[name]["accuracy_mean"], floor(name, ok[name]["accuracy_std"])

    for number, other, text in (
        (
            1,
            "overlapping_max2d",
            "Overlapping pooling reduces overfitting compared with non-overlapping max pooling",
        ),
        (2, "stochastic2d", "Stochastic pooling regularises (smaller train-test gap than max pooling)"),
    ):
        absent = missing([other, "max2d"])
        if absent:
            claims.append(Claim(number, text, "not tested", absent))
            continue
        claims.append(
            Claim(
                number,
                text,
                _verdict(gap(other), gap("max2d"), "lower", seeds),
                f"train-test gap {other} {_fmt(*gap(other))} vs max2d {_fmt(*gap('max2d'))} "
                f"(test accuracy {_fmt(*acc(other))} vs {_fmt(*acc('max2d'))})",
            )
        )

    text = "Median pooling resists noise (smaller accuracy drop under salt-and-pepper noise than max pooling)"
    absent = missing(["median2d", "max2d"])
    top = str(max(NOISE_LEVELS))
    if absent:
        claims.append(Claim(3, text, "not tested", absent))
    else:
        drops = {}
        for name in ("median2d", "max2d"):
            mean, std = _mean_std(
                [r["test_accuracy"] - r["noise_accuracy"][top] for r in ok[name]["per_seed"]]
            )
            drops[name] = (mean, floor(name, std))
        claims.append(
            Claim(
                3,
                text,
                _verdict(drops["median2d"], drops["max2d"], "lower", seeds),
                f"accuracy drop from clean to {float(top):.0%} noise: median2d {_fmt(*drops['median2d'])} "
                f"(clean {_fmt(*acc('median2d'))}) vs max2d {_fmt(*drops['max2d'])} "
                f"(clean {_fmt(*acc('max2d'))})",
            )
        )

    text = (
        "Combining average and max pooling enriches features "
        "(avgmax / catavgmax more accurate than both max and avg)"
    )
    combined = [n for n in ("avgmax2d", "catavgmax2d") if n in ok]
    absent = missing(["max2d", "avg2d"]) or (None if combined else "not in this run: avgmax2d, catavgmax2d")
    if absent:
        claims.append(Claim(4, text, "not tested", absent))
    else:
        verdicts, parts = [], []
        for name in combined:
            vs = [_verdict(acc(name), acc(base), "higher", seeds) for base in ("max2d", "avg2d")]
            verdicts.append(
                "supported"
                if all(v == "supported" for v in vs)
                else "not supported"
                if "not supported" in vs
                else "inconclusive"
            )
            parts.append(f"{name} {_fmt(*acc(name))}")
        overall = (
            "supported"
            if "supported" in verdicts
            else "not supported"
            if all(v == "not supported" for v in verdicts)
            else "inconclusive"
        )
        claims.append(
            Claim(
                4,
                text,
                overall,
                f"test accuracy {', '.join(parts)} vs max2d {_fmt(*acc('max2d'))}, "
                f"avg2d {_fmt(*acc('avg2d'))}",
                [
                    "'supported' needs a combined variant clearly above both baselines; "
                    "'not supported' means below at least one of them"
                ],
            )
        )

    text = "SPP and global pooling free the network from a fixed input size"
    heads = [n for n in ("spp", "global_avg", "gem") if n in ok]
    if not heads:
        claims.append(Claim(5, text, "not tested", "not in this run: spp, global_avg, gem"))
    else:
        chance = 1.0 / num_classes
        verdicts, parts = [], []
        for name in heads:
            v = ok[name]
            if v["resized_accuracy"] is None:
                verdicts.append("not supported")
                parts.append(f"{name}: no accuracy at {RESIZE_FACTOR}x size (forward failed)")
                continue
            clean, resized, rstd = v["accuracy_mean"], v["resized_accuracy"], v["resized_accuracy_std"]
            keep = chance + 0.5 * (clean - chance)  # keeps at least half of the above-chance accuracy
            if seeds < 2:
                verdicts.append("inconclusive")
            elif resized - rstd >= keep:
                verdicts.append("supported")
            elif resized + rstd < keep:
                verdicts.append("not supported")
            else:
                verdicts.append("inconclusive")
            parts.append(
                f"{name}: {_fmt(resized, rstd)} at {RESIZE_FACTOR}x vs {_fmt(clean, v['accuracy_std'])} clean"
            )
        overall = (
            "supported"
            if all(v == "supported" for v in verdicts)
            else "not supported"
            if "not supported" in verdicts
            else "inconclusive"
        )
        claims.append(
            Claim(
                5,
                text,
                overall,
                "; ".join(parts),
                [
                    f"'supported' means the model runs on {RESIZE_FACTOR}x upsampled test images "
                    f"and keeps at least half of its above-chance accuracy (chance {chance:.3f}).",
                    "Every model here ends in a size-independent head, so all variants accept other "
                    "sizes by construction; a flatten+Linear classifier would not (not measured: it "
                    "fails with a shape error). Accuracy at another scale tests scale robustness, "
                    "which size-independence alone does not give.",
                ],
            )
        )
    return claims


# ---------------------------------------------------------------------------------------------- output


def _cell(mean: float | None, std: float | None = None, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _table_rows(variants: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "role", "setting", "test acc", "train", "gap"]
    header += [f"noise {level:g}" for level in NOISE_LEVELS if level > 0]
    header += [f"{RESIZE_FACTOR:g}x size", "params", "s/epoch"]
    rows = []
    for v in variants:
        if v["status"] != "ok":
            rows.append([v["name"], v["status"], v["reason"] or ""] + [""] * (len(header) - 3))
            continue
        rows.append(
            [
                v["name"],
                v["role"],
                v["setting"],
                _cell(v["accuracy_mean"], v["accuracy_std"]),
                _cell(v["train_accuracy_mean"]),
                _cell(v["gap"]),
                *[_cell(v["noise_accuracy"].get(str(level))) for level in NOISE_LEVELS if level > 0],
                _cell(v["resized_accuracy"]),
                f"{v['parameters']:,}",
                f"{v['epoch_seconds']:.2f}",
            ]
        )
    return header, rows


def format_table(variants: list[dict[str, Any]]) -> str:
    """The results as a fixed-width text table (skipped variants show their reason)."""
    header, rows = _table_rows(variants)
    ok_rows = [r for r, v in zip(rows, variants) if v["status"] == "ok"]
    widths = [max(len(r[i]) for r in [header, *ok_rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    for r, v in zip(rows, variants):
        if v["status"] != "ok":
            lines.append(f"{r[0].ljust(widths[0])}  {v['status']}: {r[2]}")
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def _markdown_table(variants: list[dict[str, Any]]) -> str:
    header, rows = _table_rows(variants)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _write_report(out: Path, results: dict[str, Any], claims: list[Claim], plots: list[str]) -> None:
    cfg = results["config"]
    ok = [v for v in results["variants"] if v["status"] == "ok"]
    lines = [
        "# torchpool compare",
        "",
        f"Dataset: {cfg['dataset_description']}. Model: conv(16)-BN-ReLU-POOL-conv(32)-BN-ReLU-POOL-"
        "conv(64)-BN-ReLU-HEAD-Linear; windowed variants replace both POOLs (global-average HEAD), "
        "head variants replace the HEAD (max2d POOLs).",
        f"Training: {cfg['epochs']} epochs, {cfg['seeds']} seed(s) per variant (seeds {cfg['seed']}.."
        f"{cfg['seed'] + cfg['seeds'] - 1}), Adam lr {cfg['lr']}, global batch {cfg['batch_size']}, "
        f"world size {cfg['world_size']}.",
        f"Machine: {results['machine']}.",
        "",
        "Accuracies are mean ± sample std over seeds on the test split; *gap* is train accuracy minus test "
        "accuracy; *noise p* is test accuracy with a fraction p of pixels set to 0 or 1; "
        f"*{RESIZE_FACTOR:g}x size* is test accuracy on test images upsampled {RESIZE_FACTOR:g}x "
        "(bilinear) without retraining.",
        "",
        _markdown_table(results["variants"]),
        "",
        "## Survey claims",
        "",
        "Rule: a claim is *supported* when the difference goes the claimed way and the mean ± std "
        "intervals do not overlap, *not supported* when they do not overlap the other way, "
        "*inconclusive* otherwise (or with one seed). Each std is at least the binomial standard "
        "error of a test accuracy on this test split. This is a small sample "
        f"({cfg['seeds']} seed(s), {cfg['epochs']} epochs, {cfg['train_images']} "
        "training images, one small CNN, one dataset): a verdict describes this run, not pooling in general.",
        "",
    ]
    for c in claims:
        lines.append(f"{c.number}. **{c.text}** — {c.verdict}. {c.evidence}.")
        lines.extend(f"   - {note}" for note in c.notes)
    if ok:
        best = max(ok, key=lambda v: v["accuracy_mean"])
        lines += [
            "",
            f"Highest mean test accuracy in this run: {best['name']} "
            f"({_cell(best['accuracy_mean'], best['accuracy_std'])}).",
        ]
    if plots:
        lines += ["", *[f"![{p}]({p})" for p in plots]]
    _write_atomic(out / "report.md", "\n".join(lines) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader (or a run interrupted half-way) sees the old file or the whole new one, never a part.
    """
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; a plain write would follow the umask
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _strict(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    r"""Writes ``data`` as strict JSON (NaN and infinities become ``null``), atomically.

    Args:
        path: the file; its folder must exist.
        data: dicts, lists, strings, numbers, booleans and None.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_json_atomic(folder / "r.json", {"accuracy": float("nan"), "runs": [1.0, float("inf")]})
        >>> (folder / "r.json").read_text()
        '{\n  "accuracy": null,\n  "runs": [\n    1.0,\n    null\n  ]\n}\n'
    """
    _write_atomic(path, json.dumps(_strict(data), indent=2, allow_nan=False) + "\n")


def _plots(out: Path, variants: list[dict[str, Any]], num_classes: int) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UsageError(f"the plots need matplotlib; {LAB_HINT} (or pass --no-plots)") from exc
    ok = [v for v in variants if v["status"] == "ok"]
    if not ok:
        return []
    names = [v["name"] for v in ok]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(ok) + 2), 4.5))
    colors = ["tab:blue" if v["role"] == "pool" else "tab:orange" for v in ok]
    ax.bar(
        names, [v["accuracy_mean"] for v in ok], yerr=[v["accuracy_std"] for v in ok], capsize=3, color=colors
    )
    ax.axhline(1.0 / num_classes, color="gray", linestyle=":", label="chance")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title("accuracy per pooling variant (blue: pool, orange: head)")
    low = min(v["accuracy_mean"] - v["accuracy_std"] for v in ok)
    ax.set_ylim(max(0.0, min(low - 0.05, 1.0 / num_classes - 0.02)), 1.0)
    ax.tick_params(axis="x", rotation=45)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v in ok:
        levels = [float(k) for k in v["noise_accuracy"]]
        style = "-" if v["role"] == "pool" else "--"
        ax.plot(levels, list(v["noise_accuracy"].values()), style, marker="o", label=v["name"])
    ax.axhline(1.0 / num_classes, color="gray", linestyle=":")
    ax.set_xlabel("salt-and-pepper noise level (fraction of pixels)")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title("robustness to salt-and-pepper noise at test time")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "noise.png", dpi=100)
    plt.close(fig)
    return ["accuracy.png", "noise.png"]


def _machine(ctx: _Context) -> str:
    threads = torch.get_num_threads()
    device = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu"
    return (
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, {threads} torch threads, device {device}, {ctx.world} process(es)"
    )


# ---------------------------------------------------------------------------------------------- entry


def _setup(args: argparse.Namespace) -> tuple[_Context, bool]:
    """Device and, under torchrun (``WORLD_SIZE`` > 1), the process group; returns (context, initialised)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda but torch sees no CUDA device")
        device = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    initialised = False
    if world > 1:
        if args.batch_size % world:
            raise UsageError(f"--batch-size {args.batch_size} must be divisible by the world size {world}")
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            initialised = True
    return _Context(device=device, rank=rank, world=world), initialised


def run(args: argparse.Namespace) -> int:
    """Runs the comparison; returns 0 on success, 2 for bad arguments or data that cannot give a result.

    Every option is checked before the data is loaded, and the data before any training; each
    refusal is one line on stderr naming the option or the data's problem.
    """
    initialised = False
    settled = False  # every rank reaches the end together (a result or the same refusal)
    try:
        args.variants = validate_arguments(args)
        ctx, initialised = _setup(args)
        code = _run(args, ctx)
        settled = True
        return code
    except (DatasetError, UsageError) as exc:
        settled = True
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"torchpool compare: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if initialised:
            import torch.distributed as dist

            # rank 0 writes the report while the others wait: tearing gloo down while a peer is
            # still busy aborted rank 0 ("terminate called without an active exception"). After
            # Ctrl-C or a crash the peers may never arrive: no barrier then.
            if settled:
                dist.barrier()
            dist.destroy_process_group()


def _run(args: argparse.Namespace, ctx: _Context) -> int:
    data = load_dataset(args.dataset, args.data_dir, args.image_size, seed=args.seed, limit=args.limit)
    specs: list[tuple[str, VariantSpec | None, str, str]] = []  # name, spec, family, skip reason
    spec: VariantSpec | None
    for name in dict.fromkeys(args.variants):
        try:
            spec = resolve_variant(name, data.num_classes)
            build_model(spec, data.num_classes, data.image_size)  # dry run: skip now, not mid-way
            specs.append((name, spec, spec.family, ""))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except VariantNotApplicable as exc:
            specs.append((name, None, get_pool_info(name).family, str(exc)))

    progress = _Progress(sys.stdout, ctx.main)
    if ctx.main:
        print(
            f"torchpool compare: {data.describe()}; {len(specs)} variant(s) x {args.seeds} seed(s) "
            f"x {args.epochs} epochs"
        )
    evals = _eval_sets(data, args.seed)
    variants: list[dict[str, Any]] = []
    total_units = sum(1 for _, s, _, _ in specs if s is not None) * args.seeds * args.epochs
    done_units, run_start = 0, time.perf_counter()
    width = max(len(n) for n, *_ in specs)
    for i, (name, spec, family, reason) in enumerate(specs, 1):
        label = f"[{i:>{len(str(len(specs)))}}/{len(specs)}] {name.ljust(width)}"
        if spec is None:
            variants.append(_skipped(name, family, reason))
            progress.finish(f"{label}  skipped: {reason}")
            continue
        per_seed: list[dict[str, Any]] = []
        parameters = 0
        variant_start = time.perf_counter()
        diverged = ""
        for s in range(args.seeds):
            seed = args.seed + s

            def tick(
                epoch: int, s: int = s, label: str = label, variant_start: float = variant_start
            ) -> None:
                nonlocal done_units
                done_units += 1
                elapsed = time.perf_counter() - run_start
                eta = elapsed / done_units * (total_units - done_units)
                progress.update(
                    f"{label}  seed {s + 1}/{args.seeds}  epoch {epoch}/{args.epochs}  "
                    f"{_seconds(time.perf_counter() - variant_start)}  eta {_seconds(eta)}"
                )

            try:
                record, parameters = _train_one(spec, data, evals, seed, args, ctx, tick)
            except TrainingDiverged as exc:
                diverged = str(exc)
                break
            per_seed.append(record)
        if diverged:
            variants.append(_skipped(name, family, diverged, status="diverged"))
            progress.finish(f"{label}  diverged: {diverged}")
            continue
        summary = _summarise(spec, per_seed, parameters)
        variants.append(summary)
        progress.finish(
            f"{label}  acc {_cell(summary['accuracy_mean'], summary['accuracy_std'])}  "
            f"gap {summary['gap']:+.3f}  "
            f"{summary['epoch_seconds']:.2f} s/epoch  ({_seconds(time.perf_counter() - variant_start)})"
        )

    if not ctx.main:
        return 0
    config = {
        **{k: v for k, v in vars(args).items() if k != "command"},
        "image_size": list(data.image_size),
        "dataset_description": data.describe(),
        "train_images": len(data.train_y),
        "test_images": len(data.test_y),
        "num_classes": data.num_classes,
        "noise_levels": list(NOISE_LEVELS),
        "resize_factor": RESIZE_FACTOR,
        "world_size": ctx.world,
        "total_seconds": time.perf_counter() - run_start,
    }
    results = {"config": config, "machine": _machine(ctx), "variants": variants}
    claims = evaluate_claims(variants, args.seeds, data.num_classes, len(data.test_y))
    results["claims"] = [c.__dict__ for c in claims]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots = [] if args.no_plots else _plots(out, variants, data.num_classes)
    _write_report(out, results, claims, plots)
    write_json_atomic(out / "results.json", results)  # last: its presence means the run finished
    print()
    print(format_table(variants))
    print()
    for c in claims:
        print(f"claim {c.number} ({c.verdict}): {c.text}. {c.evidence}.")
    print(f"\nwrote {out / 'results.json'}, {out / 'report.md'}" + "".join(f", {out / p}" for p in plots))
    print(f"total {_seconds(config['total_seconds'])}")
    if not any(v["status"] == "ok" for v in variants):
        print("torchpool compare: no variant could run", file=sys.stderr)
        return 1
    return 0
