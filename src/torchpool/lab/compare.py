"""``torchpool compare``: train one small CNN per pooling variant and seed, and test the survey's claims.

For each variant the same CNN (:mod:`torchpool.lab.models`) is trained once per seed; every
variant of a seed sees the same batches in the same order and starts from the same weights in
the layers it shares with the others, so a claim "A beats B" is judged on per-seed paired
differences with a 95% t-interval (:mod:`torchpool.lab.stats`). Each model is scored on a seeded
test subset (``--test-limit``): clean, under salt-and-pepper and Gaussian noise, at other input
sizes, rotated, shifted (Zhang 2019's consistency); the run also counts FLOPs, times forward
passes, and measures what needs no training (unpooling error, YOLOv3's receptive fields). The
claims of :mod:`torchpool.lab.claims` are judged and written to ``report.md`` and a
self-contained ``report.html`` with one figure per claim (:mod:`torchpool.lab.plots`).

Before training, one timed training step and forward pass of every variant give the printed
time estimate; the progress lines correct it by the ratio of actual to estimated time over
the last few runs, so that it follows a change of the machine's load.

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
from .data import LAB_HINT, DatasetError, ImageData, load_dataset
from .measure import costs, fixed_size_head, spp_receptive_fields, unpooling, variant_models
from .models import (
    DEFAULT_VARIANTS,
    OPTIONAL_VARIANTS,
    VariantNotApplicable,
    VariantSpec,
    build_model,
    default_variants,
    is_variant_name,
    resolve_variant,
)
from .report import cell, format_table, write_json_atomic, write_report
from .training import (
    BN_CALIBRATION,
    NOISE_LEVELS,
    RESIZE_FACTOR,
    SCALES,
    Context,
    EvalSets,
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
    "PRESETS",
    "RESIZE_FACTOR",
    "Claim",
    "UsageError",
    "add_arguments",
    "evaluate_claims",
    "format_table",
    "resolve_preset",
    "run",
    "salt_and_pepper",
    "split_variants",
    "validate_arguments",
    "write_json_atomic",
]

_MAX_SEED = 2**31 - 1  # torch and numpy seeds derived from --seed stay in range
_MAX_IMAGE_SIZE = 1024  # every split is held in memory at this side: 60000 Fashion-MNIST images are 250 GB
OUTPUT_FILES: tuple[str, ...] = ("results.json", "report.md", "report.html")
_ETA_WINDOW = 6  # training runs whose actual / estimated time ratio corrects the estimate

#: per preset and dataset: image size, training images (None: all), test images evaluated
#: (None: all), epochs, seeds. An option given on the command line wins.
PRESETS: dict[str, dict[str, dict[str, int | None]]] = {
    "quick": {
        "digits": {"image_size": 16, "limit": None, "test_limit": None, "epochs": 3, "seeds": 3},
        "fashion-mnist": {"image_size": 28, "limit": 3000, "test_limit": 1000, "epochs": 2, "seeds": 3},
        "folder": {"image_size": 32, "limit": None, "test_limit": 1000, "epochs": 4, "seeds": 3},
    },
    "thorough": {
        "digits": {"image_size": 16, "limit": None, "test_limit": None, "epochs": 10, "seeds": 5},
        "fashion-mnist": {"image_size": 28, "limit": None, "test_limit": None, "epochs": 8, "seeds": 5},
        "folder": {"image_size": 32, "limit": None, "test_limit": None, "epochs": 10, "seeds": 5},
    },
}
_PRESET_KEYS = ("image_size", "limit", "test_limit", "epochs", "seeds")


class UsageError(Exception):
    """Bad arguments found after parsing (unknown variant, indivisible batch, missing CUDA)."""


def _count_or_all(text: str) -> int | str:
    """``--limit`` / ``--test-limit``: a count, or ``all`` (a string until the preset is applied)."""
    if text.strip().lower() == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}") from None


def _preset_help(key: str) -> str:
    parts = []
    for preset, table in PRESETS.items():
        values = ", ".join(f"{d} {'all' if v[key] is None else v[key]}" for d, v in table.items())
        parts.append(f"{preset}: {values}")
    return "default per preset (" + "; ".join(parts) + ")"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``compare`` options to ``parser``; every help text names the default."""
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        metavar="NAME",
        help="pool factory names (or the lab's strided_conv, yolo_spp_k19), separated by spaces or "
        f"commas (default: {' '.join(DEFAULT_VARIANTS)}, and those of {' '.join(OPTIONAL_VARIANTS)} "
        "that this torchpool registers)",
    )
    parser.add_argument(
        "--dataset", choices=["digits", "fashion-mnist", "folder"], default="digits", help="(default: digits)"
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="quick",
        help="image size, training and test images, epochs and seeds per dataset, as listed under those "
        "options (default: quick: digits under 2 min, fashion-mnist under 10 min on 2 cores)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="fashion-mnist: folder with the four IDX files (default /usr/share/datasets/fashion-mnist); "
        "folder: root with one subfolder of images per class (no default)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize images to this side; " + _preset_help("image_size"),
    )
    parser.add_argument(
        "--limit",
        type=_count_or_all,
        default=None,
        help="train on a seeded subset of N images, or 'all'; " + _preset_help("limit"),
    )
    parser.add_argument(
        "--test-limit",
        type=_count_or_all,
        default=None,
        help="evaluate (clean, noise, size, rotation, shift, train accuracy of the gap) on a seeded "
        "subset of N "
        "test images, the same for every variant and seed, or 'all'; " + _preset_help("test_limit"),
    )
    parser.add_argument("--epochs", type=int, default=None, help=_preset_help("epochs"))
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="paired training runs per variant (seed, seed+1, ...); " + _preset_help("seeds"),
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="base seed: data split, subsets, init, order, noise (default: 0)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="global batch size, split across DDP ranks (default: 64)"
    )
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: 0.003)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="(default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)"
    )
    parser.add_argument(
        "--out", default="torchpool-compare", help="output folder (default: torchpool-compare)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the figures (default: draw them)")
    parser.add_argument(
        "--grid",
        action="store_true",
        help="under torchrun: give each process whole (variant, seed) runs instead of a share of every "
        "batch; the same table as one process, about N times sooner (default: share the batches)",
    )


