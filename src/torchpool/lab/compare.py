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
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import torch

from ..registry import get_pool_info
from .claims import Claim, evaluate_claims
from .data import LAB_HINT, DatasetError, load_dataset
from .models import DEFAULT_VARIANTS, VariantNotApplicable, VariantSpec, build_model, resolve_variant
from .report import cell, format_table, write_json_atomic, write_report
from .training import (
    NOISE_LEVELS,
    RESIZE_FACTOR,
    Context,
    TrainingDiverged,
    eval_sets,
    salt_and_pepper,
    skipped,
    summarise,
    train_one,
)

__all__ = [
    "NOISE_LEVELS",
    "OUTPUT_FILES",
    "RESIZE_FACTOR",
    "Claim",
    "UsageError",
    "add_arguments",
    "evaluate_claims",
    "format_table",
    "run",
    "salt_and_pepper",
    "split_variants",
    "validate_arguments",
    "write_json_atomic",
]

_MAX_SEED = 2**31 - 1  # torch and numpy seeds derived from --seed stay in range
_MAX_IMAGE_SIZE = 1024  # every split is held in memory at this side: 60000 Fashion-MNIST images are 250 GB
OUTPUT_FILES: tuple[str, ...] = ("results.json", "report.md", "accuracy.png", "noise.png")


class UsageError(Exception):
    """Bad arguments found after parsing (unknown variant, indivisible batch, missing CUDA)."""


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


# ---------------------------------------------------------------------------------------------- output


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


def _machine(ctx: Context) -> str:
    threads = torch.get_num_threads()
    device = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu"
    return (
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, {threads} torch threads, device {device}, {ctx.world} process(es)"
    )


# ---------------------------------------------------------------------------------------------- entry


def _setup(args: argparse.Namespace) -> tuple[Context, bool]:
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
    return Context(device=device, rank=rank, world=world), initialised


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


def _run(args: argparse.Namespace, ctx: Context) -> int:
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
    evals = eval_sets(data, args.seed)
    variants: list[dict[str, Any]] = []
    total_units = sum(1 for _, s, _, _ in specs if s is not None) * args.seeds * args.epochs
    done_units, run_start = 0, time.perf_counter()
    width = max(len(n) for n, *_ in specs)
    for i, (name, spec, family, reason) in enumerate(specs, 1):
        label = f"[{i:>{len(str(len(specs)))}}/{len(specs)}] {name.ljust(width)}"
        if spec is None:
            variants.append(skipped(name, family, reason))
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
                record, parameters = train_one(spec, data, evals, seed, args, ctx, tick)
            except TrainingDiverged as exc:
                diverged = str(exc)
                break
            per_seed.append(record)
        if diverged:
            variants.append(skipped(name, family, diverged, status="diverged"))
            progress.finish(f"{label}  diverged: {diverged}")
            continue
        summary = summarise(spec, per_seed, parameters)
        variants.append(summary)
        progress.finish(
            f"{label}  acc {cell(summary['accuracy_mean'], summary['accuracy_std'])}  "
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
    write_report(out, results, claims, plots)
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
