"""Model surgery: swap_pooling on a small ResNet-style model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchpool.convert import SwapReport, swap_pooling
from torchpool.nn import AdaptiveCatAvgMaxPool2d, GeM, MedianPool2d, NetVLAD

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
        return self.fc(x)


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
    report = swap_pooling(model, "median2d", select=nn.MaxPool2d)
    new = report.model
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
def test_select_forms(select: object) -> None:
    report = swap_pooling(_model(), "median2d", select=select, example_input=X)
    assert [r.name for r in report.replaced] == ["maxpool"]
    assert isinstance(report.model.avgpool, nn.AdaptiveAvgPool2d)


def test_nested_pattern_and_default_select() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)), nn.AvgPool2d(2))
    report = swap_pooling(model, "avgmax2d", select="1.*")
    assert [r.name for r in report.replaced] == ["1.1"]
    report = swap_pooling(model, "avgmax2d")  # default: every pooling layer
    assert [r.name for r in report.replaced] == ["1.1", "2"]
    assert report.model(torch.randn(1, 3, 10, 10)).shape == (1, 4, 2, 2)


def test_inplace_vs_copy() -> None:
    model = _model()
    copied = swap_pooling(model, "median2d", select="maxpool")
    assert copied.model is not model and isinstance(model.maxpool, nn.MaxPool2d)
    done = swap_pooling(model, "median2d", select="maxpool", inplace=True)
    assert done.model is model and isinstance(model.maxpool, MedianPool2d)


def test_avgpool_to_gem_same_width() -> None:
    model = _model()
    report = swap_pooling(model, "gem", select="avgpool")  # provably same width: no example needed
    assert isinstance(report.model.avgpool, GeM) and report.model.fc is not model.fc
    assert report.model(X).shape == (2, 10)
    measured = swap_pooling(model, "gem", select="avgpool", example_input=X)
    assert measured.replaced[0].old_width == measured.replaced[0].new_width == C
    assert measured.replaced[0].consumer is None
    assert torch.equal(measured.model.fc.weight, model.fc.weight)


def test_avgpool_to_catavgmax_rebuilds_fc() -> None:
    model = _model()
    with pytest.raises(ValueError, match="example_input"):
        swap_pooling(model, "adaptive_catavgmax2d", select="avgpool")
    report = swap_pooling(model, "adaptive_catavgmax2d", select="avgpool", example_input=X)
    new = report.model
    assert isinstance(new.avgpool, AdaptiveCatAvgMaxPool2d)
    assert (new.fc.in_features, new.fc.out_features) == (2 * C, 10)
    assert new(X).shape == (2, 10)
    rec = report.replaced[0]
    assert (rec.old_width, rec.new_width, rec.consumer) == (C, 2 * C, "fc")
    text = str(report)
    assert "avgpool" in text and f"{C} -> {2 * C}" in text and "fc rebuilt" in text
    _same_params_except(model, new, skip=("fc.",))
    assert model.fc.in_features == C


def test_avgpool_to_netvlad() -> None:
    report = swap_pooling(_model(), "netvlad", select="avgpool", num_clusters=4, dim=C, example_input=X)
    assert isinstance(report.model.avgpool, NetVLAD)
    assert report.model.fc.in_features == 4 * C
    assert report.model(X).shape == (2, 10)


def test_refuses_when_consumer_is_not_linear() -> None:
    model = nn.Sequential(nn.Conv2d(3, C, 3), nn.AdaptiveAvgPool2d(1), nn.Conv2d(C, 10, 1), nn.Flatten())
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"cannot find the nn.Linear that consumes '1'.*Conv2d"):
        swap_pooling(model, "adaptive_catavgmax2d", example_input=x)
    assert isinstance(model[1], nn.AdaptiveAvgPool2d)


def test_inplace_failure_is_undone() -> None:
    # GeM flattens to (N, C); the 1x1 conv that follows cannot take it -> swap undone.
    model = nn.Sequential(nn.Conv2d(3, C, 3), nn.AdaptiveAvgPool2d(1), nn.Conv2d(C, 10, 1))
    with pytest.raises(ValueError, match="swap undone"):
        swap_pooling(model, "gem", inplace=True, example_input=torch.randn(1, 3, 8, 8))
    assert isinstance(model[1], nn.AdaptiveAvgPool2d)


def test_geometry_refusals() -> None:
    with pytest.raises(ValueError, match=r"'maxpool'.*'kernel_size'"):
        swap_pooling(_model(), "gem", select="maxpool")
    with pytest.raises(ValueError, match=r"'avgpool'.*kernel_size"):
        swap_pooling(_model(), "median2d", select="avgpool")
    with pytest.raises(ValueError, match="supports 1d only"):
        swap_pooling(_model(), "median1d", select="maxpool")


def test_swapped_model_trains_and_round_trips() -> None:
    report = swap_pooling(_model(), "gem", select="avgpool", example_input=X)
    model = report.model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    p_before = model.avgpool.p.detach().clone()
    loss = F.cross_entropy(model(X), torch.tensor([1, 2]))
    loss.backward()
    assert model.avgpool.p.grad is not None and model.avgpool.p.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(model.avgpool.p, p_before)

    fresh = swap_pooling(_model(), "gem", select="avgpool").model
    fresh.load_state_dict(model.state_dict())
    model.eval()
    fresh.eval()
    assert torch.allclose(fresh(X), model(X))


def test_netvlad_model_trains() -> None:
    model = swap_pooling(_model(), "netvlad", select="avgpool", num_clusters=4, dim=C, example_input=X).model
    model.train()
    F.cross_entropy(model(X), torch.tensor([1, 2])).backward()
    assert model.avgpool.centroids.grad is not None
    assert model.fc.weight.grad is not None


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="select"):
        swap_pooling(_model(), "median2d", select=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="select"):
        swap_pooling(_model(), "median2d", select=(nn.MaxPool2d, "x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="median2d"):
        swap_pooling(_model(), "medain2d")
    with pytest.raises(ValueError, match="matched no layer"):
        swap_pooling(_model(), "median2d", select="nothing*")


def test_class_and_callable_targets() -> None:
    report = swap_pooling(_model(), MedianPool2d, select="maxpool")
    assert isinstance(report.model.maxpool, MedianPool2d)
    assert report.model.maxpool.kernel_size == 3
    report = swap_pooling(_model(), lambda **kw: nn.AvgPool2d(**kw), select="maxpool", example_input=X)
    assert isinstance(report.model.maxpool, nn.AvgPool2d) and report.replaced[0].note == f"same ({C * 8 * 8})"
    assert isinstance(report, SwapReport)


def test_torchvision_resnet18() -> None:
    models = pytest.importorskip("torchvision.models")
    net = models.resnet18(num_classes=5)
    report = swap_pooling(
        net, "adaptive_catavgmax2d", select="avgpool", example_input=torch.randn(1, 3, 64, 64)
    )
    assert report.model.fc.in_features == 1024
    assert report.model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
