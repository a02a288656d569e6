"""``torchpool gallery``: every windowed pool applied to a photo, as one labelled PNG grid.

The photo (scikit-learn's ``china.jpg`` sample by default, or ``--image PATH``) is scaled to
``[0, 1]``, downscaled so its short side is ``--size`` pixels, and pooled as a ``(1, 3, H, W)``
tensor: each colour channel is a channel. The grid shows max, average, overlapping max,
stochastic (training draw with ``--seed``, and the evaluation expectation), median, avgmax,
mixed (evaluation and a training draw), max pooling followed by ``max_unpool2d``, and a
salt-and-pepper noisy copy pooled by median, max and average pooling: the median removes the
noise, max pooling spreads the salt and averaging smears both. A last row shows the pools from
beyond the survey: SoftPool, LIP (its logit a fixed multiple of the image, so bright pixels
weigh more), BlurPool and MaxBlurPool, S3Pool (a training draw and evaluation), spectral
pooling (its ringing at edges) and a hand-set tree pool: two leaves that read the top-left and
bottom-right cell of each 2x2 window, and a gate that opens towards the brighter one.

matplotlib (and scikit-learn for the default photo) are imported lazily:
``pip install "torchpool[lab]"``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Panel", "add_arguments", "load_image", "make_panels", "run", "save_grid", "validate_arguments"]

_INSTALL = 'pip install "torchpool[lab]"'


@dataclass(frozen=True)
class Panel:
    """One image of the grid.

    Attributes:
        title: the operation's name.
        image: ``(3, H, W)`` values in ``[0, 1]``.
    """

    title: str
    image: Tensor


def _import_pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise RuntimeError(f"torchpool gallery needs matplotlib ({error}): {_INSTALL}") from None
    return plt


def load_image(path: str | None, size: int) -> Tensor:
    """Loads a photo as a ``(1, 3, H, W)`` float tensor in ``[0, 1]``, short side ``size`` pixels.

    Args:
        path: an image file read with ``matplotlib.image.imread``, or ``None`` for scikit-learn's
            ``china.jpg`` sample image.
        size: short side after downscaling (antialiased bilinear); ``0`` keeps the photo's size.
            Photos already smaller are not upscaled.

    Returns:
        The image tensor (grayscale is repeated over 3 channels, an alpha channel dropped).

    Raises:
        RuntimeError: if matplotlib or scikit-learn is missing.
        ValueError: if the file cannot be read or is not an image.
    """
    if path is None:
        try:
            from sklearn.datasets import load_sample_image  # type: ignore[import-untyped]
        except ImportError as error:
            raise RuntimeError(
                f"the default photo is scikit-learn's sample image ({error}): {_INSTALL} "
                "(or give --image PATH)"
            ) from None
        array: Any = load_sample_image("china.jpg")
    else:
        _import_pyplot()
        import matplotlib.image as mpimg

        try:
            array = mpimg.imread(path)
        except (OSError, ValueError, SyntaxError) as error:
            raise ValueError(f"cannot read image {path!r}: {error}") from None
    x = torch.as_tensor(array.copy())
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.dtype == torch.uint16:  # pragma: no cover - 16-bit PNGs are returned as floats
        x = x.float() / 65535.0
    x = x.float()
    if x.dim() == 2:
        x = x.unsqueeze(-1)
    if x.dim() != 3 or x.shape[-1] not in (1, 2, 3, 4) or min(x.shape[:2]) < 1:
        raise ValueError(f"{path!r} is not a 2-d grayscale or RGB image (array shape {tuple(array.shape)})")
    if x.shape[-1] in (2, 4):  # drop alpha
        x = x[..., :-1]
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, 3)
    x = x.permute(2, 0, 1).unsqueeze(0).contiguous().clamp(0.0, 1.0)
    short = min(x.shape[2:])
    if size > 0 and short > size:
        height = max(1, round(x.shape[2] * size / short))
        width = max(1, round(x.shape[3] * size / short))
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        x = x.clamp(0.0, 1.0)
    return x


def _salt_and_pepper(x: Tensor, amount: float, generator: torch.Generator) -> Tensor:
    """Sets a fraction ``amount`` of the pixels (all channels) to black or white."""
    height, width = x.shape[2:]
    u = torch.rand((1, 1, height, width), generator=generator)
    salt = torch.rand((1, 1, height, width), generator=generator) < 0.5
    noisy = x.clone()
    hit = (u < amount).expand_as(x)
    value = salt.expand_as(x).to(x.dtype)
    return torch.where(hit, value, noisy)


def _beyond_the_survey(x: Tensor, seed: int) -> list[tuple[str, Callable[[], Tensor]]]:
    """The panels of the pools that are not in the survey (SoftPool, LIP, BlurPool, S3Pool, ...)."""
    from torchpool import functional as tpf

    height, width = x.shape[2:]
    leaves = torch.zeros(1, 2, 2, 2)
    leaves[0, 0, 0, 0] = leaves[0, 1, 1, 1] = 1.0  # top-left cell, bottom-right cell
    gate = torch.tensor([[[[20.0, 0.0], [0.0, -20.0]]]])  # sigmoid(20 (top-left - bottom-right))
    return [
        ("SoftPool 2x2", lambda: tpf.soft_pool2d(x, 2)),
        ("LIP 3x3 s2 (logit 8x)", lambda: tpf.lip_pool2d(x, 8.0 * x)),
        ("BlurPool 3 s2 (reflect)", lambda: tpf.blur_pool2d(x, 3, 2)),
        ("MaxBlurPool (max 2 s1, blur 3 s2)", lambda: tpf.max_blur_pool2d(x, 3, 2, 2)),
        (
            f"S3Pool s2, train (seed {seed})",
            lambda: tpf.s3_pool2d(x, 2, training=True, generator=torch.Generator().manual_seed(seed)),
        ),
        ("S3Pool s2, eval", lambda: tpf.s3_pool2d(x, 2, training=False)),
        ("spectral to 1/2 size", lambda: tpf.spectral_pool2d(x, (height // 2, width // 2))),
        ("tree 2x2: gate picks the brighter corner", lambda: tpf.tree_pool2d(x, leaves, gate, 2)),
    ]


def make_panels(x: Tensor, seed: int = 0, noise: float = 0.05) -> list[Panel]:
    """Applies each windowed pool to ``x``.

    Args:
        x: ``(1, 3, H, W)`` image in ``[0, 1]``, ``H, W >= 4``.
        seed: seed of the stochastic and mixed training draws and of the noise.
        noise: fraction of pixels set to black or white in the salt-and-pepper panels.

    Returns:
        The panels, the original first.

    Example:
        >>> panels = make_panels(torch.rand(1, 3, 8, 10))
        >>> [(p.title.splitlines()[0], tuple(p.image.shape)) for p in panels[:3]]
        [('original', (3, 8, 10)), ('max 2x2', (3, 4, 5)), ('avg 2x2', (3, 4, 5))]
    """
    import torchpool as tp

    def generator() -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    max2, indices = F.max_pool2d(x, 2, 2, return_indices=True)
    mixed_train = tp.mixed_pool2d(x, 2, training=True, generator=generator())
    drew = "max" if torch.equal(mixed_train, max2) else "avg"
    noisy = _salt_and_pepper(x, noise, generator())
    ops: list[tuple[str, Callable[[], Tensor]]] = [
        ("original", lambda: x),
        ("max 2x2", lambda: max2),
        ("avg 2x2", lambda: F.avg_pool2d(x, 2)),
        ("max 3x3 stride 2 (overlap)", lambda: F.max_pool2d(x, 3, 2)),
        (
            f"stochastic 2x2, train (seed {seed})",
            lambda: tp.stochastic_pool2d(x, 2, training=True, generator=generator()),
        ),
        ("stochastic 2x2, eval", lambda: tp.stochastic_pool2d(x, 2, training=False)),
        ("median 3x3 stride 1", lambda: tp.median_pool2d(x, 3, 1, 1)),
        ("median 3x3 stride 2", lambda: tp.median_pool2d(x, 3, 2, 1)),
        ("avgmax 2x2 (avg+max)/2", lambda: tp.avgmax_pool2d(x, 2)),
        ("mixed 2x2, eval", lambda: tp.mixed_pool2d(x, 2, training=False)),
        (f"mixed 2x2, train (drew {drew})", lambda: mixed_train),
        ("max 2x2 -> max_unpool2d", lambda: tp.max_unpool2d(max2, indices, 2, output_size=x.shape[2:])),
        (f"salt & pepper {noise:.0%}", lambda: noisy),
        ("noisy -> median 3x3 s1", lambda: tp.median_pool2d(noisy, 3, 1, 1)),
        ("noisy -> max 3x3 s1", lambda: F.max_pool2d(noisy, 3, 1, 1)),
        ("noisy -> avg 3x3 s1", lambda: F.avg_pool2d(noisy, 3, 1, 1, count_include_pad=False)),
        *_beyond_the_survey(x, seed),
    ]
    panels = []
    with torch.no_grad():
        for title, op in ops:
            image = op()[0].clamp(0.0, 1.0)
            height, width = image.shape[1:]
            panels.append(Panel(f"{title}\n{height}x{width}", image))
    return panels


def save_grid(panels: list[Panel], out: str, columns: int = 4) -> None:
    """Writes the panels as a labelled grid PNG (matplotlib, Agg backend).

    Every panel is drawn at the same display size with nearest-neighbour interpolation, so the
    pooled (smaller) outputs show their blocks.

    Args:
        panels: the images and titles.
        out: the PNG path.
        columns: panels per row.
    """
    plt = _import_pyplot()
    rows = -(-len(panels) // columns)
    height, width = panels[0].image.shape[1:]
    aspect = height / width
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.2 * columns, 3.2 * aspect * rows + 0.55 * rows), squeeze=False
    )
    for axis in axes.flat:
        axis.axis("off")
    for axis, panel in zip(axes.flat, panels):
        image = panel.image.permute(1, 2, 0).numpy()
        axis.imshow(image, interpolation="nearest", vmin=0.0, vmax=1.0)
        axis.set_title(panel.title, fontsize=9)
    figure.suptitle(f"torchpool gallery: every windowed pool, per RGB channel ({height}x{width} input)")
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``torchpool gallery``'s options to ``parser``.

    Args:
        parser: the subcommand's parser.
    """
    parser.add_argument("--image", default=None, help="photo to pool (default: scikit-learn's china.jpg)")
    parser.add_argument("--out", default="torchpool-gallery.png", help="PNG to write")
    parser.add_argument(
        "--size", type=int, default=128, help="downscale so the short side is SIZE pixels (0: keep)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the stochastic/mixed draws and the noise"
    )


