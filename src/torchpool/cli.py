"""Command line: ``torchpool list``, ``compare``, ``gallery``, ``shape`` (or ``python -m torchpool``)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .registry import list_pools

__all__ = ["format_pool_table", "main"]

# subcommands implemented in torchpool.lab.<name>: add_arguments(parser) and run(args) -> int
_LAB_COMMANDS: dict[str, str] = {
    "compare": "train a small CNN per pooling variant and report which helps",
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


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="torchpool", description="Every pooling operation a CNN uses.")
    parser.add_argument("--version", action="version", version=f"torchpool {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    list_parser = commands.add_parser("list", help="print the table of every registered pool")
    list_parser.add_argument("--family", default=None, help="only this family (e.g. median, combined)")
    for name, text in _LAB_COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        importlib.import_module(f"torchpool.lab.{name}").add_arguments(sub)
    args = parser.parse_args(argv)
    if args.command in _LAB_COMMANDS:
        return int(importlib.import_module(f"torchpool.lab.{args.command}").run(args))
    if args.command == "list":
        families = {info.family for info in list_pools()}
        if args.family is not None and args.family not in families:
            parser.error(f"--family must be one of {sorted(families)}, got {args.family!r}")
        print(format_pool_table(args.family))
        print(f"\n{len(list_pools(args.family))} pools")
    return 0


if __name__ == "__main__":
    sys.exit(main())
