"""The measurements of ``torchpool compare`` that need no training.

* :func:`costs`: per variant, parameters, FLOPs of one forward pass (counted by
  ``torch.utils.flop_counter``: convolutions and matrix products; pooling itself is not
  counted), and the measured forward latency and training-step time on this machine, all
  models timed in turns so that a change in the machine's load hits every variant alike. The
  step times are also the run's time estimate.
* :func:`unpooling`: the reconstruction error of max-pool then max-unpool against nearest and
  bilinear upsampling of the same max-pooled images.
* :func:`spp_receptive_fields`: the receptive field of YOLOv3, YOLOv3-SPP and YOLOv3-SPP with a
  19x19 pool at 608x608, from the darknet cfg structure (:mod:`torchpool.lab.yolocfg`).
* :func:`fixed_size_head`: what a flatten + linear classifier (a windowed head) does at other
  input sizes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..darknet import trace_cfg
from ..registry import create_pool
from .models import HEAD_DIM, PoolNet, VariantSpec, build_model
from .stats import paired_interval
from .yolocfg import yolov3_cfg

__all__ = ["costs", "fixed_size_head", "no_pool_model", "spp_receptive_fields", "unpooling", "variant_models"]


def no_pool_model(num_classes: int) -> PoolNet:
    """The lab's CNN without its two pools (identity): every stage runs at the input size."""
    return PoolNet(nn.Identity(), nn.Identity(), create_pool("global_avg"), (16, 32, HEAD_DIM), num_classes)


