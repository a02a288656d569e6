"""torch.compile and ONNX coverage for EVERY registered pool, plus the support table.

The tests walk ``tp.list_pools()``, so a newly registered pool is covered automatically;
a pool that cannot compile or export must say so with its reason on its record
(``tests/records/<family>.py``, collected in the exception tables below), and the test for it
asserts that it still fails (strict), so ``docs/support.md`` (rendered from these tables by
:func:`support_rows`) stays true.

* compile: ``torch.compile(module, backend="aot_eager", fullgraph=True)`` (no graph break, no
  warning) vs eager, eval and train mode, forward and input gradient (rtol = atol = 1e-5,
  float32). Random pools (stochastic, mixed, fractional) are compared under the same global
  seed (a ``torch.Generator`` cannot enter a dynamo graph); ``generator=`` is checked
  separately, without ``fullgraph`` (it breaks the graph). ``torch.export.export`` of every pool
  (eval) runs and matches eager; ``torch._dynamo.explain`` counts no graph break for the pools
  that once had them. What still fails is listed with its reason in :data:`FULLGRAPH_XFAIL`
  (strict xfail: the entry must go when the pool is fixed). Every pool also goes through the
  default inductor
  backend (``@pytest.mark.slow``, 2-10 s a pool on 2 cores): in each mode where its
  output depends on the mode, otherwise in eval mode; all dims with
  ``TORCHPOOL_FULL_INDUCTOR=1``.
* ONNX: eval mode, ``torch.rand(2, 4, *[8] * dims)``, TorchScript exporter at opset 17
  first; where that fails (``ONNX_TORCHSCRIPT_FAILS``) the dynamo exporter (opset 18,
  needs ``onnxscript``); onnxruntime output must match eager (atol 1e-5).

Regenerate the doc with ``python tests/test_export_compile.py --write``.
"""

from __future__ import annotations

import inspect
import io
import os
import sys
import warnings
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from op_record import CHECKS
from records import POOLS, get_record
from torch import nn

import torchpool as tp

DOC = Path(__file__).resolve().parents[1] / "docs" / "support.md"
INFOS = tp.list_pools()
NAMES = {info.name for info in INFOS}
CASES = [pytest.param(info, d, id=f"{info.name}-{d}d") for info in INFOS for d in info.dims]
TOL: dict[str, Any] = {"rtol": 1e-5, "atol": 1e-5}
SEED = 1234

# ------------------------------------------------------------------ exception tables (on the records)

#: THE table of what does not work yet under ``torch.compile(fullgraph=True)`` / ``torch.export``:
#: ``(pool, check) -> reason`` with check ``"compile"`` (fullgraph aot_eager equal to eager, either
#: mode), ``"export"`` (``torch.export.export`` in eval mode, equal to eager) or ``"explain"`` (no
#: graph break), from the records' ``fullgraph_xfail``. Each entry makes its test a strict xfail, so
#: a fixed pool fails the run until its entry is removed; the table only shrinks. Empty: every
#: registered pool passes every check.
FULLGRAPH_XFAIL: dict[tuple[str, str], str] = {
    (name, check): reason
    for name, record in POOLS.items()
    for check, reason in record.fullgraph_xfail.items()
}

#: pools that do not compile (fullgraph aot_eager) or whose compiled output differs from eager.
COMPILE_EXCEPTIONS: dict[str, str] = {
    name: reason for (name, check), reason in FULLGRAPH_XFAIL.items() if check == "compile"
}

#: pools whose Module behaves differently in train and eval mode (inductor checks both modes).
TRAIN_DIFFERS: frozenset[str] = frozenset(name for name, record in POOLS.items() if record.train_differs)
FULL_INDUCTOR = os.environ.get("TORCHPOOL_FULL_INDUCTOR") == "1"

#: pools whose draws in training mode are random: compared under one seed / generator.
RANDOM_IN_TRAIN: frozenset[str] = frozenset(name for name, record in POOLS.items() if record.random_in_train)

#: pools the legacy TorchScript exporter (``dynamo=False``, opset 17) cannot export; they
#: must export with the dynamo exporter instead.
ONNX_TORCHSCRIPT_FAILS: dict[str, str] = {
    name: record.onnx_torchscript_fails for name, record in POOLS.items() if record.onnx_torchscript_fails
}

