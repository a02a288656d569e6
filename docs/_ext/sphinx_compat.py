"""Griffe extension used by the docs build only (mkdocs.yml -> mkdocstrings -> extensions).

torchpool's docstrings are Google style with two Sphinx/PyTorch habits that griffe's Google
parser does not know:

* a singular ``Example:`` section (griffe only recognises ``Examples:``, so the doctest lines
  would be rendered as Markdown blockquotes); it is renamed to ``Examples:`` here;
* Sphinx roles such as ``:func:`torch.median``` which would show up literally; they are turned
  into plain inline code.

The source files are not changed; the docstring text is rewritten in memory before griffe
parses it.

The docs inspect torchpool at runtime (``force_inspection: true``) because many of its public
functions and Modules are made by factories (``median_pool2d = _function(2)`` style) that static
analysis cannot see.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import griffe

# Runtime inspection gives a module or class constant (``NETWORK_MAX_OPS = 600``) the docstring of
# its value's type (``int.__doc__``); those are dropped.
_BUILTIN_DOCS = {
    inspect.cleandoc(t.__doc__ or "")
    for t in (int, float, str, bool, bytes, tuple, list, dict, set, frozenset, type(None))
}

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc|const):`~?([^`]+)`")


def rewrite(text: str) -> str:
    """Returns ``text`` with ``Example:`` renamed and Sphinx roles made plain code."""
    text = _EXAMPLE.sub(r"\1Examples:", text)
    return _ROLE.sub(r"`\1`", text)


class SphinxCompat(griffe.Extension):
    """Rewrites every loaded docstring with `rewrite` and keeps only exported module members."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        if obj.is_attribute and inspect.cleandoc(obj.docstring.value) in _BUILTIN_DOCS:
            obj.docstring = None
            return
        obj.docstring.value = rewrite(obj.docstring.value)

    def on_module_members(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        """Keeps only the names in ``__all__`` (runtime inspection also sees imported helpers)."""
        if mod.exports is None or mod.is_init_module:
            return
        exported = {name if isinstance(name, str) else name.name for name in mod.exports}
        for name in [name for name in mod.members if name not in exported]:
            del mod.members[name]