def resolve_preset(args: argparse.Namespace) -> None:
    """Fills the options left unset (``None``) from ``PRESETS[args.preset][args.dataset]``.

    ``--limit all`` / ``--test-limit all`` become ``None`` (every image) after the preset.
    """
    table = PRESETS[getattr(args, "preset", "quick")][args.dataset]
    for key in _PRESET_KEYS:
        value = getattr(args, key, None)
        if value is None:
            setattr(args, key, table[key])
        elif value == "all":
            setattr(args, key, None)


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


def _registered(name: str) -> bool:
    try:
        get_pool_info(name)
    except ValueError:
        return False
    return True


def validate_arguments(args: argparse.Namespace) -> list[str]:
    """Checks every option of ``torchpool compare`` before any work; returns the variants' registry names.

    Args:
        args: the parsed options of :func:`add_arguments`.

    Returns:
        The pool names of ``--variants`` (spaces or commas; default :func:`default_variants`),
        resolved to registry names, without duplicates, in order.

    Raises:
        UsageError: naming the first bad option and what it expects.
    """
    resolve_preset(args)
    names = default_variants() if args.variants is None else split_variants(args.variants)
    if not names:
        raise UsageError("--variants needs at least one pool name (torchpool list shows them)")
    variants: list[str] = []
    for name in names:
        if is_variant_name(name) and not _registered(name):
            variants.append(name)  # one of the lab's own variants
            continue
        try:
            variants.append(get_pool_info(name).name)
        except ValueError as exc:
            raise UsageError(f"--variants: {exc}") from None
    for option in ("epochs", "seeds", "batch_size"):
        _positive(args, option)
    for option in ("limit", "test_limit", "image_size", "threads"):
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


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _machine(ctx: Context) -> str:
    threads = torch.get_num_threads()
    device = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu"
    return (
        f"{platform.system()} {platform.machine()} ({_cpu_model()}), Python {platform.python_version()}, "
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


def _specs(args: argparse.Namespace, data: ImageData) -> list[tuple[str, VariantSpec | None, str, str]]:
    """Each variant's spec, or None with the reason it is skipped (after a dry run of its model)."""
    specs: list[tuple[str, VariantSpec | None, str, str]] = []
    for name in dict.fromkeys(args.variants):
        family = "control" if not _registered(name) else get_pool_info(name).family
        try:
            spec = resolve_variant(name, data.num_classes)
            build_model(spec, data.num_classes, data.image_size)  # dry run: skip now, not mid-way
            specs.append((name, spec, spec.family, ""))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except VariantNotApplicable as exc:
            specs.append((name, None, family, str(exc)))
    return specs


def _estimate(
    cost: dict[str, Any], args: argparse.Namespace, data: ImageData, evals: EvalSets, world: int
) -> float:
    """Seconds one seed of a variant should take: its training steps, then its evaluation forwards."""
    steps = args.epochs * math.ceil(len(data.train_y) / args.batch_size)
    per_image = cost["latency_ms"] / 1000 / max(1, args.batch_size // world)
    calibration = min(len(evals.train_x), BN_CALIBRATION)
    return float(steps * cost["step_seconds"] + (evals.images + calibration) * per_image)


def _measurements(
    specs: dict[str, VariantSpec], args: argparse.Namespace, data: ImageData, evals: EvalSets, world: int
) -> dict[str, Any]:
    """What needs no training: costs (also the time estimate), unpooling, receptive fields, fixed head."""
    batch = max(1, args.batch_size // world)
    cost = costs(
        variant_models(specs, data.num_classes, data.image_size),
        data.image_size,
        batch,
        repeats=3,
        classes=data.num_classes,
    )
    return {
        "costs": cost,
        "cost_batch": batch,
        "unpooling": unpooling(evals.test_x),
        "spp_receptive_fields": spp_receptive_fields(608),
        "fixed_size_head": fixed_size_head(data.num_classes, data.image_size, SCALES),
    }


def _run(args: argparse.Namespace, ctx: Context) -> int:
    run_start = time.perf_counter()
    data = load_dataset(args.dataset, args.data_dir, args.image_size, seed=args.seed, limit=args.limit)
    specs = _specs(args, data)
    evals = eval_sets(data, args.seed, args.test_limit)
    runnable = {name: spec for name, spec, _, _ in specs if spec is not None}
    grid = bool(getattr(args, "grid", False)) and ctx.world > 1
    split = 1 if grid else ctx.world  # the processes that share one training run's batches
    measurements = _measurements(runnable, args, data, evals, split)
    estimates = {n: _estimate(measurements["costs"][n], args, data, evals, split) for n in runnable}
    if grid:
        import torch.distributed as dist

        shared = [estimates]
        dist.broadcast_object_list(shared, src=0)  # every rank plans the same assignment
        estimates = shared[0]
    estimated_total = sum(estimates.values()) * args.seeds / (ctx.world if grid else 1)
    setup_seconds = time.perf_counter() - run_start
    progress = _Progress(sys.stdout, ctx.main)
    if ctx.main:
        print(
            f"torchpool compare: {data.describe()}; evaluating {len(evals.test_y)} test images; "
            f"{len(specs)} variant(s) x {args.seeds} seed(s) x {args.epochs} epochs",
            flush=True,
        )
        print(
            f"estimated time: {_seconds(estimated_total + setup_seconds)} "
            "(from one timed training step and forward pass of each variant, "
            f"{_seconds(setup_seconds)} so far)",
            flush=True,
        )
    if grid:
        gathered = _run_grid(args, ctx, data, evals, specs, estimates)
        if not ctx.main:
            return 0
        return _finish(
            args, ctx, data, evals, gathered, measurements, estimated_total + setup_seconds, run_start
        )
    variants: list[dict[str, Any]] = []
    done_estimate = 0.0
    recent: list[tuple[float, float]] = []  # (estimated, actual) seconds of the runs done, latest last
    width = max(len(n) for n, *_ in specs)

    def eta() -> float:
        # the ratio of actual to estimated time over the last runs: follows a change of the machine's load
        window = recent[-_ETA_WINDOW:]
        ratio = sum(a for _, a in window) / sum(e for e, _ in window) if window else 1.0
        return max(0.0, float(estimated_total - done_estimate) * ratio)

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

            def tick(epoch: int, s: int = s, label: str = label, start: float = variant_start) -> None:
                progress.update(
                    f"{label}  seed {s + 1}/{args.seeds}  epoch {epoch}/{args.epochs}  "
                    f"{_seconds(time.perf_counter() - start)}  eta {_seconds(eta())}"
                )

            seed_start = time.perf_counter()
            try:
                record, parameters = train_one(spec, data, evals, seed, args, ctx, tick)
            except TrainingDiverged as exc:
                diverged = str(exc)
                break
            finally:
                done_estimate += estimates[name]
                recent.append((estimates[name], time.perf_counter() - seed_start))
            per_seed.append(record)
        if diverged:
            done_estimate += estimates[name] * (args.seeds - len(per_seed) - 1)
            variants.append(skipped(name, family, diverged, status="diverged"))
            progress.finish(f"{label}  diverged: {diverged}")
            continue
        summary = summarise(spec, per_seed, parameters)
        variants.append(summary)
        progress.finish(
            f"{label}  acc {cell(summary['accuracy_mean'], summary['accuracy_std'])}  "
            f"gap {summary['gap']:+.3f}  shift {summary['shift_consistency']:.3f}  "
            f"({_seconds(time.perf_counter() - variant_start)}, eta {_seconds(eta())})"
        )

    if not ctx.main:
        return 0
    return _finish(args, ctx, data, evals, variants, measurements, estimated_total + setup_seconds, run_start)


def _assign(tasks: list[tuple[str, int]], estimates: dict[str, float], world: int) -> list[int]:
    """The rank of each (variant, seed) task: longest first, each to the least loaded rank.

    Example:
        >>> _assign([("a", 0), ("a", 1), ("b", 0), ("b", 1)], {"a": 3.0, "b": 1.0}, 2)
        [0, 1, 0, 1]
    """
    load = [0.0] * world
    owner = [0] * len(tasks)
    for i in sorted(range(len(tasks)), key=lambda i: (-estimates[tasks[i][0]], i)):
        rank = min(range(world), key=lambda r: (load[r], r))
        owner[i] = rank
        load[rank] += estimates[tasks[i][0]]
    return owner


def _run_grid(
    args: argparse.Namespace,
    ctx: Context,
    data: ImageData,
    evals: EvalSets,
    specs: list[tuple[str, VariantSpec | None, str, str]],
    estimates: dict[str, float],
) -> list[dict[str, Any]]:
    """``--grid``: each process trains whole (variant, seed) runs alone; rank 0 gathers the records.

    A run depends on its seed only (the stochastic pools draw from the stream of rank 0 of a
    single process), so the table is the one a single process computes.
    """
    import torch.distributed as dist

    local = Context(device=ctx.device, rank=0, world=1)
    tasks = [
        (name, args.seed + s) for name, spec, _, _ in specs if spec is not None for s in range(args.seeds)
    ]
    owner = _assign(tasks, estimates, ctx.world)
    by_name = {name: spec for name, spec, _, _ in specs if spec is not None}
    mine: dict[int, Any] = {}
    start = time.perf_counter()
    for i, (name, seed) in enumerate(tasks):
        if owner[i] != ctx.rank:
            continue
        spec = by_name[name]
        try:
            mine[i] = train_one(spec, data, evals, seed, args, local, lambda epoch: None)
        except TrainingDiverged as exc:
            mine[i] = str(exc)
        if ctx.main:
            print(f"rank 0: {name} seed {seed} done ({_seconds(time.perf_counter() - start)})", flush=True)
    gathered: list[dict[int, Any]] = [{} for _ in range(ctx.world)]
    dist.all_gather_object(gathered, mine)
    results: dict[int, Any] = {}
    for part in gathered:
        results.update(part)
    variants: list[dict[str, Any]] = []
    for name, maybe, family, reason in specs:
        if maybe is None:
            variants.append(skipped(name, family, reason))
            continue
        runs = [results[i] for i, task in enumerate(tasks) if task[0] == name]
        failed = next((r for r in runs if isinstance(r, str)), None)
        if failed is not None:
            variants.append(skipped(name, family, failed, status="diverged"))
            continue
        variants.append(summarise(maybe, [r[0] for r in runs], runs[0][1]))
    return variants


def _finish(
    args: argparse.Namespace,
    ctx: Context,
    data: ImageData,
    evals: EvalSets,
    variants: list[dict[str, Any]],
    measurements: dict[str, Any],
    estimated: float,
    run_start: float,
) -> int:
    """Claims, figures, report and ``results.json`` (rank 0)."""
    config = {
        **{k: v for k, v in vars(args).items() if k != "command"},
        "image_size": list(data.image_size),
        "dataset_description": data.describe(),
        "train_images": len(data.train_y),
        "test_images": len(data.test_y),
        "evaluated_test_images": len(evals.test_y),
        "num_classes": data.num_classes,
        "evaluation_sets": list(evals.corrupted),
        "world_size": ctx.world,
        "estimated_seconds": estimated,
    }
    measurements = {k: v for k, v in measurements.items()}
    unpool = dict(measurements["unpooling"])
    results: dict[str, Any] = {"config": config, "machine": _machine(ctx), "variants": variants}
    claims = evaluate_claims(variants, measurements, data.num_classes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}
    if not args.no_plots:
        from .plots import draw_figures

        try:
            figures = draw_figures(out, variants, claims, measurements, data, evals)
        except ImportError as exc:
            raise UsageError(f"the plots need matplotlib; {LAB_HINT} (or pass --no-plots)") from exc
    unpool.pop("per_image", None)  # thousands of numbers: the summary is enough in results.json
    measurements["unpooling"] = unpool
    config["total_seconds"] = time.perf_counter() - run_start
    results["measurements"] = measurements
    results["claims"] = [_claim_json(c) for c in claims]
    write_report(out, results, claims, figures)
    write_json_atomic(out / "results.json", results)  # last: its presence means the run finished
    print()
    print(format_table(variants, measurements.get("costs", {})))
    print()
    for c in claims:
        print(f"claim {c.id} ({c.verdict}): {c.text}. {c.reason}.")
    written = ["results.json", "report.md", "report.html", *sorted(set(figures.values()))]
    print(f"\nwrote {', '.join(str(out / p) for p in written)}")
    print(f"total {_seconds(config['total_seconds'])} (estimated {_seconds(estimated)} at the start)")
    if not any(v["status"] == "ok" for v in variants):
        print("torchpool compare: no variant could run", file=sys.stderr)
        return 1
    return 0


def _claim_json(c: Claim) -> dict[str, Any]:
    out = {k: v for k, v in c.__dict__.items() if k != "comparisons"}
    out["comparisons"] = [
        {
            **{k: v for k, v in x.__dict__.items() if k != "interval"},
            "interval": None if x.interval is None else x.interval.__dict__,
            "name": x.name,
        }
        for x in c.comparisons
    ]
    return out
