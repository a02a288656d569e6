"""torchpool: every pooling operation a CNN uses, in one consistent PyTorch API.

``torchpool`` exposes everything; ``torchpool.functional`` the functions only and
``torchpool.nn`` the Modules only. ``create_pool(name, **kwargs)`` builds any registered
pool, ``list_pools()`` lists them.
"""

from __future__ import annotations

from . import functional, nn
from ._shape import pool_output_size
from .functional import *  # noqa: F403
from .functional import __all__ as _functional_all
from .nn import *  # noqa: F403
from .nn import __all__ as _nn_all
from .ops import standard as _standard  # noqa: F401  (registers PyTorch's own pools)
from .registry import PoolInfo, create_pool, get_pool_info, list_pools, register_pool

__version__ = "0.1.0"

__all__ = sorted(
    {
        *_functional_all,
        *_nn_all,
        "PoolInfo",
        "__version__",
        "create_pool",
        "functional",
        "get_pool_info",
        "list_pools",
        "nn",
        "pool_output_size",
        "register_pool",
    }
)
