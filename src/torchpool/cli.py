"""Command line: ``torchpool list``, ``kernels``, ``compare``, ``gallery``, ``shape``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__
from .registry import list_pools

__all__ = ["format_pool_table", "main", "resolve_family"]

EXIT_USAGE = 2  # bad arguments or data: the message says which option
EXIT_INTERRUPTED = 130  # stopped with Ctrl-C (128 + SIGINT), as shells report it

# subcommands implemented in torchpool.lab.<name>: add_arguments(parser) and run(args) -> int
_LAB_COMMANDS: dict[str, str] = {
    "compare": "test the survey's claims: a small CNN per pooling variant, paired seeds, 95% intervals",
    "gallery": "apply every windowed pool to a photo and write a labelled PNG grid",
    "shape": "print output sizes and receptive fields through a stack of layers",
}


def format_pool_table(family: str | None = None) -> str:
    """The registry as a fixed-width text table: name, family, dims, trainable, channel multiplier.

    Example:
        >>> print(format_pool_table("global").splitlines()[1])
        gem         global  1d,2d,3d  yes        1C            generalized mean (mean x^p)^(1/p), learnable p
    """
    header = ("name", "family", "dims", "trainable", "out channels", "description")
    rows = [
        (
            info.name,
            info.family,
            ",".join(f"{d}d" for d in info.dims),
            "yes" if info.trainable else "no",
            "varies" if info.channel_multiplier is None else f"{info.channel_multiplier}C",
            info.description,
        )
        for info in list_pools(family)
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


#: ops that take a second input besides the map (boxes, indices): not registry pools, since
#: ``create_pool(name)(x)`` cannot call them; ``torchpool list`` shows them in a section of their own.
#: (functional, Module, what it takes, description)
_TWO_INPUT_OPS: tuple[tuple[str, str, str, str], ...] = (
    (
        "roi_spatial_pyramid_pool",
        "RoISpatialPyramidPool",
        "features (N, C, H, W) + boxes Tensor[K, 5] or [Tensor[L_i, 4]]",
        "SPP on regions: each box into n x n bins per level, C * sum n^2 features "
        "(SPPNet's detection mode, He et al. 2014); one level is torchvision's roi_pool",
    ),
    *(
        (
            f"max_unpool{d}d",
            f"MaxUnpool{d}d",
            f"x + indices of max_pool{d}d(return_indices=True)",
            "max unpooling: the pooled values back at their recorded positions, zeros elsewhere",
        )
        for d in (1, 2, 3)
    ),
)


def _format_two_input_table() -> str:
    """The ops of :data:`_TWO_INPUT_OPS` as a fixed-width table under a heading saying why apart."""
    header = ("name", "module", "takes", "description")
    rows = [header, *_TWO_INPUT_OPS]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows
    ]
    heading = (
        "ops that take a second input (boxes, indices): not registry pools (create_pool cannot build them)"
    )
    count = f"{len(_TWO_INPUT_OPS)} ops with a second input"
    return "\n".join([heading, *(line.rstrip() for line in lines), "", count])


def _report_kernels() -> tuple[str, bool]:
    """Builds (or finds in the cache) every C kernel; returns a table of their states and whether
    all of them were built."""
    from . import _native

    lines, ok = [], True
    names = _native.kernel_names()
    width = max((len(name) for name in names), default=0)
    for name in names:
        library = _native.load(name)
        ok &= library is not None
        state = (
            f"built  {_native.built_path(name)}"
            if library is not None
            else f"NOT built: {_native.build_error(name)}"
        )
        lines.append(f"{name.ljust(width)}  {state}")
    built = sum(_native.built_path(name) is not None for name in names)
    lines.append(f"\n{built} of {len(names)} kernels built (cache: {_native.cache_dir()})")
    if not ok:
        lines.append("the ops whose kernel is not built run their pure-PyTorch path: same results, slower")
    return "\n".join(lines), ok


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``prog: error: message (prog --help ...)``."""

    def error(self, message: str) -> NoReturn:
        """Prints one line naming the problem and exits with status 2."""
        print(f"{self.prog}: error: {message} ({self.prog} --help lists the options)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def resolve_family(text: str) -> str:
    """The registry family ``text`` names: case-insensitive, ``max`` or ``avg`` for ``max/avg``.

    Args:
        text: a family name as a user types it, e.g. ``"Median"``, ``"max"``, ``"max/avg"``.

    Returns:
        The family exactly as the registry spells it.

    Raises:
        ValueError: if no family matches; the message lists the families.

    Example:
        >>> resolve_family("MAX"), resolve_family("Median")
        ('max/avg', 'median')
    """
    families = sorted({info.family for info in list_pools()})
    wanted = text.strip().lower()
    for family in families:
        if wanted == family.lower() or wanted in family.lower().split("/"):
            return family
    raise ValueError(
        f"--family must be one of {families} (any case; 'max' or 'avg' for 'max/avg'), got {text!r}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status.

    Bad arguments or data give status 2 and one line on stderr that names the option; a run
    stopped with Ctrl-C gives status 130 and one line. Errors found by the argument parser
    itself (an unknown option, a value that is not a number) raise ``SystemExit(2)`` after
    printing their one line, as ``argparse`` does.
    """
    parser = _Parser(prog="torchpool", description="Every pooling operation a CNN uses.")
    parser.add_argument("--version", action="version", version=f"torchpool {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    list_parser = commands.add_parser("list", help="print the table of every registered pool")
    list_parser.add_argument(
        "--family",
        default=None,
        help="only this family (any case, e.g. median, combined, max for max/avg)",
    )
    kernels_text = (
        "build the C kernels now (else on first use) and print where they are; exit status 1 if one "
        "could not be built (no C compiler, TORCHPOOL_NATIVE=0)"
    )
    commands.add_parser("kernels", help=kernels_text, description=kernels_text)
    for name, text in _LAB_COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        importlib.import_module(f"torchpool.lab.{name}").add_arguments(sub)
    args = parser.parse_args(argv)
    prog = f"torchpool {args.command}"
    try:
        if args.command in _LAB_COMMANDS:
            return int(importlib.import_module(f"torchpool.lab.{args.command}").run(args))
        if args.command == "kernels":
            table, ok = _report_kernels()
            print(table)
            return 0 if ok else 1
        family = None
        if args.family is not None:
            try:
                family = resolve_family(args.family)
            except ValueError as error:
                list_parser.error(str(error))
        print(format_pool_table(family))
        print(f"\n{len(list_pools(family))} pools")
        if family is None:  # a family names registry pools only
            print(f"\n{_format_two_input_table()}")
        return 0
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank is interrupted: say it once
            if sys.stdout.isatty():  # end a progress line rewritten in place
                print(file=sys.stdout)
            print(f"{prog}: interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (``torchpool list | head -1``): stop quietly
        with contextlib.suppress(OSError, ValueError):  # Python would complain again at exit's flush
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:  # a file or folder the user named: missing, not writable, full disk ...
        where = f": {error.filename}" if error.filename else ""
        print(f"{prog}: error: {error.strerror or error}{where}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
