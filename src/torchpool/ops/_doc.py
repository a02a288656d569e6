"""The one docstring-template helper: rank-specific functions and Modules share one text.

Every ``<op>1d``/``<op>2d``/``<op>3d`` is a short explicit ``def`` (or ``class``) over a
rank-generic private function, so type checkers and IDEs see its real signature; its docstring
is one template filled per rank with :func:`rank_doc`. The template is formatted with
``str.format``: write literal braces as ``{{`` and ``}}``.

The standard fields, computed from ``n``:

* ``{n}``: the spatial rank (1, 2 or 3);
* ``{dims}``: the spatial dimension names, e.g. ``H, W``; ``{out_dims}``: the output ones,
  e.g. ``H_out, W_out``;
* ``{shape}``: the input shape with batch, e.g. ``(N, C, H, W)``; ``{out_shape}``: the output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["rank_doc", "rank_fields"]

_Documented = TypeVar("_Documented", bound=Callable[..., object])

_DIMS = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def rank_fields(n: int) -> dict[str, object]:
    """The standard template fields for spatial rank ``n``.

    Example:
        >>> rank_fields(2)["shape"]
        '(N, C, H, W)'
    """
    if n not in _DIMS:
        raise ValueError(f"n must be 1, 2 or 3, got {n!r}")
    dims = _DIMS[n]
    out_dims = tuple(f"{d}_out" for d in dims)
    return {
        "n": n,
        "dims": ", ".join(dims),
        "out_dims": ", ".join(out_dims),
        "shape": f"(N, C, {', '.join(dims)})",
        "out_shape": f"(N, C, {', '.join(out_dims)})",
    }


def rank_doc(template: str, n: int, **fields: object) -> Callable[[_Documented], _Documented]:
    """Decorator: set ``__doc__`` to ``template`` filled for rank ``n`` and ``fields``.

    The decorated function or class is returned unchanged otherwise, so its signature and type
    stay exactly what the ``def``/``class`` says.

    Example:
        >>> @rank_doc("Pools {n}-d input {shape}; {what}.", 2, what="a demo")
        ... def demo_pool2d(x: int) -> int:
        ...     return x
        >>> demo_pool2d.__doc__
        'Pools 2-d input (N, C, H, W); a demo.'
    """
    text = template.format(**{**rank_fields(n), **fields})

    def document(target: _Documented) -> _Documented:
        target.__doc__ = text
        return target

    return document
