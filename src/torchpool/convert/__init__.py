"""Model surgery: swap the pooling layers of an existing model for any torchpool pool.

:func:`swap_pooling` finds pooling layers (by type, name pattern or predicate), builds the
replacement with :func:`torchpool.create_pool`, copies the old layer's window geometry when
the caller does not give it, and, when the swap changes the output width (a channel-doubling
``catavgmax``, NetVLAD, bilinear, a pyramid), rebuilds the ``nn.Linear`` that consumes the
pooled features (and a norm between them), found by running the model once.

The work is split in steps, one private module each: select the layers (``_select``), run the
model once to record what each layer sees (``_dry_run``), build the new pools and measure their
output (``_build``), rebuild the consumers (``_rebuild``) and apply everything, undoing it when
the swapped model fails (``_swap``).
"""

from __future__ import annotations

from ._report import SwapRecord, SwapReport
from ._select import DEFAULT_POOL_TYPES
from ._swap import swap_pooling

__all__ = ["DEFAULT_POOL_TYPES", "SwapRecord", "SwapReport", "swap_pooling"]
