"""The small CNN ``torchpool compare`` trains once per pooling variant.

``conv(1->16)-BN-ReLU-[POOL]-conv(->32)-BN-ReLU-[POOL]-conv(->64)-BN-ReLU-[HEAD]-Linear``.
A *windowed* variant (max2d, median2d, ...) is both POOLs (2x downsampling) with a global-average
HEAD; a *head* variant (gem, spp, netvlad, ...) is the HEAD after two ``max2d`` POOLs. Channel
counts after each stage come from dry forward passes, so ``catavgmax2d`` (2C) and pyramid or
NetVLAD heads (C * levels, K * D) need no bookkeeping.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..registry import create_pool, get_pool_info

__all__ = [
    "DEFAULT_VARIANTS",
    "LAB_VARIANTS",
    "OPTIONAL_VARIANTS",
    "PoolNet",
    "VariantNotApplicable",
    "VariantSpec",
    "build_model",
    "default_variants",
    "init_shared",
    "is_variant_name",
    "resolve_variant",
]

#: the variants of a default run: every claim of the report needs some of them.
DEFAULT_VARIANTS: tuple[str, ...] = (
    "max2d",
    "strided_conv",
    "overlapping_max2d",
    "avg2d",
    "stochastic2d",
    "median2d",
    "avgmax2d",
    "catavgmax2d",
    "mixed2d",
    "soft2d",
    "lip2d",
    "blur2d",
    "maxblur2d",
    "gem",
    "spp2d",
    "yolo_spp",
    "yolo_spp_k19",
    "netvlad",
    "compact_bilinear",
)

#: pools of the zoo issues that join the default run when this torchpool registers them.
OPTIONAL_VARIANTS: tuple[str, ...] = (
    "s3pool2d",
    "tree2d",
    "spectral2d",
    "lse",
    "rmac",
    "attention_latent",
    "simpool",
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
    "soft2d": _K2S2,
    "lip2d": {"channels": None, "kernel_size": 3, "stride": 2, "padding": 1},
    "blur2d": {"kernel_size": 3, "stride": 2},
    "maxblur2d": {"kernel_size": 3, "stride": 2, "max_pool_size": 2},
    # takes an output size, not a stride: half of the training size at each stage ("half")
    "spectral2d": {"output_size": "half"},
    "tree2d": {"kernel_size": 2, "stride": 2, "init": "average"},
    "s3pool2d": {"stride": 2},
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

# neck variants: a stride-1 block between the last stage and the global-average head (max2d pools)
_NECKS: dict[str, dict[str, Any]] = {
    "yolo_spp": {"kernel_sizes": (5, 9, 13)},
    "sppf": {"kernel_size": 5, "repeats": 3},
}

#: the lab's own variants (not pools of the registry): a control without pooling, and a second
#: setting of a registered pool. Name -> (registry pool or None, role, kwargs, description).
LAB_VARIANTS: dict[str, tuple[str | None, str, dict[str, Any], str]] = {
    "strided_conv": (None, "pool", {}, "conv3x3 s2 (no pooling)"),
    "yolo_spp_k19": (
        "yolo_spp",
        "neck",
        {"kernel_sizes": (5, 9, 13, 19)},
        "YOLOv3's SPP block with the survey's extra 19x19 pool",
    ),
}

# constructor arguments that take the number of input channels, filled in for a probed pool
_CHANNEL_ARGS = ("channels", "dim", "dim_a", "in_channels", "num_features", "in_features")


class VariantNotApplicable(Exception):
    """A registered pool that this 2-d image experiment cannot use; the message says why."""


@dataclass(frozen=True)
class VariantSpec:
    """How one variant enters the model.

    Attributes:
        name: the variant's name (a registry name, or one of :data:`LAB_VARIANTS`).
        family: registry family (``"control"`` for the strided convolution).
        role: ``"pool"`` (replaces both 2x downsampling pools), ``"head"`` (replaces the global
            head) or ``"neck"`` (a stride-1 block before the global-average head).
        kwargs: constructor arguments (``channels=None`` is filled per stage).
        setting: a short human description of the arguments, e.g. ``"k2 s2"``.
        pool: the registry name to build (``None`` for the strided convolution).
    """

    name: str
    family: str
    role: str
    kwargs: dict[str, Any]
    setting: str
    pool: str | None = None


def _describe(kwargs: dict[str, Any]) -> str:
    short = {"kernel_size": "k", "stride": "s", "padding": "p"}
    parts = [f"{short[k]}{v}" for k, v in kwargs.items() if k in short]
    parts += [f"{k}={v}" for k, v in kwargs.items() if k not in short and k != "channels" and v is not None]
    return " ".join(parts)


def is_variant_name(name: str) -> bool:
    """Whether ``name`` is a lab variant or a registered pool.

    Example:
        >>> is_variant_name("strided_conv"), is_variant_name("max2d"), is_variant_name("nope")
        (True, True, False)
    """
    if name in LAB_VARIANTS:
        return True
    try:
        get_pool_info(name)
    except ValueError:
        return False
    return True


def default_variants() -> list[str]:
    """:data:`DEFAULT_VARIANTS` plus the :data:`OPTIONAL_VARIANTS` this torchpool registers.

    Example:
        >>> default_variants()[:3]
        ['max2d', 'strided_conv', 'overlapping_max2d']
    """
    return list(DEFAULT_VARIANTS) + [n for n in OPTIONAL_VARIANTS if is_variant_name(n)]


def _fill_channels(builder: Any, kwargs: dict[str, Any], channels: int) -> dict[str, Any]:
    """``kwargs`` with each channel-count argument it holds or the builder requires set to ``channels``."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return dict(kwargs)
    out = dict(kwargs)
    for key in _CHANNEL_ARGS:
        required = key in params and params[key].default is inspect.Parameter.empty
        if required or key in out:
            out[key] = channels
    return out


