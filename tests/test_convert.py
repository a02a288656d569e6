"""Model surgery: swap_pooling on a small ResNet-style model."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchpool.convert import SwapReport, swap_pooling
from torchpool.nn import (
    AdaptiveCatAvgMaxPool2d,
    BilinearPool,
    BlurPool2d,
    GeM,
    LIPPool2d,
    MaxBlurPool2d,
    MedianPool2d,
    NetVLAD,
)

C = 8


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class TinyResNet(nn.Module):
    def __init__(self, channels: int = C, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = Block(channels)
        self.layer2 = Block(channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        x = torch.flatten(self.avgpool(x), 1)
        logits: torch.Tensor = self.fc(x)
        return logits


def _model() -> TinyResNet:
    torch.manual_seed(0)
    return TinyResNet().eval()


X = torch.randn(2, 3, 32, 32)


def _same_params_except(a: nn.Module, b: nn.Module, skip: tuple[str, ...] = ()) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for key, value in sa.items():
        if key.startswith(skip):
            continue
        assert torch.equal(value, sb[key]), key


def test_stem_maxpool_to_median_keeps_geometry_and_weights() -> None:
    model = _model()
    new, report = swap_pooling(model, "median2d", select=nn.MaxPool2d, return_report=True)
    assert isinstance(new.maxpool, MedianPool2d)
    assert (new.maxpool.kernel_size, new.maxpool.stride, new.maxpool.padding) == (3, 2, 1)
    stem = F.relu(model.bn1(model.conv1(X)))
    assert new.maxpool(stem).shape == model.maxpool(stem).shape
    assert new(X).shape == (2, 10)
    _same_params_except(model, new)
    assert [r.name for r in report.replaced] == ["maxpool"]
    assert isinstance(model.maxpool, nn.MaxPool2d)  # copy by default: original untouched


@pytest.mark.parametrize(
    "select",
    ["maxpool", "max*", lambda name, m: isinstance(m, nn.MaxPool2d), (nn.MaxPool2d, nn.MaxPool3d)],
    ids=["name", "pattern", "predicate", "tuple"],
)
def test_select_forms(select: Any) -> None:
    new, report = swap_pooling(_model(), "median2d", select=select, example_input=X, return_report=True)
    assert [r.name for r in report.replaced] == ["maxpool"]
    assert isinstance(new.avgpool, nn.AdaptiveAvgPool2d)


def test_nested_pattern_and_default_select() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)), nn.AvgPool2d(2))
    _, report = swap_pooling(model, "avgmax2d", select="1.*", return_report=True)
    assert [r.name for r in report.replaced] == ["1.1"]
    new, report = swap_pooling(model, "avgmax2d", return_report=True)  # default: every window pool
    assert [r.name for r in report.replaced] == ["1.1", "2"]
    assert new(torch.randn(1, 3, 10, 10)).shape == (1, 4, 2, 2)


def test_inplace_vs_copy() -> None:
    model = _model()
    copied = swap_pooling(model, "median2d", select="maxpool")
    assert copied is not model and isinstance(model.maxpool, nn.MaxPool2d)
    done, report = swap_pooling(model, "median2d", select="maxpool", inplace=True, return_report=True)
    assert done is model and report.model is model and isinstance(model.maxpool, MedianPool2d)


def test_avgpool_to_gem_same_width() -> None:
    model = _model()
    new = swap_pooling(model, "gem")  # default select: the global pool; provably same width
    assert isinstance(new.avgpool, GeM) and new.fc is not model.fc and isinstance(new.maxpool, nn.MaxPool2d)
    assert new(X).shape == (2, 10)
    assert new.avgpool.flatten is False  # keeps the rank the old layer returned: (N, C, 1, 1)
    measured, report = swap_pooling(model, "gem", select="avgpool", example_input=X, return_report=True)
    assert report.replaced[0].old_width == report.replaced[0].new_width == C
    assert report.replaced[0].consumer is None
    assert isinstance(measured.fc, nn.Linear)
    assert torch.equal(measured.fc.weight, model.fc.weight)


def test_avgpool_to_catavgmax_rebuilds_fc() -> None:
    model = _model()
    with pytest.raises(ValueError, match="example_input"):
        swap_pooling(model, "adaptive_catavgmax2d", select="avgpool")
    new, report = swap_pooling(
        model, "adaptive_catavgmax2d", select="avgpool", example_input=X, return_report=True
    )
    assert isinstance(new.avgpool, AdaptiveCatAvgMaxPool2d) and isinstance(new.fc, nn.Linear)
    assert (new.fc.in_features, new.fc.out_features) == (2 * C, 10)
    assert new(X).shape == (2, 10)
    rec = report.replaced[0]
    assert (rec.old_width, rec.new_width, rec.consumer) == (C, 2 * C, "fc")
    text = str(report)
    assert "avgpool" in text and f"{C} -> {2 * C}" in text and "fc rebuilt" in text
    _same_params_except(model, new, skip=("fc.",))
    assert model.fc.in_features == C


def test_avgpool_to_netvlad() -> None:
    new = swap_pooling(_model(), "netvlad", select="avgpool", num_clusters=4, dim=C, example_input=X)
    assert isinstance(new.avgpool, NetVLAD) and isinstance(new.fc, nn.Linear)
    assert new.fc.in_features == 4 * C
    assert new(X).shape == (2, 10)


def test_refuses_when_consumer_is_not_linear() -> None:
    model = nn.Sequential(nn.Conv2d(3, C, 3), nn.AdaptiveAvgPool2d(1), nn.Conv2d(C, 10, 1), nn.Flatten())
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"cannot find the nn.Linear that consumes '1'.*'2' \(Conv2d\)"):
        swap_pooling(model, "adaptive_catavgmax2d", example_input=x)
    assert isinstance(model[1], nn.AdaptiveAvgPool2d)


class TwoCalls(nn.Module):
    """One max pool used on an 8x8 map and then on a 1x1 map (the dry run measures the first)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, C, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.pool(self.conv(x))
        corner: torch.Tensor = self.pool(y[:, :, :1, :1])
        return y.mean() + corner.mean()


