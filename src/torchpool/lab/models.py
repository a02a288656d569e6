"""The small CNN ``torchpool compare`` trains once per pooling variant.

``conv(1->16)-BN-ReLU-[POOL]-conv(->32)-BN-ReLU-[POOL]-conv(->64)-BN-ReLU-[HEAD]-Linear``.
A *windowed* variant (max2d, median2d, ...) is both POOLs (2x downsampling) with a global-average
HEAD; a *head* variant (gem, spp, netvlad, ...) is the HEAD after two ``max2d`` POOLs. Channel
counts after each stage come from dry forward passes, so ``catavgmax2d`` (2C) and pyramid or
NetVLAD heads (C * levels, K * D) need no bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..registry import create_pool, get_pool_info

__all__ = [
    "DEFAULT_VARIANTS",
    "PoolNet",
    "VariantNotApplicable",
    "VariantSpec",
    "build_model",
    "resolve_variant",
]

DEFAULT_VARIANTS: tuple[str, ...] = (
    "max2d",
    "overlapping_max2d",
    "avg2d",
    "stochastic2d",
    "median2d",
    "avgmax2d",
    "catavgmax2d",
    "mixed2d",
    "gated2d",
    "global_avg",
    "gem",
    "spp2d",
    "netvlad",
    "compact_bilinear",
)

HEAD_DIM = 64  # channels entering the head
_K2S2: dict[str, Any] = {"kernel_size": 2, "stride": 2}

# windowed variants: constructor arguments for a 2x downsampling pool; "channels" is filled in per stage
_WINDOWED: dict[str, dict[str, Any]] = {
    "max2d": _K2S2,
    "avg2d": _K2S2,
    "overlapping_max2d": {"kernel_size": 3, "stride": 2, "padding": 1},
    # a 2x2 median is the lower of 4 values (close to min); 3x3 stride 2 is a true median of 9
    "median2d": {"kernel_size": 3, "stride": 2, "padding": 1},
    "stochastic2d": _K2S2,
    "avgmax2d": _K2S2,
    "catavgmax2d": _K2S2,
    "mixed2d": _K2S2,
    "gated2d": {**_K2S2, "channels": None},
    "learned_mixed2d": {**_K2S2, "channels": None},
    "lp2d": {"norm_type": 2.0, **_K2S2},
    "fractional_max2d": {"kernel_size": 2, "output_ratio": 0.5},
}

# head variants: constructor arguments given num_classes (the head sees HEAD_DIM channels)
_HEADS: dict[str, Callable[[int], dict[str, Any]]] = {
    "global_avg": lambda n: {},
    "global_max": lambda n: {},
    "gem": lambda n: {},
    "spp2d": lambda n: {"levels": (1, 2, 4)},
    "netvlad": lambda n: {"num_clusters": 8, "dim": HEAD_DIM},
    "ghostvlad": lambda n: {"num_clusters": 8, "dim": HEAD_DIM},
    "compact_bilinear": lambda n: {"dim_a": HEAD_DIM, "out_dim": 512},
    "bilinear": lambda n: {"dim_a": HEAD_DIM},
    "matrix_sqrt": lambda n: {},
    "low_rank_bilinear": lambda n: {"dim": HEAD_DIM, "num_classes": n, "rank": 8},
    "adaptive_avg2d": lambda n: {"output_size": 1},
    "adaptive_max2d": lambda n: {"output_size": 1},
    "adaptive_avgmax2d": lambda n: {"output_size": 1},
    "adaptive_catavgmax2d": lambda n: {"output_size": 1},
}

_NECK = "keeps the spatial size (a stride-1 SPP neck block): neither a 2x downsampling pool nor a head"
_NOT_APPLICABLE: dict[str, str] = {"sppf": _NECK, "yolo_spp": _NECK}


class VariantNotApplicable(Exception):
    """A registered pool that this 2-d image experiment cannot use; the message says why."""


@dataclass(frozen=True)
class VariantSpec:
    """How one variant enters the model.

    Attributes:
        name: registry name.
        family: registry family.
        role: ``"pool"`` (replaces both 2x downsampling pools) or ``"head"`` (replaces the global head).
        kwargs: constructor arguments (``channels=None`` is filled per stage).
        setting: a short human description of the arguments, e.g. ``"k2 s2"``.
    """

    name: str
    family: str
    role: str
    kwargs: dict[str, Any]
    setting: str


def _describe(kwargs: dict[str, Any]) -> str:
    short = {"kernel_size": "k", "stride": "s", "padding": "p"}
    parts = [f"{short[k]}{v}" for k, v in kwargs.items() if k in short]
    parts += [f"{k}={v}" for k, v in kwargs.items() if k not in short and k != "channels" and v is not None]
    return " ".join(parts)


def resolve_variant(name: str, num_classes: int = 10) -> VariantSpec:
    """How ``name`` enters the model.

    Args:
        name: a registry name (the returned spec carries the registry's spelling of it).
        num_classes: number of classes (some heads are classifiers themselves).

    Raises:
        ValueError: for a name that is not registered (with close matches).
        VariantNotApplicable: for a registered pool this 2-d experiment cannot use.
    """
    info = get_pool_info(name)  # ValueError for unknown names
    name = info.name  # the registry's own spelling, should it accept other names for a pool
    if 2 not in info.dims:
        dims = ",".join(f"{d}d" for d in info.dims)
        raise VariantNotApplicable(f"supports {dims} inputs only; compare trains a 2-d image CNN")
    if name in _NOT_APPLICABLE:
        raise VariantNotApplicable(_NOT_APPLICABLE[name])
    if name in _WINDOWED:
        kwargs = dict(_WINDOWED[name])
        return VariantSpec(name, info.family, "pool", kwargs, _describe(kwargs))
    if name in _HEADS:
        kwargs = _HEADS[name](num_classes)
        return VariantSpec(name, info.family, "head", kwargs, _describe(kwargs) or "default")
    # a pool registered elsewhere: try it as a 2x window, then with its example arguments
    if info.family in {"global", "pyramid", "netvlad", "bilinear"}:
        kwargs = dict(info.example_kwargs)
        return VariantSpec(name, info.family, "head", kwargs, _describe(kwargs) or "example kwargs")
    kwargs = dict(_K2S2)
    return VariantSpec(name, info.family, "pool", kwargs, _describe(kwargs))


def _make_pool(spec: VariantSpec, channels: int) -> nn.Module:
    kwargs = dict(spec.kwargs)
    if "channels" in kwargs:
        kwargs["channels"] = channels
    return create_pool(spec.name, **kwargs)


class PoolNet(nn.Module):
    """Three 3x3 conv stages with two pools between them, a head and a linear classifier.

    Args:
        pool1: pool after the first stage.
        pool2: pool after the second stage.
        head: pooling head after the third stage (anything whose output flattens to a vector).
        channels: the channels entering stages 2 and 3 (after the pools) and the head's
            flattened output width, from dry runs.
        num_classes: classifier outputs.
    """

    def __init__(
        self,
        pool1: nn.Module,
        pool2: nn.Module,
        head: nn.Module,
        channels: tuple[int, int, int],
        num_classes: int,
    ) -> None:
        super().__init__()
        c1, c2, features = channels
        self.stage1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool1 = pool1
        self.stage2 = nn.Sequential(nn.Conv2d(c1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.pool2 = pool2
        self.stage3 = nn.Sequential(
            nn.Conv2d(c2, HEAD_DIM, 3, padding=1), nn.BatchNorm2d(HEAD_DIM), nn.ReLU()
        )
        self.head = head
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits for ``(N, 1, H, W)`` images."""
        x = self.pool1(self.stage1(x))
        x = self.pool2(self.stage2(x))
        x = self.head(self.stage3(x))
        logits: Tensor = self.classifier(torch.flatten(x, 1))
        return logits


def build_model(spec: VariantSpec, num_classes: int, image_size: tuple[int, int]) -> PoolNet:
    """Builds the CNN for one variant, sizing each layer by a dry forward pass.

    Args:
        spec: the variant (from :func:`resolve_variant`).
        num_classes: classifier outputs.
        image_size: ``(H, W)`` of the training images.

    Raises:
        VariantNotApplicable: if the pool cannot be built or fails on this input size.
    """
    try:
        dummy = torch.zeros(2, 1, *image_size)
        stage1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        if spec.role == "pool":
            pool1, pool2 = _make_pool(spec, 16), _make_pool(spec, 32)
            head: nn.Module = create_pool("global_avg")
        else:
            pool1, pool2 = (
                create_pool("max2d", kernel_size=2, stride=2),
                create_pool("max2d", kernel_size=2, stride=2),
            )
            head = _make_pool(spec, HEAD_DIM)
        with torch.no_grad():
            for module in (pool1, pool2, head):
                module.eval()
            y = pool1(stage1(dummy))
            c1 = int(y.shape[1])
            y = pool2(torch.relu(nn.Conv2d(c1, 32, 3, padding=1)(y)))
            c2 = int(y.shape[1])
            if min(y.shape[-2:]) < 1:
                raise VariantNotApplicable(
                    f"leaves no spatial extent on {image_size[0]}x{image_size[1]} inputs"
                )
            features = int(torch.flatten(head(torch.rand(2, HEAD_DIM, *y.shape[-2:])), 1).shape[1])
    except VariantNotApplicable:
        raise
    except (TypeError, ValueError, RuntimeError) as exc:
        raise VariantNotApplicable(f"cannot build or run it in this CNN: {exc}") from None
    model = PoolNet(pool1, pool2, head, (c1, c2, features), num_classes)
    model.train()
    return model