#: pools that export with neither exporter.
ONNX_EXCEPTIONS: dict[str, str] = {
    name: record.onnx_exception for name, record in POOLS.items() if record.onnx_exception
}


# ------------------------------------------------------------------ helpers


def _build(info: tp.PoolInfo) -> nn.Module:
    torch.manual_seed(0)  # same initial parameters for every build
    return tp.create_pool(info.name, **info.example_kwargs)


def _first(y: Any) -> torch.Tensor:
    out: torch.Tensor = y[0] if isinstance(y, tuple) else y
    return out


def _accepts_generator(module: nn.Module) -> bool:
    return "generator" in inspect.signature(module.forward).parameters


def _run(module: nn.Module, x: torch.Tensor, random: bool, gen_kw: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and input gradient, with the randomness pinned when ``random``."""
    x = x.clone().requires_grad_(True)
    kwargs: dict[str, Any] = {}
    if random:
        torch.manual_seed(SEED)
        if gen_kw:
            kwargs["generator"] = torch.Generator().manual_seed(SEED)
    y = _first(module(x, **kwargs))
    torch.autograd.backward((y.float() * torch.linspace(0.5, 1.5, y.numel()).reshape(y.shape)).sum())
    assert x.grad is not None
    return y.detach(), x.grad


def _check_compile(info: tp.PoolInfo, dims: int, mode: str, backend: str, fullgraph: bool = False) -> None:
    """Compiled vs eager, forward and input gradient. With ``fullgraph`` the randomness is pinned by
    the global seed (dynamo cannot trace a ``torch.Generator``) and a warning fails the check."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    module = _build(info).train(mode == "train")
    random = info.name in RANDOM_IN_TRAIN and (mode == "train" or get_record(info.name).random_in_eval)
    gen_kw = _accepts_generator(module) and not fullgraph
    x = torch.rand(2, 4, *[8] * dims, generator=torch.Generator().manual_seed(0))
    counter = CompileCounterWithBackend(backend)
    compiled = cast(nn.Module, torch.compile(module, backend=counter, fullgraph=fullgraph))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y_c, g_c = _run(compiled, x, random, gen_kw)
    if fullgraph:
        assert not caught, [str(w.message).splitlines()[0] for w in caught]
        assert counter.frame_count == 1, f"{counter.frame_count} graphs"
    y_e, g_e = _run(module, x, random, gen_kw)
    assert counter.frame_count >= 1, "dynamo captured nothing: the 'compiled' run was eager"
    torch.testing.assert_close(y_c, y_e, **TOL)
    torch.testing.assert_close(g_c, g_e, **TOL)
    torch._dynamo.reset()


def _ort_run(model_bytes: bytes, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (out, *_) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(out)


def _export_torchscript(module: nn.Module, x: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), cast(Any, buf), dynamo=False, opset_version=17)
    return buf.getvalue()


def _export_dynamo(module: nn.Module, x: torch.Tensor) -> bytes:
    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (x,), dynamo=True, opset_version=18, verbose=False)
    assert program is not None
    data: bytes = program.model_proto.SerializeToString()
    return data


def _check_onnx(module: nn.Module, x: torch.Tensor, exporter: str) -> None:
    model = (_export_torchscript if exporter == "torchscript" else _export_dynamo)(module, x)
    with torch.no_grad():
        expected = _first(module(x))
    torch.testing.assert_close(_ort_run(model, x), expected, rtol=1e-5, atol=1e-5)


def _onnx_status(name: str) -> str:
    if name in ONNX_EXCEPTIONS:
        return f"no: {ONNX_EXCEPTIONS[name]}"
    if name in ONNX_TORCHSCRIPT_FAILS:
        return f"yes (dynamo exporter only; TorchScript: {ONNX_TORCHSCRIPT_FAILS[name]})"
    return "yes (TorchScript, opset 17)"


# ------------------------------------------------------------------ support table