def test_inplace_failure_is_undone() -> None:
    # median2d pads by reflection, which a 1x1 map cannot give: the check run fails -> undone.
    model = TwoCalls()
    with pytest.raises(ValueError, match="swap undone"):
        swap_pooling(model, "median2d", inplace=True, example_input=torch.randn(1, 3, 8, 8))
    assert isinstance(model.pool, nn.MaxPool2d)


def test_geometry_refusals() -> None:
    with pytest.raises(ValueError, match=r"'maxpool'.*'kernel_size'"):
        swap_pooling(_model(), "gem", select="maxpool")
    with pytest.raises(ValueError, match=r"'avgpool'.*kernel_size"):
        swap_pooling(_model(), "median2d", select="avgpool")
    with pytest.raises(ValueError, match="supports 1d only"):
        swap_pooling(_model(), "median1d", select="maxpool")


def test_swapped_model_trains_and_round_trips() -> None:
    model = swap_pooling(_model(), "gem", select="avgpool", example_input=X).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert isinstance(model.avgpool, GeM)
    p_before = model.avgpool.p.detach().clone()
    loss = F.cross_entropy(model(X), torch.tensor([1, 2]))
    torch.autograd.backward(loss)
    assert model.avgpool.p.grad is not None and model.avgpool.p.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(model.avgpool.p, p_before)

    fresh = swap_pooling(_model(), "gem", select="avgpool")
    fresh.load_state_dict(model.state_dict())
    model.eval()
    fresh.eval()
    assert torch.allclose(fresh(X), model(X))


