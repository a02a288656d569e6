"""The records the generic tests iterate over.

* :class:`PoolRecord`: one per registered pool (``tp.list_pools()`` name), every fact the
  generic tests and the doc renderers need about it (degenerate-input policy, half-precision
  exceptions, compile / export / ONNX / CUDA notes, flags, docs page). They live in
  ``tests/records/<family>.py``; ``records.POOLS`` collects them.
* :class:`OpRecord`: an op (function + Module) with its float64 reference and sample cases.
  They live in ``op_table.py`` (the survey's first families) or in the family's
  ``records/<family>.py`` (its list ``OPS``);
  ``op_table.OPS`` collects them. An OpRecord's name is its pool's registry name, with a
  suffix after a hyphen for a rank or a mode of a rank-generic pool (``gem-1d``,
  ``stochastic1d-eval``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

Kwargs = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """An input shape (with batch) and the op's keyword arguments."""

    shape: tuple[int, ...]
    kwargs: Kwargs = field(default_factory=dict)

    def __repr__(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{'x'.join(map(str, self.shape))}[{args}]"


@dataclass(frozen=True)
class OpRecord:
    """An op under test.

    Attributes:
        name: test id.
        function: ``function(x, **kwargs)``, deterministic (eval mode for random ops).
        module: ``module(**kwargs)`` builds the Module; it is called in eval mode as ``m(x)``.
        reference: ``reference(x, **kwargs)`` in float64.
        cases: shapes and arguments.
        inputs: ``"tiefree"`` (distinct values), ``"positive"`` (distinct, > 0) or ``"real"``.
        batchless: whether ``(C, *spatial)`` input is accepted.
        dims: number of spatial dims.
    """

    name: str
    function: Callable[..., Tensor]
    module: Callable[..., nn.Module]
    reference: Callable[..., Tensor]
    cases: tuple[Case, ...]
    dims: int
    inputs: str = "tiefree"
    batchless: bool = True


def make_input(
    record: OpRecord, shape: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 0
) -> Tensor:
    """Distinct values (so max/median have no ties), shuffled; positive where the op needs it."""
    g = torch.Generator().manual_seed(seed)
    numel = 1
    for size in shape:
        numel *= size
    values = torch.randperm(numel, generator=g).double() / max(numel, 1)
    values = values + 0.1 * torch.rand(numel, generator=g, dtype=torch.float64) / max(numel, 1)
    values = values + 0.05 if record.inputs == "positive" else values * 4 - 2
    return values.reshape(shape).to(dtype)


# ------------------------------------------------------------------ per-pool facts


class Out(NamedTuple):
    """The current outcome of one (pool, degenerate case); ``tests/test_degenerate.py`` asserts it.

    Attributes:
        code: what the test asserts (one of ``test_degenerate.CODES``; ``zeros`` and ``ties`` as
            ``"<value>, <grad>"``; ``raises E`` with ``match``).
        why: the reason, shown in the doc. ``BUG:`` / ``LIMIT:`` / ``UPSTREAM:`` mark them.
        match: for ``raises E``: a regex the message must match.
    """

    code: str
    why: str = ""
    match: str = ""


class Semantics(NamedTuple):
    """Facts about what a pool computes that the degenerate-input checks need (not policy).

    Attributes:
        reduce: the reduction of one window / of the whole input (``max``, ``mean``, ``lp2``,
            ``median``, ``avgmax``, ``catavgmax``, ``mix``, ``stochastic``, ``draw``,
            ``max|mean``, ``gem``), or for channel statistics ``stats`` / ``netvlad``.
        degree: ``f(s x) = s**degree f(x)`` for ``s > 0`` (away from eps); None where no degree
            holds (learned projections with biases: attention pools), so Euler's identity is not checked.
        shift: ``f(x + t) = f(x) + t``, so the gradient sums to one per output.
        window: kwargs that make the window the whole input of spatial size ``S`` (None: no window).
        cell: what the output for a single-cell input is: ``"reduce"`` (the reduction of the cell),
            ``"channel-groups"`` (every channel group is the cell: SPPF / YOLO-SPP) or ``"bins"``
            (every bin of every level is the cell: SPPNet, from the ``levels`` argument).
        reflect_windows: reflect padding repeats cells, so a cell is in windows whose output does
            not change when it does (``[a, x, a]`` has the median ``a`` for any ``x``).
    """

    reduce: str
    degree: int | None
    shift: bool
    window: Callable[[int], dict[str, Any]] | None
    cell: str = "reduce"
    reflect_windows: bool = False


@dataclass(frozen=True)
class Known:
    """A known half-precision failure: of PyTorch's own implementation (asserted to persist) or a bug.

    Attributes:
        kind: ``"overflow"`` (the output is not finite), ``"regions"`` (finite, but not the
            float32 result: the op's geometry is computed in the input dtype) or ``"bug"``.
        note: short, for the precision table.
        reason: the full explanation (the xfail reason of a bug).
    """

    kind: str
    note: str
    reason: str


#: the floating dtypes every pool computes in unless its record says otherwise.
FLOATS: tuple[torch.dtype, ...] = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

#: the checks of ``test_export_compile.py`` a pool can be a strict xfail of.
CHECKS = ("compile", "export", "explain")


@dataclass(frozen=True)
class PoolRecord:
    """Every fact the generic tests and the doc renderers need about one registered pool.

    Attributes:
        name: the registry name (``tp.list_pools()``).
        docs_page: the family page that documents it (``docs/<docs_page>.md``).
        policy: degenerate inputs in eval mode, case -> outcome (``test_degenerate.py``,
            rendered into ``docs/degenerate.md``).
        semantics: what it computes in eval mode (``test_degenerate.py``).
        dtypes: the floating dtypes it computes in (the half-precision walk covers those of
            float16 / bfloat16 listed; the precision table says ``no (unsupported)`` for the others).
        computed_in: how it computes in half precision (the precision and feature tables); the
            same for every pool of a name stem (``avg1d/2d/3d``).
        train_differs: its output depends on train / eval mode (then ``train_policy`` and
            ``train_semantics`` say the train-mode facts; inductor checks both modes).
        train_policy: degenerate inputs in train mode (only where ``train_differs``).
        train_semantics: what it computes in train mode (only where ``train_differs``).
        random_in_train: draws at random in train mode (compared under one seed / generator).
        random_in_eval: draws at random in eval mode too (not comparable across devices).
        nonnegative_only: accepts only non-negative input.
        half_exceptions: dtype name -> how PyTorch's own implementation fails in half precision
            (asserted to persist).
        half_bugs: ``(variant, dtype name)`` -> torchpool code that fails in half precision, a
            strict xfail; variant ``""`` (walk, inputs in [0, 1000]), ``"signed"`` (walk,
            [-1000, 1000]) or a targeted case of ``test_precision.py``.
        input_top: largest input magnitude of the half-precision walk and why, where 1000 would
            put the exact result out of float16's range.
        keep_window: the half-precision walk keeps the example window (no sum over the window,
            or a kernel fixed by the block).
        small_input: the half-precision walk uses smaller inputs (selection only, slow to plan).
        precision_kwargs: arguments of the half-precision walk over the example ones (adaptive
            pools: 2 bins per dimension; an output size of 1 takes PyTorch's plain-mean path).
        fullgraph_xfail: check (:data:`CHECKS`) -> why it still fails: a strict xfail.
        explain_modes: modes in which ``torch._dynamo.explain`` must count no graph break (the
            pools that once had breaks).
        onnx_torchscript_fails: why the TorchScript ONNX exporter fails (the dynamo one must work).
        onnx_exception: why neither ONNX exporter works.
        deterministic_exception: why its CUDA backward has no deterministic kernel (asserted to raise).
        cuda_inductor: compiled with inductor on CUDA in ``test_cuda.py``.
    """

    name: str
    docs_page: str
    policy: Mapping[str, Out]
    semantics: Semantics
    computed_in: str
    dtypes: tuple[torch.dtype, ...] = FLOATS
    train_differs: bool = False
    train_policy: Mapping[str, Out] | None = None
    train_semantics: Semantics | None = None
    random_in_train: bool = False
    random_in_eval: bool = False
    nonnegative_only: bool = False
    half_exceptions: Mapping[str, Known] = field(default_factory=dict)
    half_bugs: Mapping[tuple[str, str], Known] = field(default_factory=dict)
    input_top: tuple[float, str] | None = None
    keep_window: bool = False
    small_input: bool = False
    precision_kwargs: Mapping[str, Any] = field(default_factory=dict)
    fullgraph_xfail: Mapping[str, str] = field(default_factory=dict)
    explain_modes: tuple[str, ...] = ()
    onnx_torchscript_fails: str = ""
    onnx_exception: str = ""
    deterministic_exception: str = ""
    cuda_inductor: bool = False

    def policy_in(self, mode: str) -> Mapping[str, Out]:
        """The outcome table in ``mode`` (``"eval"`` or ``"train"``)."""
        if mode == "train":
            assert self.train_policy is not None, f"{self.name} has no train-mode policy"
            return self.train_policy
        return self.policy

    def semantics_in(self, mode: str) -> Semantics:
        """What it computes in ``mode`` (``"eval"`` or ``"train"``)."""
        if mode == "train":
            assert self.train_semantics is not None, f"{self.name} has no train-mode semantics"
            return self.train_semantics
        return self.semantics
