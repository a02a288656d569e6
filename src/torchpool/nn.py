"""Modules only: ``import torchpool.nn as tpnn``."""

from __future__ import annotations

from .ops.adaptive import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AdaptiveMaxPool3d,
)
from .ops.attention import AttentionPool2d, AttentionPoolLatent, SimPool
from .ops.bilinear import BilinearPool, CompactBilinearPool, LowRankBilinearPool, MatrixSqrtPool
from .ops.blur import BlurPool1d, BlurPool2d, BlurPool3d, MaxBlurPool1d, MaxBlurPool2d, MaxBlurPool3d
from .ops.combined import (
    AdaptiveAvgMaxPool1d,
    AdaptiveAvgMaxPool2d,
    AdaptiveAvgMaxPool3d,
    AdaptiveCatAvgMaxPool1d,
    AdaptiveCatAvgMaxPool2d,
    AdaptiveCatAvgMaxPool3d,
    AvgMaxPool1d,
    AvgMaxPool2d,
    AvgMaxPool3d,
    CatAvgMaxPool1d,
    CatAvgMaxPool2d,
    CatAvgMaxPool3d,
)
from .ops.global_ import GeM, GlobalAvgPool, GlobalMaxPool
from .ops.kmax import KMaxPool1d
from .ops.lip import LIPPool2d
from .ops.lse import LSEPool
from .ops.median import MedianPool1d, MedianPool2d, MedianPool3d
from .ops.mixed import GatedPool2d, LearnedMixedPool2d, MixedPool1d, MixedPool2d, MixedPool3d
from .ops.netvlad import GhostVLAD, NetVLAD
from .ops.pyramid import (
    SPPF,
    SpatialPyramidPool,
    SpatialPyramidPool1d,
    SpatialPyramidPool2d,
    SpatialPyramidPool3d,
    YoloSPP,
)
from .ops.rmac import RMAC
from .ops.roi_pyramid import RoISpatialPyramidPool
from .ops.s3 import S3Pool2d
from .ops.soft import SoftPool1d, SoftPool2d, SoftPool3d
from .ops.spectral import SpectralPool2d
from .ops.stochastic import StochasticPool1d, StochasticPool2d, StochasticPool3d
from .ops.tree import TreePool2d
from .ops.unpool import MaxUnpool1d, MaxUnpool2d, MaxUnpool3d

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "AdaptiveAvgMaxPool1d",
    "AdaptiveAvgMaxPool2d",
    "AdaptiveAvgMaxPool3d",
    "AdaptiveCatAvgMaxPool1d",
    "AdaptiveCatAvgMaxPool2d",
    "AdaptiveCatAvgMaxPool3d",
    "AttentionPool2d",
    "AttentionPoolLatent",
    "AvgMaxPool1d",
    "AvgMaxPool2d",
    "AvgMaxPool3d",
    "BilinearPool",
    "BlurPool1d",
    "BlurPool2d",
    "BlurPool3d",
    "CatAvgMaxPool1d",
    "CatAvgMaxPool2d",
    "CatAvgMaxPool3d",
    "CompactBilinearPool",
    "GatedPool2d",
    "GeM",
    "GhostVLAD",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "KMaxPool1d",
    "LIPPool2d",
    "LSEPool",
    "LearnedMixedPool2d",
    "LowRankBilinearPool",
    "MatrixSqrtPool",
    "MaxBlurPool1d",
    "MaxBlurPool2d",
    "MaxBlurPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "MedianPool1d",
    "MedianPool2d",
    "MedianPool3d",
    "MixedPool1d",
    "MixedPool2d",
    "MixedPool3d",
    "NetVLAD",
    "RMAC",
    "RoISpatialPyramidPool",
    "S3Pool2d",
    "SPPF",
    "SimPool",
    "SoftPool1d",
    "SoftPool2d",
    "SoftPool3d",
    "SpatialPyramidPool",
    "SpatialPyramidPool1d",
    "SpatialPyramidPool2d",
    "SpatialPyramidPool3d",
    "SpectralPool2d",
    "StochasticPool1d",
    "StochasticPool2d",
    "StochasticPool3d",
    "TreePool2d",
    "YoloSPP",
]