def test_netvlad_model_trains() -> None:
    model = swap_pooling(_model(), "netvlad", select="avgpool", num_clusters=4, dim=C, example_input=X)
    model.train()
    torch.autograd.backward(F.cross_entropy(model(X), torch.tensor([1, 2])))
    assert isinstance(model.avgpool, NetVLAD) and isinstance(model.fc, nn.Linear)
    assert model.avgpool.centroids.grad is not None
    assert model.fc.weight.grad is not None


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="select"):
        swap_pooling(_model(), "median2d", select=3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="select"):
        swap_pooling(_model(), "median2d", select=(nn.MaxPool2d, "x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="median2d"):
        swap_pooling(_model(), "medain2d")
    with pytest.raises(ValueError, match="matched no layer"):
        swap_pooling(_model(), "median2d", select="nothing*")


def test_class_and_callable_targets() -> None:
    new = swap_pooling(_model(), MedianPool2d)  # a registered class: default select = window pools
    assert isinstance(new.maxpool, MedianPool2d) and isinstance(new.avgpool, nn.AdaptiveAvgPool2d)
    assert new.maxpool.kernel_size == 3
    new, report = swap_pooling(
        _model(), lambda **kw: nn.AvgPool2d(**kw), select="maxpool", example_input=X, return_report=True
    )
    assert isinstance(new.maxpool, nn.AvgPool2d) and report.replaced[0].note == f"same ({C * 8 * 8})"
    assert isinstance(report, SwapReport)


def test_torchvision_resnet18() -> None:
    models = pytest.importorskip("torchvision.models")
    net = models.resnet18(num_classes=5)
    new = swap_pooling(net, "adaptive_catavgmax2d", example_input=torch.randn(1, 3, 64, 64))
    assert isinstance(new.fc, nn.Linear)
    assert new.fc.in_features == 1024
    assert new(torch.randn(1, 3, 64, 64)).shape == (1, 5)


class LayerNorm2d(nn.LayerNorm):
    """torchvision's/timm's LayerNorm2d: a LayerNorm over the channels of an (N, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class VGGLike(nn.Module):
    """torchvision's VGG head: an adaptive 3x3 grid, then a Sequential classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((3, 3))
        self.classifier = nn.Sequential(nn.Linear(C * 9, 16), nn.ReLU(), nn.Dropout(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
        return logits


class Head(nn.Module):
    """timm's SelectAdaptivePool2d: the pool nested in a container with its own (no-op) flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.flatten(self.pool(x))
        return y


class ConvNeXtLike(nn.Module):
    """torchvision's ConvNeXt head: the pool's (N, C, 1, 1) goes through LayerNorm2d, Flatten, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, C, 3, padding=1)
        self.avgpool = Head()
        self.classifier = nn.Sequential(LayerNorm2d(C), nn.Flatten(1), nn.Linear(C, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.avgpool(self.features(x)))
        return logits


def _trains(model: nn.Module, x: torch.Tensor, classes: int = 10) -> None:
    model.train()
    y = model(x)
    assert y.shape == (x.shape[0], classes) and torch.isfinite(y).all()
    torch.autograd.backward(y.sum())
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("to", "kwargs", "width"),
    [
        ("gem", {}, C),
        ("global_max", {}, C),
        ("spp2d", {}, C * 21),
        ("netvlad", {"num_clusters": 4}, 4 * C),
        ("bilinear", {}, C * C),
        ("catavgmax2d", {}, 2 * C * 9),  # a windowed name on an adaptive grid: the adaptive form
    ],
)
def test_vgg_adaptive_grid_to_global_pools(to: str, kwargs: dict[str, Any], width: int) -> None:
    torch.manual_seed(0)
    model = VGGLike()
    x = torch.randn(2, 3, 12, 12)
    new, report = swap_pooling(model, to, select="avgpool", example_input=x, return_report=True, **kwargs)
    assert new.classifier[0].in_features == width and new.classifier[0].out_features == 16
    assert report.replaced[0].consumer == "classifier.0"
    assert new.classifier[3] is not model.classifier[3]  # a deep copy
    torch.testing.assert_close(new.classifier[3].weight, model.classifier[3].weight)
    _trains(new, x)
    with pytest.raises(ValueError, match="example_input"):
        swap_pooling(model, to, select="avgpool", **kwargs)  # the width changes: it must be measured


def test_netvlad_and_bilinear_take_the_channels_from_example_input() -> None:
    new = swap_pooling(
        VGGLike(), "netvlad", select="avgpool", num_clusters=4, example_input=torch.randn(1, 3, 8, 8)
    )
    assert isinstance(new.avgpool, NetVLAD) and new.avgpool.dim == C
    new = swap_pooling(VGGLike(), "bilinear", select="avgpool", example_input=torch.randn(1, 3, 8, 8))
    assert isinstance(new.avgpool, BilinearPool) and new.avgpool.dim_a == C
    with pytest.raises(ValueError, match=r"netvlad.*needs dim=.*'avgpool'.*example_input"):
        swap_pooling(VGGLike(), "netvlad", select="avgpool", num_clusters=4)


@pytest.mark.parametrize(
    ("to", "kwargs", "norm"),
    [
        ("gem", {}, C),
        ("adaptive_catavgmax2d", {}, 2 * C),
        ("spp2d", {}, 21 * C),
        ("netvlad", {"num_clusters": 2}, 2 * C),
    ],
)
def test_convnext_head_keeps_rank_and_rebuilds_the_norm(to: str, kwargs: dict[str, Any], norm: int) -> None:
    torch.manual_seed(0)
    model = ConvNeXtLike()
    x = torch.randn(2, 3, 8, 8)
    new, report = swap_pooling(model, to, example_input=x, return_report=True, **kwargs)
    assert [r.name for r in report.replaced] == ["avgpool.pool"]
    assert isinstance(new.classifier[0], LayerNorm2d) and new.classifier[0].normalized_shape == (norm,)
    assert new.classifier[0].eps == model.classifier[0].eps
    assert new.classifier[2].in_features == norm
    if norm != C:
        assert "classifier.0 rebuilt" in report.replaced[0].note
        assert torch.equal(new.classifier[0].weight, torch.ones(norm))  # fresh
    _trains(new, x)


def test_gem_on_convnext_needs_no_example_input() -> None:
    new = swap_pooling(ConvNeXtLike(), "gem")
    assert (
        isinstance(new.avgpool, Head)
        and isinstance(new.avgpool.pool, GeM)
        and new.avgpool.pool.flatten is False
    )
    assert new(torch.randn(1, 3, 8, 8)).shape == (1, 10)


def test_windowed_name_on_a_global_layer_uses_the_adaptive_form() -> None:
    new = swap_pooling(_model(), "catavgmax2d", select="avgpool", example_input=X)
    assert isinstance(new.avgpool, AdaptiveCatAvgMaxPool2d) and isinstance(new.fc, nn.Linear)
    assert new.fc.in_features == 2 * C
    assert new(X).shape == (2, 10)
    new = swap_pooling(_model(), "avgmax", example_input=X)  # default select: the window pools only
    assert isinstance(new.avgpool, nn.AdaptiveAvgPool2d) and type(new.maxpool).__name__ == "AvgMaxPool2d"
    with pytest.raises(ValueError, match=r"'maxpool'.*'layer1.conv1' \(Conv2d\) runs before any nn.Linear"):
        swap_pooling(_model(), "catavgmax", example_input=X)  # doubles the channels of the stem
    with pytest.raises(
        ValueError, match=r"'avgpool'.*no window \(kernel_size\).*'median2d' has no adaptive form"
    ):
        swap_pooling(_model(), "median2d", select="avgpool")


class Shared(nn.Module):
    """One max pool registered under two names (and called twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, C, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.down = self.pool
        self.fc = nn.Linear(C, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(self.down(self.pool(self.conv(x))).mean((2, 3)))
        return logits


@pytest.mark.parametrize("example", [None, torch.randn(1, 3, 8, 8)])
def test_instance_under_two_names_is_swapped_under_both(example: torch.Tensor | None) -> None:
    new, report = swap_pooling(Shared(), "median2d", example_input=example, return_report=True)
    assert [r.name for r in report.replaced] == ["pool", "down"]
    assert isinstance(new.pool, MedianPool2d) and new.down is new.pool
    assert not any(isinstance(m, nn.MaxPool2d) for m in new.modules())
    calls: list[str] = []
    new.pool.register_forward_hook(lambda *_: calls.append("median"))
    new(torch.randn(1, 3, 8, 8))
    assert calls == ["median", "median"]


def test_model_argument_and_flags_are_checked() -> None:
    with pytest.raises(TypeError, match=r"model must be an nn\.Module, got NoneType"):
        swap_pooling(None, "median2d")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="return_report must be a bool"):
        swap_pooling(_model(), "median2d", return_report=1)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="inplace must be a bool"):
        swap_pooling(_model(), "median2d", inplace="yes")  # type: ignore[call-overload]


def test_refuses_when_no_linear_runs_after_the_pool() -> None:
    # squeezenet: the global pool is the last module; torch.flatten follows in forward.
    model = nn.Sequential(nn.Conv2d(3, C, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match=r"no nn\.Linear runs after it"):
        swap_pooling(model, "adaptive_catavgmax2d", example_input=torch.randn(1, 3, 8, 8))
    assert swap_pooling(model, "gem")(torch.randn(1, 3, 8, 8)).shape == (1, C)


def test_stem_maxpool_to_the_downsampling_pools() -> None:
    """LIP takes the channels from the dry run; BlurPool keeps its binomial filter and MaxBlurPool
    gets the old window as its dense max pool (a blur's ``kernel_size`` is no window)."""
    stem = F.relu(_model().bn1(_model().conv1(X)))
    new = swap_pooling(_model(), "lip2d", select=nn.MaxPool2d, example_input=X)
    lip = new.maxpool
    assert isinstance(lip, LIPPool2d)
    assert (lip.channels, lip.kernel_size, lip.stride, lip.padding) == (C, 3, 2, 1)
    assert new(X).shape == (2, 10)
    with pytest.raises(ValueError, match=r"lip2d.*needs channels=.*example_input"):
        swap_pooling(_model(), "lip2d", select=nn.MaxPool2d)
    with pytest.raises(ValueError, match=r"'blur2d' may change the output width; pass example_input="):
        swap_pooling(_model(), "blur2d", select=nn.MaxPool2d)  # the blur pads by its own rule
    blur = swap_pooling(_model(), "blur2d", select=nn.MaxPool2d, example_input=X).maxpool
    assert isinstance(blur, BlurPool2d)
    assert (blur.kernel_size, blur.stride) == (3, 2)
    assert blur(stem).shape == _model().maxpool(stem).shape
    # the old 3x3 window becomes the dense max pool, unpadded as in kornia: 16 -> 14 -> 7, not 8
    with pytest.raises(ValueError, match=r"'maxpool' changes its output width.*'layer1.conv1'"):
        swap_pooling(_model(), "maxblur2d", select=nn.MaxPool2d, example_input=X)
    new = swap_pooling(_model(), "maxblur2d", select=nn.MaxPool2d, max_pool_size=2, example_input=X)
    maxblur = new.maxpool
    assert isinstance(maxblur, MaxBlurPool2d)
    assert (maxblur.max_pool_size, maxblur.kernel_size, maxblur.stride) == (2, 3, 2)
    assert new(X).shape == (2, 10)


class _FilterPool(nn.Module):
    """A user's pool whose ``kernel_size`` is a filter (declared by ``pooling_window = None``)."""

    pooling_window = None

    def __init__(self, kernel_size: int = 5, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.kernel_size // 2)


def test_pooling_window_is_declared_by_the_class() -> None:
    """The argument that takes the old window comes from the target class (``pooling_window``),
    the same whether the target is named or passed as a class; without the declaration the old
    window would become the filter."""
    by_class = swap_pooling(_model(), MaxBlurPool2d, select=nn.MaxPool2d, max_pool_size=2, example_input=X)
    assert isinstance(by_class.maxpool, MaxBlurPool2d)
    assert (by_class.maxpool.max_pool_size, by_class.maxpool.kernel_size) == (2, 3)
    custom = swap_pooling(_model(), _FilterPool, select=nn.MaxPool2d, example_input=X).maxpool
    assert isinstance(custom, _FilterPool)
    assert (custom.kernel_size, custom.stride) == (5, 2)  # its own filter kept, the old 3 not carried
    plain = type("_Plain", (_FilterPool,), {"pooling_window": "kernel_size"})  # a window pool again
    with pytest.raises(ValueError, match=r"takes no 'padding' argument"):  # the old geometry is carried
        swap_pooling(_model(), plain, select=nn.MaxPool2d, example_input=X)