def _probe_role(name: str, example: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Role and arguments of a pool the lab has no entry for, found by dry runs on a 64x8x8 map.

    A pool whose output is a vector (or 1x1) is a head; one that halves 8x8 to 4x4 (with its
    example arguments, or with ``kernel_size=2, stride=2``) is a 2x downsampling pool.
    """
    info = get_pool_info(name)
    for kwargs in (dict(example), {**example, **_K2S2}):
        try:
            module = create_pool(name, **_fill_channels(info.builder, kwargs, HEAD_DIM))
            module.eval()
            with torch.no_grad():
                y = module(torch.rand(2, HEAD_DIM, 8, 8))
        except (TypeError, ValueError, RuntimeError):
            continue
        if not isinstance(y, Tensor):
            continue
        if y.dim() == 2 or tuple(y.shape[-2:]) == (1, 1):
            return "head", kwargs
        if tuple(y.shape[-2:]) == (4, 4):
            return "pool", kwargs
    raise VariantNotApplicable(
        "neither a 2x downsampling pool nor a head on a 64x8x8 map with its example arguments "
        "or kernel_size=2, stride=2"
    )


def resolve_variant(name: str, num_classes: int = 10) -> VariantSpec:
    """How ``name`` enters the model.

    Args:
        name: a registry name (the returned spec carries the registry's spelling of it) or one
            of :data:`LAB_VARIANTS`.
        num_classes: number of classes (some heads are classifiers themselves).

    Raises:
        ValueError: for a name that is not registered (with close matches).
        VariantNotApplicable: for a registered pool this 2-d experiment cannot use.

    Example:
        >>> resolve_variant("maxblur2d").setting
        'k3 s2 max_pool_size=2'
    """
    if name in LAB_VARIANTS:
        pool, role, kwargs, description = LAB_VARIANTS[name]
        family = get_pool_info(pool).family if pool else "control"
        return VariantSpec(name, family, role, dict(kwargs), _describe(kwargs) or description, pool)
    info = get_pool_info(name)  # ValueError for unknown names
    name = info.name  # the registry's own spelling, should it accept other names for a pool
    if 2 not in info.dims:
        dims = ",".join(f"{d}d" for d in info.dims)
        raise VariantNotApplicable(f"supports {dims} inputs only; compare trains a 2-d image CNN")
    if name in _NECKS:
        kwargs = dict(_NECKS[name])
        return VariantSpec(name, info.family, "neck", kwargs, _describe(kwargs), name)
    if name in _WINDOWED:
        kwargs = dict(_WINDOWED[name])
        return VariantSpec(name, info.family, "pool", kwargs, _describe(kwargs), name)
    if name in _HEADS:
        kwargs = _HEADS[name](num_classes)
        return VariantSpec(name, info.family, "head", kwargs, _describe(kwargs) or "default", name)
    # a pool registered elsewhere (a zoo pool): its role and arguments from dry runs
    role, kwargs = _probe_role(name, dict(info.example_kwargs))
    if any(key in kwargs for key in _CHANNEL_ARGS) or role == "head":
        kwargs = _fill_channels(info.builder, kwargs, HEAD_DIM)
        if role == "pool":
            kwargs.update({key: None for key in _CHANNEL_ARGS if key in kwargs})
    return VariantSpec(name, info.family, role, kwargs, _describe(kwargs) or "example kwargs", name)


def _make_pool(spec: VariantSpec, channels: int, size: tuple[int, int] = (0, 0)) -> nn.Module:
    if spec.pool is None:  # the strided-convolution control
        return nn.Conv2d(channels, channels, 3, stride=2, padding=1)
    kwargs = dict(spec.kwargs)
    if spec.name in _WINDOWED or spec.name in _HEADS or spec.name in _NECKS or spec.name in LAB_VARIANTS:
        if "channels" in kwargs:
            kwargs["channels"] = channels
        if kwargs.get("output_size") == "half":
            kwargs["output_size"] = (max(1, size[0] // 2), max(1, size[1] // 2))
    else:
        kwargs = _fill_channels(get_pool_info(spec.pool).builder, kwargs, channels)
    return create_pool(spec.pool, **kwargs)


def init_shared(model: nn.Module, seed: int) -> None:
    """Initialises every convolution, batch norm and linear layer from its own seeded stream.

    Layer ``k`` (in ``named_modules`` order of the fixed stages ``stage1``, ``stage2``,
    ``stage3``, ``classifier``) draws from seed ``seed * 1009 + k``, so two variants of one seed
    start from the same weights wherever their layers have the same shape, whatever the pools
    drew when they were built. The global random state is left as it was.

    Args:
        model: a :class:`PoolNet`.
        seed: the run's seed.
    """
    fixed = ("stage1", "stage2", "stage3", "classifier")
    k = 0
    with torch.random.fork_rng(devices=[]):
        for prefix in fixed:
            part = getattr(model, prefix)
            for module in part.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset) and isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                    torch.manual_seed(seed * 1009 + k)
                    reset()
                    k += 1


class PoolNet(nn.Module):
    """Three 3x3 conv stages with two pools between them, a head and a linear classifier.

    Args:
        pool1: pool after the first stage.
        pool2: pool after the second stage.
        head: pooling head after the third stage (anything whose output flattens to a vector).
        channels: the channels entering stages 2 and 3 (after the pools) and the head's
            flattened output width, from dry runs.
        num_classes: classifier outputs.
        neck: a block between the third stage and the head (default none).
    """

    def __init__(
        self,
        pool1: nn.Module,
        pool2: nn.Module,
        head: nn.Module,
        channels: tuple[int, int, int],
        num_classes: int,
        neck: nn.Module | None = None,
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
        self.neck = neck if neck is not None else nn.Identity()
        self.head = head
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits for ``(N, 1, H, W)`` images."""
        x = self.pool1(self.stage1(x))
        x = self.pool2(self.stage2(x))
        x = self.head(self.neck(self.stage3(x)))
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
        neck: nn.Module | None = None
        if spec.role == "pool":
            half = (image_size[0] // 2, image_size[1] // 2)
            pool1, pool2 = _make_pool(spec, 16, image_size), _make_pool(spec, 32, half)
            head: nn.Module = create_pool("global_avg")
        else:
            pool1, pool2 = (
                create_pool("max2d", kernel_size=2, stride=2),
                create_pool("max2d", kernel_size=2, stride=2),
            )
            if spec.role == "neck":
                neck = _make_pool(spec, HEAD_DIM)
                head = create_pool("global_avg")
            else:
                head = _make_pool(spec, HEAD_DIM)
        with torch.no_grad():
            for module in (pool1, pool2, head, neck):
                if module is not None:
                    module.eval()
            y = pool1(stage1(dummy))
            c1 = int(y.shape[1])
            y = pool2(torch.relu(nn.Conv2d(c1, 32, 3, padding=1)(y)))
            c2 = int(y.shape[1])
            if min(y.shape[-2:]) < 1:
                raise VariantNotApplicable(
                    f"leaves no spatial extent on {image_size[0]}x{image_size[1]} inputs"
                )
            z = torch.rand(2, HEAD_DIM, *y.shape[-2:])
            if neck is not None:
                z = neck(z)
            features = int(torch.flatten(head(z), 1).shape[1])
    except VariantNotApplicable:
        raise
    except (TypeError, ValueError, RuntimeError) as exc:
        raise VariantNotApplicable(f"cannot build or run it in this CNN: {exc}") from None
    model = PoolNet(pool1, pool2, head, (c1, c2, features), num_classes, neck)
    model.train()
    return model
