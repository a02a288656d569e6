"""One :class:`~op_record.PoolRecord` per registered pool, one file per family.

A new pool adds its record to its family's file here (or a new family file, found by its
name: :data:`FAMILIES`); ``tests/test_ops.py`` fails while a registered pool has no record, and the
walks fail on it naming the file (:func:`get_record`). A record names the pool, its docs page,
its degenerate-input policy and semantics and how it computes in half precision; everything
else has a default (no known exception, deterministic, not random)::

    PoolRecord(
        "soft2d",
        "soft",  # docs/soft.md
        {**AVG, "1x1": WINDOW_TOO_BIG},  # what test_degenerate.py asserts, case by case
        Semantics("soft", 1, True, kernel),
        "float32 (torchpool)",
    )

Every generic test and doc renderer reads these records: ``test_degenerate.py``
(``docs/degenerate.md``), ``test_precision.py`` and ``test_export_compile.py``
(``docs/support.md``, the README feature table), ``test_cuda.py`` and ``test_docs.py``. The
float64 reference and sample cases of an op are its ``OpRecord`` (``op_table.py`` for the first
families, else the family file's ``OPS``), named after the pool (``op_table.OPS_BY_POOL``).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from op_record import PoolRecord

import torchpool as tp


def _family_modules() -> dict[str, ModuleType]:
    """Every ``records/<family>.py`` (files starting with ``_`` are helpers), by family name: the
    module's ``FAMILY`` where it differs from the file name (``standard.py`` is ``max/avg``), else
    the file name without a trailing ``_`` (``global_.py`` is ``global``)."""
    modules = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            modules[str(getattr(module, "FAMILY", info.name.rstrip("_")))] = module
    return modules


#: family (``PoolInfo.family``) -> the module holding its records (found by :func:`_family_modules`).
FAMILIES = _family_modules()


def _collect() -> tuple[dict[str, PoolRecord], list[str]]:
    pools: dict[str, PoolRecord] = {}
    duplicates = []
    for module in FAMILIES.values():
        for record in module.RECORDS:
            if record.name in pools:
                duplicates.append(record.name)
            pools[record.name] = record
    return pools, duplicates


#: registry name -> record.
POOLS, DUPLICATES = _collect()


class MissingRecordError(LookupError):
    """A registered pool has no record."""


def get_record(name: str) -> PoolRecord:
    """The record of the registered pool ``name``; a clear error naming the file to add it to."""
    if name not in POOLS:
        family = {info.name: info.family for info in tp.list_pools()}.get(name, "")
        raise MissingRecordError(f"no PoolRecord for the pool {name!r}: add one to {record_file(family)}")
    return POOLS[name]


def record_file(family: str) -> str:
    """Where the records of ``family`` live (for messages)."""
    module = FAMILIES.get(family)
    return (
        f"tests/records/{module.__name__.rsplit('.', 1)[-1]}.py"
        if module
        else "a new tests/records/<family>.py"
    )
