"""The experiments behind ``torchpool compare``, ``torchpool gallery`` and ``torchpool shape``.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``; they import
their optional dependencies (matplotlib, scikit-learn) lazily, so ``import torchpool`` never
needs them.
"""