def validate_arguments(args: argparse.Namespace) -> None:
    """Checks every option of ``torchpool gallery`` before any work.

    Args:
        args: the parsed options of :func:`add_arguments`.

    Raises:
        ValueError: naming the first bad option and what it expects.
        RuntimeError: if matplotlib is missing.
    """
    if args.size < 0:
        raise ValueError(f"--size must be >= 0 (0 keeps the photo's size), got {args.size}")
    if not -(2**63) <= args.seed < 2**64:
        raise ValueError(f"--seed must be in -2**63..2**64-1 (a torch seed), got {args.seed}")
    if args.image is not None:
        image = Path(args.image)
        if not image.exists():
            raise ValueError(f"cannot read image {args.image!r} given to --image: no such file")
        if not image.is_file():
            raise ValueError(f"cannot read image {args.image!r} given to --image: not a file")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {args.out} is a folder; expected a file name such as gallery.png")
    suffix = out.suffix.lower().lstrip(".")
    if suffix:
        _import_pyplot()
        from matplotlib.figure import Figure

        formats = sorted(Figure().canvas.get_supported_filetypes())
        if suffix not in formats:
            raise ValueError(
                f"--out {args.out}: matplotlib cannot write .{suffix} files; use one of {formats}"
            )
    folder = out.parent
    if not folder.is_dir():
        raise ValueError(f"--out {args.out}: the folder {folder} does not exist")
    try:
        probe, name = tempfile.mkstemp(prefix=".torchpool-probe-", dir=folder)
        os.close(probe)
        os.unlink(name)
    except OSError as error:
        raise ValueError(f"--out {args.out} is not writable: {error.strerror or error}") from None


def run(args: argparse.Namespace) -> int:
    """Writes the gallery PNG; returns 0, or 2 with a message on an error.

    Every option is checked (:func:`validate_arguments`) before the photo is read.

    Args:
        args: the parsed options of :func:`add_arguments`.

    Returns:
        The exit status.
    """
    try:
        validate_arguments(args)
        x = load_image(args.image, args.size)
        if min(x.shape[2:]) < 4:
            raise ValueError(f"the image is too small to pool ({x.shape[2]}x{x.shape[3]}); use --size >= 4")
        panels = make_panels(x, args.seed)
        save_grid(panels, args.out)
    except (RuntimeError, ValueError, OSError) as error:
        print(f"torchpool gallery: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(panels)} panels, input {x.shape[2]}x{x.shape[3]})")
    return 0
