"""Every public function and Module has its real signature (issue 13): explicit defs and classes.

A function made by a closure factory, or a class made by ``type()``, shows a real signature to
``inspect`` (which follows ``__wrapped__`` and the inner function) but not to type checkers: mypy
sees ``def (*Any, **Any)`` or ``type[Module]``. So each public name must be defined by its own
``def``/``class`` statement under its own name, take ``Tensor`` first, take no ``*args`` or
``**kwargs``, and document its Shape with an example; and mypy must catch a wrong call.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import torchpool.functional as tpf
import torchpool.nn as tpnn

# helpers in ``torchpool.functional`` that are not pools (their first argument is not a tensor)
NOT_POOLS = {"pool_output_size"}
# names other helpers are converting to the explicit pattern right now; remove each once it passes
BEING_CONVERTED: set[str] = set()
TENSOR_ANNOTATIONS = (Tensor, "Tensor", "torch.Tensor")

FUNCTIONS = [name for name in tpf.__all__ if name not in NOT_POOLS]
MODULES = list(tpnn.__all__)


def _param(name: str) -> object:
    if name in BEING_CONVERTED:
        return pytest.param(
            name, marks=pytest.mark.xfail(reason="being converted in issue 13", strict=True), id=name
        )
    return pytest.param(name, id=name)


def _defined_by_own_statement(obj: Callable[..., object], name: str) -> bool:
    """Whether ``obj``'s source is a ``def name(``/``class name(`` statement (decorators allowed)."""
    try:
        source = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        return False
    statement = ast.parse(source).body[0]
    return isinstance(statement, (ast.FunctionDef, ast.ClassDef)) and statement.name == name


def _own_name(module: object, name: str) -> str:
    """``name``, or the public name it is an alias of (``spatial_pyramid_pool`` -> ``..._pool2d``)."""
    obj = getattr(module, name)
    target = getattr(obj, "__name__", name)
    return target if getattr(module, target, None) is obj else name


def _no_var_parameters(signature: inspect.Signature) -> bool:
    kinds = {parameter.kind for parameter in signature.parameters.values()}
    return not kinds & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}


def _documents_shape_with_example(doc: str | None) -> bool:
    return doc is not None and "Shape:" in doc and ">>>" in doc


@pytest.mark.parametrize("name", [_param(name) for name in FUNCTIONS])
def test_function_has_real_signature(name: str) -> None:
    function = getattr(tpf, name)
    own = _own_name(tpf, name)
    assert _defined_by_own_statement(function, own), f"{name} is not defined by its own `def {own}(`"
    signature = inspect.signature(function)
    assert _no_var_parameters(signature), f"{name}{signature} takes *args or **kwargs"
    first = next(iter(signature.parameters.values()))
    assert first.annotation in TENSOR_ANNOTATIONS, f"{name}: first parameter is {first}, not a Tensor"
    assert _documents_shape_with_example(function.__doc__), f"{name}: no Shape section or example"


@pytest.mark.parametrize("name", [_param(name) for name in MODULES])
def test_module_has_real_signature(name: str) -> None:
    cls = getattr(tpnn, name)
    assert inspect.isclass(cls) and issubclass(cls, nn.Module), name
    own = _own_name(tpnn, name)
    assert _defined_by_own_statement(cls, own), f"{name} is not defined by its own `class {own}(`"
    assert _no_var_parameters(inspect.signature(cls)), f"{name}{inspect.signature(cls)} takes *args/**kwargs"
    forward = inspect.signature(cls.forward)
    assert _no_var_parameters(forward), f"{name}.forward{forward} takes *args or **kwargs"
    first = list(forward.parameters.values())[1]  # after self
    assert first.annotation in TENSOR_ANNOTATIONS, f"{name}.forward: first parameter is {first}"
    assert _documents_shape_with_example(cls.__doc__), f"{name}: no Shape section or example"


def test_the_check_catches_a_factory() -> None:
    """A closure-made function with a patched name, as the factories wrote them, is refused."""

    def factory(ndim: int) -> Callable[..., Tensor]:
        def pool(x: Tensor, kernel_size: int) -> Tensor:
            """Shape: ``(N, C, L)``.

            >>> 1
            1
            """
            return x

        pool.__name__ = pool.__qualname__ = f"demo_pool{ndim}d"
        return pool

    assert not _defined_by_own_statement(factory(2), "demo_pool2d")
    assert _defined_by_own_statement(_defined_by_own_statement, "_defined_by_own_statement")


MYPY_GOOD = """
import torch
import torchpool as tp

x = torch.ones(2, 3, 8, 8)
a: torch.Tensor = tp.avgmax_pool2d(x, 2, 2, 0, False, True, dilation=1)
b: torch.Tensor = tp.catavgmax_pool1d(torch.ones(1, 2, 8), kernel_size=2)
c: torch.Tensor = tp.adaptive_catavgmax_pool3d(torch.ones(1, 2, 4, 4, 4), 1)
d: torch.Tensor = tp.mixed_pool2d(x, 2, training=False, max_probability=0.3)
e: torch.Tensor = tp.adaptive_avg_pool2d(x, (2, None))
f: tuple[torch.Tensor, torch.Tensor] = tp.functional.adaptive_max_pool2d(x, 2, True)
g: torch.Tensor = tp.functional.adaptive_max_pool2d(x, 2)
y, idx = torch.nn.functional.max_pool2d(x, 2, return_indices=True)
h: torch.Tensor = tp.max_unpool2d(y, idx, 2, output_size=(8, 8), reduce="sum")
pool: tp.AvgMaxPool2d = tp.AvgMaxPool2d(2, ceil_mode=True)
mixed: tp.MixedPool3d = tp.MixedPool3d(2, max_probability=0.2)
unpool: tp.MaxUnpool1d = tp.MaxUnpool1d(2, reduce="mean")
gem: torch.Tensor = tp.gem(x, 3.0, flatten=False)
"""

MYPY_BAD = """
import torchpool as tp

tp.avgmax_pool2d("not a tensor", kernel="x")
"""


def _mypy(tmp_path: Path, source: str) -> tuple[str, int]:
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(source), encoding="utf-8")
    stdout, stderr, status = api.run(["--strict", "--no-error-summary", str(snippet)])
    return stdout + stderr, status


@pytest.mark.slow
def test_mypy_sees_real_signatures(tmp_path: Path) -> None:
    report, status = _mypy(tmp_path, MYPY_GOOD)
    assert status == 0, report
    report, status = _mypy(tmp_path, MYPY_BAD)
    assert status == 1, report
    assert 'Unexpected keyword argument "kernel" for "avgmax_pool2d"' in report, report
    assert 'Argument 1 to "avgmax_pool2d" has incompatible type "str"' in report, report


def test_tensor_is_torch_tensor() -> None:
    """The annotations compared above name the same class as ``torch.Tensor``."""
    assert Tensor is torch.Tensor