def support_rows() -> list[tuple[str, str, str, str, str, str, str]]:
    """One row per registered pool: name, family, dims, compile (fullgraph), inductor, ONNX, torch.export."""
    rows = []
    for info in INFOS:
        if info.name in COMPILE_EXCEPTIONS:
            comp = f"no: {COMPILE_EXCEPTIONS[info.name]}"
        elif info.name in RANDOM_IN_TRAIN:
            comp = "yes (train mode under a fixed seed)"
        else:
            comp = "yes"
        inductor = "yes (train and eval)" if info.name in TRAIN_DIFFERS else "yes"
        dims = ", ".join(f"{d}d" for d in info.dims)
        reason = FULLGRAPH_XFAIL.get((info.name, "export"))
        export = "yes" if reason is None else f"no: {reason}"
        rows.append((info.name, info.family, dims, comp, inductor, _onnx_status(info.name), export))
    return rows


def render_support_md() -> str:
    head = (
        "# Export and compile support\n\n"
        "Generated from `tests/test_export_compile.py` (`python tests/test_export_compile.py --write`);\n"
        "a test fails when this page and the tests disagree. Checked on torch 2.13 (CPU).\n\n"
        '- **compile (aot_eager)**: `torch.compile(module, backend="aot_eager", fullgraph=True)` (no\n'
        "  graph break, no warning) matches eager in eval and train mode, forward and input gradient,\n"
        "  rtol = atol = 1e-5, on `torch.rand(2, 4, *[8] * dims)` with each pool's example arguments.\n"
        "  Random pools are compared under one global seed (`torch.manual_seed`: dynamo cannot put a\n"
        "  `torch.Generator` in a graph); `generator=` is checked without `fullgraph`.\n"
        "- **torch.export**: `torch.export.export` of the eval module, run, matches eager.\n"
        "- **inductor**: the default inductor backend matches eager (forward and input gradient)\n"
        "  in eval mode, and in train mode too where the output depends on the mode.\n"
        "- **ONNX**: eval mode, exported and run in onnxruntime, outputs match eager (atol 1e-5).\n"
        "  The TorchScript exporter (`dynamo=False`, opset 17) is tried first; the dynamo exporter\n"
        "  (opset 18) needs `onnxscript`.\n"
        "- Adaptive pooling to an output size that does not divide the input (e.g. 7x7 -> 3x3)\n"
        "  exports with both exporters for torchpool's adaptive, adaptive avg+max and pyramid\n"
        "  pools (separable MatMul / Gather + ReduceMax while exporting); PyTorch's own\n"
        "  `nn.AdaptiveMaxPool2d` does not (pytorch#42653 / #64806), which a test asserts.\n"
        "- `max_unpool1d/2d/3d` (after a max pool with `return_indices=True`, overlapping windows)\n"
        "  export with both exporters (ONNX `ScatterElements` with `add`) and compile with\n"
        "  aot_eager and inductor; they are not registered pools, so they have their own tests.\n\n"
    )
    lines = [
        "| pool | family | dims | compile (aot_eager, fullgraph) | inductor | ONNX | torch.export |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in support_rows()]
    return head + "\n".join(lines) + "\n"


# ------------------------------------------------------------------ tests


def test_exception_tables_name_registered_pools() -> None:
    for table in (COMPILE_EXCEPTIONS, ONNX_TORCHSCRIPT_FAILS, ONNX_EXCEPTIONS):
        assert set(table) <= NAMES, set(table) - NAMES
    for name, check in FULLGRAPH_XFAIL:
        assert name in NAMES and check in CHECKS, (name, check)
    assert TRAIN_DIFFERS <= NAMES and RANDOM_IN_TRAIN <= NAMES
    assert not set(ONNX_EXCEPTIONS) & set(ONNX_TORCHSCRIPT_FAILS)


def _xfail(name: str, check: str) -> list[pytest.MarkDecorator]:
    reason = FULLGRAPH_XFAIL.get((name, check))
    return [] if reason is None else [pytest.mark.xfail(strict=True, reason=reason)]


def _walk(check: str, modes: bool = False) -> list[Any]:
    """Every registered pool and dim; with ``modes``, eval and train."""
    return [
        pytest.param(info, d, *([m] if modes else []), id=f"{info.name}-{d}d" + (f"-{m}" if modes else ""),
                     marks=_xfail(info.name, check))
        for info in INFOS
        for d in info.dims
        for m in (("eval", "train") if modes else ("",))
    ]  # fmt: skip


@pytest.mark.parametrize(("info", "dims", "mode"), _walk("compile", modes=True))
def test_compile_fullgraph_aot_eager_matches_eager(info: tp.PoolInfo, dims: int, mode: str) -> None:
    """The registry walk: ``fullgraph=True`` (one graph, no break, no warning), equal to eager."""
    _check_compile(info, dims, mode, "aot_eager", fullgraph=True)


@pytest.mark.parametrize("info", [i for i in INFOS if _accepts_generator(_build(i))], ids=lambda i: i.name)
def test_compile_with_generator_matches_eager(info: tp.PoolInfo) -> None:
    """``generator=`` under ``torch.compile`` (not fullgraph: the generator breaks the graph) draws
    what eager draws."""
    _check_compile(info, info.dims[0], "train", "aot_eager")


@pytest.mark.parametrize(("info", "dims"), _walk("export"))
def test_torch_export_matches_eager(info: tp.PoolInfo, dims: int) -> None:
    module = _build(info).eval()
    x = torch.rand(2, 4, *[8] * dims, generator=torch.Generator().manual_seed(0))
    program = torch.export.export(module, (x,))
    torch.manual_seed(SEED)  # fractional pools draw their regions even in eval mode
    got = _first(program.module()(x))
    torch.manual_seed(SEED)
    torch.testing.assert_close(got, _first(module(x)), **TOL)


#: the pools that once had graph breaks, in the modes they had them (``PoolRecord.explain_modes``).
EXPLAIN = [(name, mode) for name, record in POOLS.items() for mode in record.explain_modes]


@pytest.mark.parametrize(
    ("name", "mode"),
    [pytest.param(n, m, id=f"{n}-{m}", marks=_xfail(n, "explain")) for n, m in EXPLAIN],
)
def test_explain_counts_no_graph_break(name: str, mode: str) -> None:
    """The pools that had graph breaks (issue 9: median 4, stochastic 2, sppf 5, yolo_spp 7)."""
    torch._dynamo.reset()
    info = tp.get_pool_info(name)
    module = _build(info).train(mode == "train")
    x = torch.rand(2, 4, 8, 8, requires_grad=True)
    explanation = torch._dynamo.explain(module)(x)
    assert explanation.graph_break_count == 0, [
        str(b.reason).splitlines()[0] for b in explanation.break_reasons
    ]
    assert explanation.graph_count == 1
    torch._dynamo.reset()


def _inductor_cases() -> list[Any]:
    cases = []
    for info in INFOS:
        dims = info.dims if FULL_INDUCTOR else (2 if 2 in info.dims else info.dims[0],)
        modes = ("eval", "train") if info.name in TRAIN_DIFFERS or FULL_INDUCTOR else ("eval",)
        cases += [pytest.param(info, d, m, id=f"{info.name}-{d}d-{m}") for d in dims for m in modes]
    return cases


@pytest.mark.slow
@pytest.mark.parametrize(("info", "dims", "mode"), _inductor_cases())
def test_compile_inductor_matches_eager(info: tp.PoolInfo, dims: int, mode: str) -> None:
    _check_compile(info, dims, mode, "inductor")


@pytest.mark.parametrize("info", [i for i in INFOS if i.name not in TRAIN_DIFFERS], ids=lambda i: i.name)
def test_train_mode_does_not_matter_outside_train_differs(info: tp.PoolInfo) -> None:
    """Justifies checking inductor in eval mode only for these pools: train == eval in eager."""
    dims = 2 if 2 in info.dims else info.dims[0]
    module = _build(info)
    x = torch.rand(2, 4, *[8] * dims, generator=torch.Generator().manual_seed(0))
    random = info.name in RANDOM_IN_TRAIN
    gen_kw = _accepts_generator(module)
    y_t, g_t = _run(module.train(), x, random, gen_kw)
    y_e, g_e = _run(module.eval(), x, random, gen_kw)
    torch.testing.assert_close(y_t, y_e, rtol=0, atol=0)
    torch.testing.assert_close(g_t, g_e, rtol=0, atol=0)


@pytest.mark.parametrize(("info", "dims"), CASES)
def test_onnx_export_matches_eager(info: tp.PoolInfo, dims: int) -> None:
    module = _build(info).eval()
    x = torch.rand(2, 4, *[8] * dims, generator=torch.Generator().manual_seed(0))
    if info.name in ONNX_EXCEPTIONS:
        for exporter in ("torchscript", "dynamo"):
            with pytest.raises(Exception):  # noqa: B017 - must still fail, or the table is stale
                _check_onnx(module, x, exporter)
        return
    if info.name in ONNX_TORCHSCRIPT_FAILS:
        with pytest.raises(Exception):  # noqa: B017
            _check_onnx(module, x, "torchscript")
        _check_onnx(module, x, "dynamo")
        return
    _check_onnx(module, x, "torchscript")


NON_DIVISIBLE = [
    *[(f"adaptive_{mode}{d}d", {"output_size": 3}, d) for mode in ("avg", "max") for d in (1, 2, 3)],
    ("adaptive_max2d", {"output_size": (3, None)}, 2),
    ("adaptive_avgmax2d", {"output_size": (3, 2)}, 2),
    ("adaptive_catavgmax1d", {"output_size": 3}, 1),
    ("adaptive_catavgmax3d", {"output_size": 2}, 3),
    ("spp", {"levels": (1, 2, 3)}, 2),
    ("spp", {"levels": (1, 2, 3), "mode": "avg"}, 2),
    ("spp1d", {"levels": (1, 3, 4)}, 1),
    ("spp3d", {"levels": (1, 2)}, 3),
]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize(
    ("name", "kwargs", "dims"), NON_DIVISIBLE, ids=[f"{n}-{k}" for n, k, _ in NON_DIVISIBLE]
)
def test_onnx_adaptive_non_divisible_output_exports(
    name: str, kwargs: dict[str, Any], dims: int, exporter: str
) -> None:
    """7 -> 3 bins (or 5 -> 2 in 3d): PyTorch's kernels cannot export this; torchpool's can."""
    size = 5 if dims == 3 else 7
    module = tp.create_pool(name, **kwargs).eval()
    x = torch.rand(2, 4, *[size] * dims, generator=torch.Generator().manual_seed(1))
    _check_onnx(module, x, exporter)


def test_onnx_pytorch_adaptive_max_non_divisible_still_fails() -> None:
    """Why the test above matters: PyTorch's own module does not export (pytorch#42653)."""
    x = torch.rand(1, 4, 7, 7)
    with pytest.raises(Exception, match="not factor of input size"):
        _export_torchscript(nn.AdaptiveMaxPool2d(3).eval(), x)
    with pytest.raises(Exception, match="adaptive_max_pool2d"):
        _export_dynamo(nn.AdaptiveMaxPool2d(3).eval(), x)


class _PoolUnpool(nn.Module):
    """Max pool with indices (overlapping 3-wide windows, stride 2) then torchpool's unpooling."""

    def __init__(self, dims: int, reduce: str) -> None:
        super().__init__()
        self.dims, self.reduce = dims, reduce
        self.pool = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[dims - 1](3, 2, 1, return_indices=True)
        self.unpool = (tp.MaxUnpool1d, tp.MaxUnpool2d, tp.MaxUnpool3d)[dims - 1](3, 2, 1, reduce=reduce)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, idx = self.pool(x)
        out: torch.Tensor = self.unpool(y * 2.0, idx, output_size=x.shape[-self.dims :])
        return out


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("reduce", ["mean", "sum"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_onnx_max_unpool_exports(dims: int, reduce: str, exporter: str) -> None:
    x = torch.rand(2, 4, *[7] * dims, generator=torch.Generator().manual_seed(2))
    _check_onnx(_PoolUnpool(dims, reduce).eval(), x, exporter)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_compile_max_unpool_matches_eager(dims: int, backend: str) -> None:
    torch._dynamo.reset()
    module = _PoolUnpool(dims, "mean")
    x = torch.rand(2, 4, *[7] * dims, generator=torch.Generator().manual_seed(3))
    y_c, g_c = _run(cast(nn.Module, torch.compile(module, backend=backend)), x, False, False)
    y_e, g_e = _run(module, x, False, False)
    torch.testing.assert_close(y_c, y_e, **TOL)
    torch.testing.assert_close(g_c, g_e, **TOL)
    torch._dynamo.reset()


def test_support_doc_matches_tests() -> None:
    assert DOC.read_text() == render_support_md(), (
        "docs/support.md is stale: run `python tests/test_export_compile.py --write`"
    )


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        DOC.write_text(render_support_md())
        print(f"wrote {DOC}")
    else:
        print(render_support_md())
