"""The public names: one list per module, every name documented, nothing public left unlisted.

``torchpool.__all__`` is the helpers listed in ``torchpool/__init__.py`` plus
``torchpool.functional.__all__`` (every function) plus ``torchpool.nn.__all__`` (every Module).
A name is documented when the API reference renders it: a ``::: path`` directive in a
``docs/*.md`` page names it, or names a module that mkdocstrings renders it as a member of (an
object defined in that module, or imported there and listed in its ``__all__``; names starting
with ``_`` are filtered out, as ``mkdocs.yml`` says).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pytest
from torch import nn

import torchpool
import torchpool.functional
import torchpool.nn
from torchpool.registry import list_pools

DOCS = Path(__file__).resolve().parents[1] / "docs"
DIRECTIVE = re.compile(r"^::: *([\w.]+)\s*$", re.M)
# run as a program, not imported: importing it would run the command line
NOT_IMPORTED = {"torchpool.__main__"}


def _modules() -> list[ModuleType]:
    names = [torchpool.__name__] + [
        info.name
        for info in pkgutil.walk_packages(torchpool.__path__, prefix="torchpool.")
        if info.name not in NOT_IMPORTED
    ]
    return [importlib.import_module(name) for name in names]


def _resolve(path: str) -> object:
    """The object a ``:::`` directive names (a module, or an attribute of one)."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError:
        module, _, attribute = path.rpartition(".")
        return getattr(importlib.import_module(module), attribute)


def _rendered(module: ModuleType) -> list[object]:
    """The members mkdocstrings renders on a ``::: module`` page."""
    exported = set(getattr(module, "__all__", ()))
    members = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if getattr(value, "__module__", None) == module.__name__ or name in exported:
            members.append(value)
    return members


def _documented() -> list[object]:
    objects: list[object] = []
    for page in sorted(DOCS.glob("*.md")):
        for path in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            target = _resolve(path)
            objects.append(target)
            if isinstance(target, ModuleType):
                objects.extend(_rendered(target))
    return objects


def _ours(value: object) -> bool:
    """A function or class defined in torchpool."""
    defined = inspect.isfunction(value) or inspect.isclass(value)
    return defined and str(getattr(value, "__module__", "")).startswith("torchpool")


def test_every_public_name_exists_once_and_has_a_docstring() -> None:
    names = torchpool.__all__
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    missing = [name for name in names if not hasattr(torchpool, name)]
    assert not missing, f"listed in torchpool.__all__ but not defined: {missing}"
    undocumented = [
        name
        for name in names
        if name != "__version__" and not (inspect.getdoc(getattr(torchpool, name)) or "").strip()
    ]
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_every_public_name_is_in_the_api_reference() -> None:
    documented = _documented()
    pages = " ".join(page.read_text(encoding="utf-8") for page in DOCS.glob("*.md"))
    missing = []
    for name in torchpool.__all__:
        value = getattr(torchpool, name)
        if name == "__version__":
            continue
        if isinstance(value, ModuleType):  # torchpool.functional, torchpool.nn: named by the docs
            if f"`{value.__name__}`" not in pages:
                missing.append(name)
        elif not any(value is other for other in documented):
            missing.append(name)
    assert not missing, (
        "public names the API reference does not render (add a `::: path` to a docs page, "
        f"or list the name in the __all__ of a module a page renders): {missing}"
    )


@pytest.mark.parametrize("module", _modules(), ids=lambda module: module.__name__)
def test_every_public_function_and_class_is_listed(module: ModuleType) -> None:
    """What a module defines is in its ``__all__`` or private (a leading underscore).

    A private module (``torchpool._checks``, ``ops/median/_kernels``) lists in ``__all__`` the
    helpers that other modules of torchpool import from it; a module that defines nothing
    public needs no ``__all__``.
    """
    listed = set(getattr(module, "__all__", ()))
    unlisted = sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and _ours(value)
        and getattr(value, "__module__", None) == module.__name__
        and name not in listed
    )
    assert not unlisted, (
        f"{module.__name__}: public but not in __all__ (list it or prefix it with _): {unlisted}"
    )
    absent = sorted(name for name in listed if not hasattr(module, name))
    assert not absent, f"{module.__name__}.__all__ lists undefined names: {absent}"


def test_the_top_level_lists_every_public_function_and_class() -> None:
    listed = set(torchpool.__all__)
    unlisted = sorted(
        name
        for name, value in vars(torchpool).items()
        if not name.startswith("_") and _ours(value) and name not in listed
    )
    assert not unlisted, f"reachable as torchpool.NAME but not in torchpool.__all__: {unlisted}"


def test_functional_and_nn_partition_the_pools() -> None:
    functions, modules = torchpool.functional.__all__, torchpool.nn.__all__
    assert not set(functions) & set(modules)
    for name in functions:
        value = getattr(torchpool.functional, name)
        assert inspect.isfunction(value) and _ours(value), f"torchpool.functional.{name} is not a function"
    for name in modules:
        value = getattr(torchpool.nn, name)
        assert inspect.isclass(value) and issubclass(value, nn.Module) and _ours(value), name
    # the top level is the helpers, then every function, then every Module, each name once
    top = torchpool.__all__
    assert top[len(top) - len(functions) - len(modules) :] == [*functions, *modules]
    helpers = top[: len(top) - len(functions) - len(modules)]
    assert not set(helpers) & (set(functions) | set(modules))
    for name in [*functions, *modules]:
        assert getattr(torchpool, name) is getattr(
            torchpool.functional if name in functions else torchpool.nn, name
        )
    # every pool class the registry builds is a Module of torchpool.nn
    ours = {
        info.name: info.builder
        for info in list_pools()
        if inspect.isclass(info.builder) and _ours(info.builder)
    }
    classes = {getattr(torchpool.nn, name) for name in modules}
    strays = sorted(name for name, builder in ours.items() if builder not in classes)
    assert not strays, f"registered pools whose class is not in torchpool.nn.__all__: {strays}"
