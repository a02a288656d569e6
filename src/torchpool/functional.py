"""Functions only: ``import torchpool.functional as TPF``."""

from __future__ import annotations

from ._shape import pool_output_size
from .ops.adaptive import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_avg_pool3d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    adaptive_max_pool3d,
)
from .ops.bilinear import bilinear_pool, compact_bilinear_pool, low_rank_bilinear_pool, matrix_sqrt_pool
from .ops.blur import (
    blur_pool1d,
    blur_pool2d,
    blur_pool3d,
    max_blur_pool1d,
    max_blur_pool2d,
    max_blur_pool3d,
)
from .ops.combined import (
    adaptive_avgmax_pool1d,
    adaptive_avgmax_pool2d,
    adaptive_avgmax_pool3d,
    adaptive_catavgmax_pool1d,
    adaptive_catavgmax_pool2d,
    adaptive_catavgmax_pool3d,
    avgmax_pool1d,
    avgmax_pool2d,
    avgmax_pool3d,
    catavgmax_pool1d,
    catavgmax_pool2d,
    catavgmax_pool3d,
)
from .ops.global_ import gem, global_avg_pool, global_max_pool
from .ops.kmax import kmax_pool1d
from .ops.lip import lip_pool2d
from .ops.lse import lse_pool
from .ops.median import (
    median_pool1d,
    median_pool1d_with_indices,
    median_pool2d,
    median_pool2d_with_indices,
    median_pool3d,
    median_pool3d_with_indices,
)
from .ops.mixed import mixed_pool1d, mixed_pool2d, mixed_pool3d
from .ops.netvlad import ghostvlad, netvlad
from .ops.pyramid import (
    spatial_pyramid_pool,
    spatial_pyramid_pool1d,
    spatial_pyramid_pool2d,
    spatial_pyramid_pool3d,
    sppf,
    yolo_spp,
)
from .ops.rmac import rmac
from .ops.roi_pyramid import roi_spatial_pyramid_pool
from .ops.s3 import s3_pool2d
from .ops.soft import soft_pool1d, soft_pool2d, soft_pool3d
from .ops.spectral import spectral_pool2d
from .ops.stochastic import (
    stochastic_pool1d,
    stochastic_pool1d_with_indices,
    stochastic_pool2d,
    stochastic_pool2d_with_indices,
    stochastic_pool3d,
    stochastic_pool3d_with_indices,
)
from .ops.tree import tree_pool2d
from .ops.unpool import max_unpool1d, max_unpool2d, max_unpool3d

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "adaptive_avgmax_pool1d",
    "adaptive_avgmax_pool2d",
    "adaptive_avgmax_pool3d",
    "adaptive_catavgmax_pool1d",
    "adaptive_catavgmax_pool2d",
    "adaptive_catavgmax_pool3d",
    "avgmax_pool1d",
    "avgmax_pool2d",
    "avgmax_pool3d",
    "bilinear_pool",
    "blur_pool1d",
    "blur_pool2d",
    "blur_pool3d",
    "catavgmax_pool1d",
    "catavgmax_pool2d",
    "catavgmax_pool3d",
    "compact_bilinear_pool",
    "gem",
    "ghostvlad",
    "global_avg_pool",
    "global_max_pool",
    "kmax_pool1d",
    "lip_pool2d",
    "lse_pool",
    "low_rank_bilinear_pool",
    "matrix_sqrt_pool",
    "max_blur_pool1d",
    "max_blur_pool2d",
    "max_blur_pool3d",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "median_pool1d",
    "median_pool1d_with_indices",
    "median_pool2d",
    "median_pool2d_with_indices",
    "median_pool3d",
    "median_pool3d_with_indices",
    "mixed_pool1d",
    "mixed_pool2d",
    "mixed_pool3d",
    "netvlad",
    "pool_output_size",
    "rmac",
    "roi_spatial_pyramid_pool",
    "s3_pool2d",
    "soft_pool1d",
    "soft_pool2d",
    "soft_pool3d",
    "spatial_pyramid_pool",
    "spatial_pyramid_pool1d",
    "spatial_pyramid_pool2d",
    "spatial_pyramid_pool3d",
    "spectral_pool2d",
    "sppf",
    "stochastic_pool1d",
    "stochastic_pool1d_with_indices",
    "stochastic_pool2d",
    "stochastic_pool2d_with_indices",
    "stochastic_pool3d",
    "stochastic_pool3d_with_indices",
    "tree_pool2d",
    "yolo_spp",
]
