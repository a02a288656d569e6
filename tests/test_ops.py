"""Generic tests over the op table: reference, gradcheck, layouts, Module == function, low precision.

Also the records' bookkeeping: every registered pool has exactly one ``PoolRecord``
(``tests/records/<family>.py``).
"""

from __future__ import annotations

import pytest
import torch
from exactness import assert_same_computation
from op_record import Case, OpRecord, make_input
from op_table import OPS, OPS_BY_POOL, TOLERANCES, UNREGISTERED_OPS
from records import DUPLICATES, POOLS, record_file

import torchpool as tp

ALL_CASES = [pytest.param(op, case, id=f"{op.name}-{case!r}") for op in OPS for case in op.cases]
FIRST_CASES = [pytest.param(op, op.cases[0], id=op.name) for op in OPS]


def check_against_reference(op: OpRecord, case: Case, dtype: torch.dtype, seed: int = 0) -> None:
    x = make_input(op, case.shape, dtype, seed)
    actual = op.function(x, **case.kwargs)
    expected = op.reference(x.double(), **case.kwargs)
    assert actual.dtype == dtype
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("op", "case"), ALL_CASES)
def test_matches_reference(op: OpRecord, case: Case, dtype: torch.dtype) -> None:
    check_against_reference(op, case, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("op", "case"), FIRST_CASES)
def test_low_precision_matches_reference(op: OpRecord, case: Case, dtype: torch.dtype) -> None:
    check_against_reference(op, case, dtype)


@pytest.mark.parametrize(("op", "case"), ALL_CASES)
def test_gradcheck(op: OpRecord, case: Case) -> None:
    x = make_input(op, case.shape).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: op.function(t, **case.kwargs), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(("op", "case"), FIRST_CASES)
def test_layouts_give_same_values(op: OpRecord, case: Case) -> None:
    x = make_input(op, case.shape, torch.float32)
    expected = op.function(x, **case.kwargs)
    if x.dim() in (4, 5):
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        torch.testing.assert_close(
            op.function(x.to(memory_format=fmt), **case.kwargs), expected, rtol=0, atol=1e-6
        )
    wide = torch.zeros(*case.shape[:-1], 2 * case.shape[-1], dtype=x.dtype)
    wide[..., ::2] = x
    strided = wide[..., ::2]
    assert not strided.is_contiguous()
    torch.testing.assert_close(op.function(strided, **case.kwargs), expected, rtol=0, atol=1e-6)
    if op.batchless:
        torch.testing.assert_close(op.function(x[0], **case.kwargs), expected[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize(("op", "case"), ALL_CASES)
def test_module_equals_function(op: OpRecord, case: Case) -> None:
    x = make_input(op, case.shape, torch.float32)
    module = op.module(**case.kwargs).eval()
    assert_same_computation(module(x), op.function(x, **case.kwargs))
    assert "(" in repr(module)
    state = module.state_dict()
    rebuilt = op.module(**case.kwargs).eval()
    rebuilt.load_state_dict(state)
    assert_same_computation(rebuilt(x), module(x))


@pytest.mark.parametrize("op", [pytest.param(op, id=op.name) for op in OPS])
def test_meta_perturbed_op_is_caught(op: OpRecord, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference comparison has power: a small change to any op must fail it."""
    case = op.cases[0]

    def perturbed(x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        y = op.function(x, **kwargs).clone()
        y.view(-1)[y.numel() // 2] += 1e-3
        return y

    broken = OpRecord(op.name, perturbed, op.module, op.reference, op.cases, op.dims, op.inputs, op.batchless)
    with pytest.raises(AssertionError):
        check_against_reference(broken, case, torch.float64)


def test_every_registered_pool_has_exactly_one_record() -> None:
    infos = tp.list_pools()
    assert not DUPLICATES, f"pools with more than one PoolRecord in tests/records/: {DUPLICATES}"
    missing = [
        f"{info.name} (add it to {record_file(info.family)})" for info in infos if info.name not in POOLS
    ]
    assert not missing, "registered pools without a PoolRecord: " + ", ".join(missing)
    stale = sorted(set(POOLS) - {info.name for info in infos})
    assert not stale, f"PoolRecords of names the registry does not list (tp.list_pools()): {stale}"


def test_every_op_record_names_a_registered_pool() -> None:
    """OpRecord names are registry names, with a suffix after a hyphen (``gem-1d``, ``stochastic1d-eval``)."""
    names = [op.name for op in OPS]
    assert len(set(names)) == len(names), sorted({n for n in names if names.count(n) > 1})
    strays = sorted(set(OPS_BY_POOL) - set(POOLS) - set(UNREGISTERED_OPS))
    assert not strays, f"OpRecords named after no registered pool: {strays}"