def _flops(model: nn.Module, x: Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def costs(
    models: Mapping[str, nn.Module],
    image_size: tuple[int, int],
    batch: int,
    repeats: int = 5,
    classes: int = 10,
) -> dict[str, dict[str, Any]]:
    """Parameters, FLOPs per image, forward latency and training-step time of each model.

    Every repeat times each model once, in turns (a forward pass of ``batch`` images in eval
    mode, then one training step on ``batch`` images), after one untimed warm-up of each.

    Args:
        models: name -> freshly built model (its weights are trained by one step here: pass
            models that are not used afterwards).
        image_size: ``(H, W)``.
        batch: images per forward pass and per training step.
        repeats: timed repeats per model.
        classes: classes of the random labels of the training step.

    Returns:
        name -> ``parameters``, ``flops`` (per image), ``latency_ms`` (median forward time
        per batch), ``latency_runs`` (every repeat, ms), ``step_seconds`` (median time of one
        training step).
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, *image_size, generator=gen)
    y = torch.randint(classes, (batch,), generator=gen)
    out: dict[str, dict[str, Any]] = {}
    optimizers = {}
    for name, model in models.items():
        out[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "flops": _flops(model, x[:1]),
            "latency_runs": [],
            "step_runs": [],
        }
        params = list(model.parameters())
        optimizers[name] = torch.optim.Adam(params) if params else None
    for r in range(repeats + 1):
        for name, model in models.items():
            model.eval()
            with torch.no_grad():
                start = time.perf_counter()
                model(x)
                forward = time.perf_counter() - start
            model.train()
            start = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            optimizer = optimizers[name]
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                optimizer.step()
            step = time.perf_counter() - start
            if r:  # the first round warms up
                out[name]["latency_runs"].append(1000 * forward)
                out[name]["step_runs"].append(step)
    for entry in out.values():
        entry["latency_ms"] = statistics.median(entry["latency_runs"])
        entry["step_seconds"] = statistics.median(entry.pop("step_runs"))
    return out


def variant_models(
    specs: dict[str, VariantSpec], num_classes: int, image_size: tuple[int, int]
) -> dict[str, nn.Module]:
    """Freshly built models of ``specs`` and the pool-free reference ``"(no pooling)"``."""
    models: dict[str, nn.Module] = {
        name: build_model(spec, num_classes, image_size) for name, spec in specs.items()
    }
    models["(no pooling)"] = no_pool_model(num_classes)
    return models


def unpooling(images: Tensor) -> dict[str, Any]:
    """Reconstruction error (mean squared, per image) of 2x2 max pooling undone three ways.

    ``max_unpool`` puts each maximum back at its position and zeros elsewhere (the inverse
    SegNet/DeconvNet use); ``nearest`` and ``bilinear`` upsample the same max-pooled image.

    Args:
        images: ``(N, 1, H, W)`` images in ``[0, 1]`` with even ``H`` and ``W``.

    Returns:
        ``mse``: method -> mean error over images; ``per_image``: method -> list of errors;
        ``differences``: ``"max_unpool - nearest"`` and ``"max_unpool - bilinear"`` -> paired
        :class:`~torchpool.lab.stats.Interval` fields over images.
    """
    h, w = images.shape[-2:]
    x = images[..., : h - h % 2, : w - w % 2]
    pooled, indices = F.max_pool2d(x, 2, 2, return_indices=True)
    size = x.shape[-2:]
    recon = {
        "max_unpool": F.max_unpool2d(pooled, indices, [2, 2], [2, 2], output_size=list(size)),
        "nearest": F.interpolate(pooled, size=size, mode="nearest"),
        "bilinear": F.interpolate(pooled, size=size, mode="bilinear", align_corners=False),
    }
    per_image = {k: ((r - x) ** 2).flatten(1).mean(1) for k, r in recon.items()}
    differences = {}
    for other in ("nearest", "bilinear"):
        i = paired_interval((per_image["max_unpool"] - per_image[other]).tolist())
        differences[f"max_unpool - {other}"] = i.__dict__
    return {
        "mse": {k: float(v.mean()) for k, v in per_image.items()},
        "per_image": {k: v.tolist() for k, v in per_image.items()},
        "differences": differences,
        "images": len(x),
    }


def spp_receptive_fields(size: int = 608) -> dict[str, list[int]]:
    """Receptive field (pixels, along the width) at the inputs of the three ``[yolo]`` layers.

    Args:
        size: the input side.

    Returns:
        ``yolov3``, ``yolov3-spp`` (pools 5/9/13) and ``yolov3-spp-19`` (5/9/13/19) -> one
        receptive field per detection scale, coarsest first; ``jump`` -> the strides there.

    Example:
        >>> spp_receptive_fields()["yolov3-spp"]
        [1301, 1333, 1349]
    """
    out: dict[str, list[int]] = {}
    for name, spp in (("yolov3", None), ("yolov3-spp", (5, 9, 13)), ("yolov3-spp-19", (5, 9, 13, 19))):
        shapes = trace_cfg(yolov3_cfg(spp, size))
        out[name] = [s.rf_width for s in shapes if s.type == "yolo"]
        out["jump"] = [s.jump_width for s in shapes if s.type == "yolo"]
    return out


def fixed_size_head(
    num_classes: int, image_size: tuple[int, int], scales: tuple[float, ...]
) -> dict[str, str]:
    """What the lab's CNN with a flatten + linear classifier (no global pooling) does at other sizes.

    Returns:
        ``"scale F"`` -> ``"runs"`` or the error message of the forward pass.
    """
    h, w = image_size
    side = (h // 4, w // 4)
    model = PoolNet(
        create_pool("max2d", kernel_size=2, stride=2),
        create_pool("max2d", kernel_size=2, stride=2),
        nn.Identity(),
        (16, 32, HEAD_DIM * side[0] * side[1]),
        num_classes,
    ).eval()
    out = {}
    for factor in (1.0, *scales):
        size = (round(h * factor), round(w * factor))
        try:
            with torch.no_grad():
                model(torch.zeros(1, 1, *size))
            out[f"scale {factor:g}"] = "runs"
        except RuntimeError as exc:
            out[f"scale {factor:g}"] = str(exc).splitlines()[0]
    return out
