"""pool_output_size against what PyTorch's pooling actually produces."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from torchpool import pool_output_size


def test_seed_formula_is_the_special_case() -> None:
    for i, k, s in itertools.product(range(1, 20), range(1, 6), range(1, 5)):
        if k <= i:
            assert pool_output_size(i, k, s) == (i - k) // s + 1


def test_spec_examples() -> None:
    assert pool_output_size(5, 2, 2) == 2
    assert pool_output_size(5, 2, 2, ceil_mode=True) == 3
    assert pool_output_size(1, 2, 2, padding=1, ceil_mode=True) == 1
    assert pool_output_size((5, 7), (2, 3), (2, 1), (1, 0), (1, 2), True) == (3, 3)


def test_matches_pytorch_everywhere() -> None:
    checked = refused = 0
    for i, k, s, d, ceil in itertools.product(range(1, 11), range(1, 5), range(1, 4), (1, 2), (False, True)):
        for p in range((d * (k - 1) + 1) // 2 + 2):
            x = torch.zeros(1, 1, i)
            try:
                expected = F.max_pool1d(x, k, s, p, d, ceil_mode=ceil).shape[-1]
            except RuntimeError:
                with pytest.raises(ValueError):
                    pool_output_size(i, k, s, p, d, ceil)
                refused += 1
                continue
            assert pool_output_size(i, k, s, p, d, ceil) == expected, (i, k, s, p, d, ceil)
            checked += 1
    assert checked > 700 and refused > 100


def test_ceil_mode_avg_divides_by_cells_inside() -> None:
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0]]])
    assert F.avg_pool1d(x, 2, 2, ceil_mode=True).flatten().tolist() == [1.5, 3.5, 5.0]
    assert pool_output_size(5, 2, 2, ceil_mode=True) == 3
