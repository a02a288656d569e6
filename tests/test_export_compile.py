"""torch.compile and ONNX coverage for EVERY registered pool, plus the support table.

The tests walk ``tp.list_pools()``, so a newly registered pool is covered automatically;
a pool that cannot compile or export must be listed in one of the exception tables
below with its reason, and the test for it asserts that it still fails (strict), so
``docs/support.md`` (rendered from these tables by :func:`support_rows`) stays true.

* compile: ``torch.compile(module, backend="aot_eager")`` vs eager, eval and train mode,
  forward and input gradient (rtol = atol = 1e-5, float32). Random pools (stochastic,
  mixed, fractional) are compared under the same seed: ``generator=`` where ``forward``
  accepts one, else the global seed. A few representative pools also go through the
  default inductor backend (``@pytest.mark.slow``).
* ONNX: eval mode, ``torch.rand(2, 4, *[8] * dims)``, TorchScript exporter at opset 17
  first; where that fails (``ONNX_TORCHSCRIPT_FAILS``) the dynamo exporter (opset 18,
  needs ``onnxscript``); onnxruntime output must match eager (atol 1e-5).

Regenerate the doc with ``python tests/test_export_compile.py --write``.
"""

from __future__ import annotations

import inspect
import io
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torchpool as tp

DOC = Path(__file__).resolve().parents[1] / "docs" / "support.md"
INFOS = tp.list_pools()
NAMES = {info.name for info in INFOS}
CASES = [pytest.param(info, d, id=f"{info.name}-{d}d") for info in INFOS for d in info.dims]
TOL = {"rtol": 1e-5, "atol": 1e-5}
SEED = 1234

# ------------------------------------------------------------------ exception tables

#: pools that do not compile (aot_eager) or whose compiled output differs from eager.
COMPILE_EXCEPTIONS: dict[str, str] = {}

#: pools checked with the default inductor backend as well (slow: 5-20 s a graph on 2 cores).
INDUCTOR_POOLS: tuple[str, ...] = ("catavgmax2d", "gem", "stochastic2d", "spp")

#: pools whose draws in training mode are random: compared under one seed / generator.
RANDOM_IN_TRAIN: frozenset[str] = frozenset(
    {"stochastic1d", "stochastic2d", "stochastic3d", "mixed1d", "mixed2d", "mixed3d",
     "fractional_max2d", "fractional_max3d"}
)  # fmt: skip

#: pools the legacy TorchScript exporter (``dynamo=False``, opset 17) cannot export; they
#: must export with the dynamo exporter instead.
ONNX_TORCHSCRIPT_FAILS: dict[str, str] = {
    "matrix_sqrt": "aten::triu_indices has no opset-17 symbolic",
    **{
        f"{family}{d}d": "forward has a keyword-only `generator` argument, which the TorchScript tracer "
        "rejects (TypeError: forward() takes 2 positional arguments but 3 were given)"
        for family in ("mixed", "stochastic")
        for d in (1, 2, 3)
    },
    **{
        f"median{d}d": "custom autograd.Function (_MedianFunction) fails in the TorchScript "
        "exporter (RuntimeError: unordered_map::at)"
        for d in (1, 2, 3)
    },
    "sppf": "TorchScript exporter raises IndexError while tracing the chained -inf padded max pools",
    "yolo_spp": "TorchScript exporter raises IndexError while tracing the -inf padded max pools",
}

#: pools that export with neither exporter.
ONNX_EXCEPTIONS: dict[str, str] = {
    **{
        f"fractional_max{d}d": f"aten::fractional_max_pool{d}d has no ONNX equivalent in either "
        "exporter (and draws random regions even in eval mode)"
        for d in (2, 3)
    },
}


# ------------------------------------------------------------------ helpers


def _build(info: tp.PoolInfo) -> nn.Module:
    torch.manual_seed(0)  # same initial parameters for every build
    return tp.create_pool(info.name, **info.example_kwargs)


def _first(y: Any) -> torch.Tensor:
    return y[0] if isinstance(y, tuple) else y


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
    (y.float() * torch.linspace(0.5, 1.5, y.numel()).reshape(y.shape)).sum().backward()
    assert x.grad is not None
    return y.detach(), x.grad


def _check_compile(info: tp.PoolInfo, dims: int, mode: str, backend: str) -> None:
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    module = _build(info).train(mode == "train")
    random = info.name in RANDOM_IN_TRAIN and (mode == "train" or info.name.startswith("fractional"))
    gen_kw = _accepts_generator(module)
    x = torch.rand(2, 4, *[8] * dims, generator=torch.Generator().manual_seed(0))
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(module, backend=counter)
    y_c, g_c = _run(compiled, x, random, gen_kw)
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
        torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=17)
    return buf.getvalue()


