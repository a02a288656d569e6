"""torchpool: every pooling operation a CNN uses, in one consistent PyTorch API.

``torchpool`` exposes everything; ``torchpool.functional`` the functions only and
``torchpool.nn`` the Modules only. ``create_pool(name, **kwargs)`` builds any registered
pool, ``list_pools()`` lists them, ``python -m torchpool list`` prints them.
"""

from __future__ import annotations

from . import functional, nn
from ._deterministic import deterministic, is_deterministic, use_deterministic
from .convert import SwapRecord, SwapReport, swap_pooling
from .functional import *  # noqa: F403  (the names of functional.__all__)
from .nn import *  # noqa: F403  (the names of nn.__all__)
from .ops import standard as _standard  # noqa: F401  (registers PyTorch's own pools)
from .ops.bilinear import compact_bilinear_path
from .ops.netvlad import kmeans, netvlad_alpha
from .ops.pyramid import from_darknet_cfg, spp_to_sppf
from .registry import PoolInfo, create_pool, get_pool_info, list_pools, register_pool

__version__ = "0.1.0"

# Every public name: the helpers listed here, then every function (functional.__all__) and every
# Module (nn.__all__). Each list is written out once, where its names are defined or imported, so
# type checkers read them (mypy and pyright follow `from m import *` and `__all__ += m.__all__`).
__all__ = [
    "PoolInfo",
    "SwapRecord",
    "SwapReport",
    "__version__",
    "compact_bilinear_path",
    "create_pool",
    "deterministic",
    "from_darknet_cfg",
    "functional",
    "get_pool_info",
    "is_deterministic",
    "kmeans",
    "list_pools",
    "netvlad_alpha",
    "nn",
    "register_pool",
    "spp_to_sppf",
    "swap_pooling",
    "use_deterministic",
]
__all__ += functional.__all__
__all__ += nn.__all__
