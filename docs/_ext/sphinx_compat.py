"""Griffe extension used by the docs build only (mkdocs.yml -> mkdocstrings -> extensions).

torchpool's docstrings are Google style with two Sphinx/PyTorch habits that griffe's Google
parser does not know:

* a singular ``Example:`` section (griffe only recognises ``Examples:``, so the doctest lines
  would be rendered as Markdown blockquotes); it is renamed to ``Examples:`` here;
* Sphinx roles such as ``:func:`torch.median``` which would show up literally; they are turned
  into plain inline code.

It also makes every public class show its real ``__init__`` signature, types and defaults:

* private base classes (``_MedianPoolNd``) are kept in the loaded tree (the ``filters`` option
  hides them), so the public Modules that inherit their ``__init__`` get its parameters;
* a class whose ``__init__`` comes from outside torchpool (``nn.AdaptiveAvgPool2d``) gets an
  ``__init__`` built from the runtime signature;
* a class whose docstring has no ``Args:`` section (the Modules made by a factory, whose
  docstring says "arguments as for the function") gets one, with the descriptions taken from
  the function its docstring names (``Module form of :func:`avgmax_pool2d```) or from its
  base classes' docstrings, so the parameter table lists every parameter with its type and
  default.

The source files are not changed; the docstring text is rewritten in memory before griffe
parses it.

The docs inspect torchpool at runtime (``force_inspection: true``) because many of its public
functions and Modules are made by factories (``median_pool2d = _function(2)`` style) that static
analysis cannot see.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from typing import Any, cast

import griffe

# Runtime inspection gives a module or class constant (``NETWORK_MAX_OPS = 600``) the docstring of
# its value's type (``int.__doc__``); those are dropped.
_BUILTIN_DOCS = {
    inspect.cleandoc(t.__doc__ or "")
    for t in (int, float, str, bool, bytes, tuple, list, dict, set, frozenset, type(None))
}

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc|const|math):`~?([^`]+)`")
_FUNC_ROLE = re.compile(r":func:`~?([A-Za-z_][A-Za-z_0-9.]*)`")
_ARGS_HEADER = re.compile(r"^(Args|Arguments|Parameters|Params):\s*$")
_DESCRIBED = re.compile(r"^(Args|Arguments|Parameters|Params|Attributes):\s*$")  # a dataclass's fields
_ARG_LINE = re.compile(r"^(\s+)\*{0,2}([A-Za-z_][A-Za-z_0-9]*)(?:\s*\([^)]*\))?:\s*(.*)$")
# the first section after the summary and the Args section, where a missing Args section goes
_SECTION = re.compile(
    r"^(Shape|Examples?|Returns|Yields|Raises|Notes?|Warnings?|Attributes|References|See Also):\s*$"
)


def rewrite(text: str) -> str:
    """Returns ``text`` with ``Example:`` renamed and Sphinx roles made plain code."""
    text = _EXAMPLE.sub(r"\1Examples:", text)
    return _ROLE.sub(r"`\1`", text)


def google_args(doc: str | None) -> dict[str, str]:
    """Returns ``{name: description}`` from the ``Args:`` (or ``Attributes:``) sections of a docstring."""
    args: dict[str, str] = {}
    inside = False
    indent = -1
    current = ""
    for line in inspect.cleandoc(doc or "").splitlines():
        if _DESCRIBED.match(line):
            inside, indent, current = True, -1, ""
            continue
        if not inside or not line.strip():
            continue
        if not line.startswith((" ", "\t")):  # the next section
            inside = False
            continue
        match = _ARG_LINE.match(line)
        if match and indent in (-1, len(match.group(1))):
            indent, current = len(match.group(1)), match.group(2)
            args[current] = match.group(3).strip()
        elif current:
            args[current] = f"{args[current]} {line.strip()}".strip()
    return args


def _annotation(annotation: Any) -> str | None:
    """An annotation as Python 3.10 source: ``int | None``, not ``typing.Union[int, NoneType]``."""
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        return annotation
    if annotation is type(None):
        return "None"
    if typing.get_origin(annotation) is typing.Union:
        return " | ".join(_annotation(arg) or "" for arg in typing.get_args(annotation))
    text = repr(annotation)
    if "<" in text:  # a class: <class 'int'>
        return str(getattr(annotation, "__qualname__", text))
    return text.replace("typing.", "").replace("NoneType", "None")


def _default(default: Any) -> str | None:
    if default is inspect.Parameter.empty:
        return None
    return default.__name__ if hasattr(default, "__name__") else repr(default)


def _init_from_runtime(runtime: type) -> griffe.Function | None:
    """An ``__init__`` griffe function with the runtime signature of ``runtime.__init__``."""
    init = cast(Any, runtime).__init__
    if init is object.__init__:
        return None
    try:
        signature = inspect.signature(init)
    except (TypeError, ValueError):
        return None
    kinds: dict[Any, str] = {
        inspect.Parameter.POSITIONAL_ONLY: "positional-only",
        inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional or keyword",
        inspect.Parameter.VAR_POSITIONAL: "variadic positional",
        inspect.Parameter.KEYWORD_ONLY: "keyword-only",
        inspect.Parameter.VAR_KEYWORD: "variadic keyword",
    }
    parameters = griffe.Parameters(
        *[
            griffe.Parameter(
                p.name,
                annotation=_annotation(p.annotation),
                kind=griffe.ParameterKind(kinds[p.kind]),
                default=_default(p.default),
            )
            for p in signature.parameters.values()
        ]
    )
    return griffe.Function("__init__", parameters=parameters, analysis="dynamic")


def _descriptions(runtime: type) -> dict[str, str]:
    """Parameter descriptions for ``runtime`` from the function its docstring names, then its bases."""
    found: dict[str, str] = {}
    sources: list[Any] = []
    match = _FUNC_ROLE.search(runtime.__doc__ or "")
    if match:
        module = sys.modules.get(runtime.__module__)
        sources.append(getattr(module, match.group(1).rpartition(".")[2], None))
    for klass in runtime.__mro__:
        sources += [klass, klass.__dict__.get("__init__")]
    for source in sources:
        for name, text in google_args(getattr(source, "__doc__", None)).items():
            found.setdefault(name, text)
    return found


def _args_section(runtime: type) -> str:
    """A Google ``Args:`` section for ``runtime.__init__``'s parameters ("" when it takes none)."""
    try:
        parameters = list(inspect.signature(runtime).parameters.values())
    except (TypeError, ValueError):
        return ""
    names = [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not names:
        return ""
    descriptions = _descriptions(runtime)
    lines = ["Args:"]
    lines += [f"    {name}: {descriptions.get(name) or 'see the description above.'}" for name in names]
    return rewrite("\n".join(lines))


def _insert_section(text: str, section: str) -> str:
    """Puts ``section`` before the first Shape/Examples/... section of ``text`` (or at its end)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if i > 0 and _SECTION.match(line):
            return "\n".join([*lines[:i], *section.splitlines(), "", *lines[i:]])
    return f"{text.rstrip()}\n\n{section}"


class SphinxCompat(griffe.Extension):
    """Rewrites every loaded docstring with `rewrite`, keeps only exported (or private) module
    members, and completes public classes' signatures and parameter sections."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        if obj.is_attribute and inspect.cleandoc(obj.docstring.value) in _BUILTIN_DOCS:
            obj.docstring = None
            return
        obj.docstring.value = rewrite(obj.docstring.value)

    def on_class_members(self, *, node: Any, cls: griffe.Class, **kwargs: Any) -> None:
        """Gives a public class its runtime ``__init__`` signature and an ``Args:`` section."""
        runtime = getattr(node, "obj", None)
        if not inspect.isclass(runtime) or cls.name.startswith("_"):
            return
        init_module = getattr(runtime.__init__, "__module__", None) or ""
        if "__init__" not in cls.members and not init_module.startswith("torchpool"):
            init = _init_from_runtime(runtime)
            if init is not None:
                cls.set_member("__init__", init)
        if cls.docstring is None:
            return
        if any(_ARGS_HEADER.match(line) for line in cls.docstring.value.splitlines()):
            return
        section = _args_section(runtime)
        if section:
            cls.docstring.value = _insert_section(cls.docstring.value, section)

    def on_module_members(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        """Keeps only the names in ``__all__`` (runtime inspection also sees imported helpers)."""
        if mod.exports is None or mod.is_init_module:
            return
        exported = {name if isinstance(name, str) else name.name for name in mod.exports}
        # private names stay: the ``filters`` option hides them anyway, and the private base classes
        # (``_MedianPoolNd``) hold the ``__init__`` that the public Modules inherit; without them
        # griffe cannot resolve it and the class loses its signature, types and defaults
        for name in [name for name in mod.members if name not in exported and not name.startswith("_")]:
            del mod.members[name]