def _export_dynamo(module: nn.Module, x: torch.Tensor) -> bytes:
    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (x,), dynamo=True, opset_version=18, verbose=False)
    assert program is not None
    return program.model_proto.SerializeToString()


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


def support_rows() -> list[tuple[str, str, str, str, str, str]]:
    """One row per registered pool: name, family, dims, compile, inductor, ONNX."""
    rows = []
    for info in INFOS:
        if info.name in COMPILE_EXCEPTIONS:
            comp = f"no: {COMPILE_EXCEPTIONS[info.name]}"
        elif info.name in RANDOM_IN_TRAIN:
            comp = "yes (train mode under a fixed seed)"
        else:
            comp = "yes"
        inductor = "yes" if info.name in INDUCTOR_POOLS else "-"
        dims = ", ".join(f"{d}d" for d in info.dims)
        rows.append((info.name, info.family, dims, comp, inductor, _onnx_status(info.name)))
    return rows


def render_support_md() -> str:
    head = (
        "# Export and compile support\n\n"
        "Generated from `tests/test_export_compile.py` (`python tests/test_export_compile.py --write`);\n"
        "a test fails when this page and the tests disagree. Checked on torch 2.13 (CPU).\n\n"
        '- **compile (aot_eager)**: `torch.compile(module, backend="aot_eager")` matches eager in eval\n'
        "  and train mode, forward and input gradient, rtol = atol = 1e-5, on\n"
        "  `torch.rand(2, 4, *[8] * dims)` with each pool's example arguments. Random pools are\n"
        "  compared under one seed (`generator=` where `forward` takes one).\n"
        "- **inductor**: also checked with the default inductor backend (eval mode).\n"
        "- **ONNX**: eval mode, exported and run in onnxruntime, outputs match eager (atol 1e-5).\n"
        "  The TorchScript exporter (`dynamo=False`, opset 17) is tried first; the dynamo exporter\n"
        "  (opset 18) needs `onnxscript`.\n"
        "- Adaptive pooling to an output size that does not divide the input (e.g. 7x7 -> 3x3) does\n"
        "  **not** export with either exporter (TorchScript: pytorch#42653 / #64806; dynamo: no\n"
        "  ONNX function for `aten.adaptive_max_pool2d`); the rows below use divisible sizes.\n"
        "- `max_unpool2d` / `MaxUnpool2d` are not registered pools and are not covered here\n"
        "  (see pytorch#25088 for its ONNX status).\n\n"
    )
    lines = [
        "| pool | family | dims | compile (aot_eager) | inductor | ONNX |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in support_rows()]
    return head + "\n".join(lines) + "\n"


# ------------------------------------------------------------------ tests


def test_exception_tables_name_registered_pools() -> None:
    for table in (COMPILE_EXCEPTIONS, ONNX_TORCHSCRIPT_FAILS, ONNX_EXCEPTIONS):
        assert set(table) <= NAMES, set(table) - NAMES
    assert set(INDUCTOR_POOLS) <= NAMES and RANDOM_IN_TRAIN <= NAMES
    assert not set(ONNX_EXCEPTIONS) & set(ONNX_TORCHSCRIPT_FAILS)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize(("info", "dims"), CASES)
def test_compile_aot_eager_matches_eager(info: tp.PoolInfo, dims: int, mode: str) -> None:
    if info.name in COMPILE_EXCEPTIONS:
        with pytest.raises(Exception):  # noqa: B017 - must still fail, or the table is stale
            _check_compile(info, dims, mode, "aot_eager")
        return
    _check_compile(info, dims, mode, "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("name", INDUCTOR_POOLS)
def test_compile_inductor_matches_eager(name: str) -> None:
    info = tp.get_pool_info(name)
    _check_compile(info, 2 if 2 in info.dims else info.dims[0], "eval", "inductor")


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


def test_onnx_adaptive_non_divisible_output_does_not_export() -> None:
    """adaptive_avgmax2d, 7x7 -> 3x3: a known limitation of both exporters (pytorch#42653)."""
    module = tp.create_pool("adaptive_avgmax2d", output_size=3).eval()
    x = torch.rand(1, 4, 7, 7)
    with pytest.raises(Exception, match="not factor of input size"):
        _export_torchscript(module, x)
    with pytest.raises(Exception, match="adaptive_max_pool2d"):
        _export_dynamo(module, x)
    # the divisible case (8x8 -> 4x4) exports fine
    divisible = tp.create_pool("adaptive_avgmax2d", output_size=4).eval()
    _check_onnx(divisible, torch.rand(1, 4, 8, 8), "torchscript")


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
