"""Tests of ``torchpool gallery`` and ``torchpool shape``."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from torchpool.cli import main
from torchpool.lab import shape
from torchpool.lab.gallery import _import_pyplot

mpimg = pytest.importorskip("matplotlib.image")

# ---------------------------------------------------------------------------------------------
# gallery
# ---------------------------------------------------------------------------------------------


def test_gallery_default_photo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    out = tmp_path / "g.png"
    assert main(["gallery", "--out", str(out), "--size", "64", "--seed", "3"]) == 0
    assert "16 panels, input 64x96" in capsys.readouterr().out
    image = mpimg.imread(out)
    assert image.ndim == 3 and image.shape[0] > 600 and image.shape[1] > 800
    assert 0.1 < image[..., :3].mean() < 0.95  # neither blank nor black


def test_gallery_image_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    source = tmp_path / "in.png"
    mpimg.imsave(source, rng.random((40, 30, 3)))
    out = tmp_path / "g.png"
    assert main(["gallery", "--image", str(source), "--out", str(out), "--size", "20"]) == 0
    assert "input 27x20" in capsys.readouterr().out
    assert mpimg.imread(out).shape[2] in (3, 4)


def test_gallery_grayscale_kept_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "gray.png"
    mpimg.imsave(source, np.linspace(0, 1, 16 * 12).reshape(16, 12), cmap="gray")
    assert main(["gallery", "--image", str(source), "--out", str(tmp_path / "g.png"), "--size", "0"]) == 0
    assert "input 16x12" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["missing.png", "not-an-image.png"])
def test_gallery_bad_image(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = tmp_path / name
    if name == "not-an-image.png":
        path.write_text("hello")
    assert main(["gallery", "--image", str(path), "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "torchpool gallery: error: cannot read image" in err and name in err
    assert "Traceback" not in err
    assert not (tmp_path / "g.png").exists()


def test_gallery_missing_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(RuntimeError, match=r'pip install "torchpool\[lab\]"'):
        _import_pyplot()


# ---------------------------------------------------------------------------------------------
# shape
# ---------------------------------------------------------------------------------------------


def _rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()[2:]]


def test_shape_resnet_stem(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shape", "--input", "224", "conv7s2p3", "pool3s2p1"]) == 0
    rows = _rows(capsys.readouterr().out)
    # index, layer, output, channels, rf, jump, start
    assert rows[0] == ["1", "conv7s2p3", "112", "-", "7", "2", "0"]
    assert rows[1] == ["2", "pool3s2p1", "56", "-", "11", "4", "0"]


def test_shape_2d_and_channels(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shape", "--input", "224x160", "--channels", "3", "conv7s2p3c64", "pool3s2p1", "gap"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["#", "layer", "output", "channels", "rf", "jump", "start"]
    assert lines[1].split()[:3] == ["input", "224x160", "3"]
    assert lines[3].split()[:4] == ["2", "pool3s2p1", "56x40", "64"]
    gap = lines[4].split()
    assert gap[:4] == ["3", "gap", "1x1", "64"]
    # every output position: 11 + (56 - 1) * 4 = 231 rows, 11 + (40 - 1) * 4 = 167 columns
    assert gap[4] == "231x167"


def test_shape_trace_values() -> None:
    layers = [shape.parse_token(t) for t in ("conv3", "pool2", "conv3d2", "up2")]
    states = shape.trace([32], layers)
    assert [s.size for s in states] == [(32,), (32,), (16,), (16,), (32,)]
    assert [s.rf[0] for s in states] == [1, 3, 4, 12, 12]
    assert states[-1].jump == (Fraction(1),)


def test_shape_spp_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shape", "--input", "13x13", "--channels", "512", "spp5,9,13", "sppf5"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows[0] == ["1", "spp5,9,13", "13x13", "2048", "13", "1", "0"]  # 1 + 12
    assert rows[1] == ["2", "sppf5", "13x13", "8192", "25", "1", "0"]  # sppf5 = spp5,9,13


def test_shape_sppnet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shape", "--input", "13x9", "--channels", "256", "sppnet1,2,4"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows[0][:5] == ["1", "sppnet1,2,4", "21", "bins", "5376"]


def test_shape_ceil(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shape", "--input", "7", "pool2"]) == 0
    assert _rows(capsys.readouterr().out)[0][2] == "3"
    assert main(["shape", "--input", "7", "pool2", "--ceil"]) == 0
    assert _rows(capsys.readouterr().out)[0][2] == "4"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--input", "10", "conv3", "pool2", "pool7"],
            "layer 3 'pool7': window 7 larger than padded input 5",
        ),
        (["--input", "10", "conv3", "bogus"], "layer 2 'bogus': unknown layer"),
        (["--input", "10", "pool3p2"], "layer 1 'pool3p2': padding must be at most half"),
        (["--input", "10", "spp4"], "layer 1 'spp4': SPP kernel sizes must be odd"),
        (["--input", "10x10", "sppnet1,2", "conv3"], "layer 2 'conv3': the input is the flat vector"),
        (["--input", "10y3", "conv3"], "--input must be"),
        (["conv3"], "--input is required"),
        (["--input", "10"], "give layer tokens"),
    ],
)
def test_shape_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shape", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("torchpool shape: error: ") and message in err
    assert "Traceback" not in err


_CFG = """\
[net]
width=416
height=416
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

# yolov3-tiny's last maxpool: size 2, stride 1 keeps the size (padding = size - 1 = 1)
[maxpool]
size=2
stride=1

### SPP ###
[maxpool]
stride=1
size=5

[route]
layers=-2

[maxpool]
stride=1
size=9

[route]
layers=-4

[maxpool]
stride=1
size=13

[route]
layers=-1,-3,-5,-6
### End SPP ###

[convolutional]
filters=8
size=1
stride=1
pad=1

[upsample]
stride=2

[route]
layers=-1, 0

[shortcut]
from=-2
"""


def test_shape_darknet_cfg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "net.cfg"
    cfg.write_text(_CFG)
    assert main(["shape", "--cfg", str(cfg)]) == 0
    rows = {row[0]: row for row in _rows(capsys.readouterr().out)}
    assert rows["0"][4:7] == ["416x416", "16", "3"]
    assert rows["1"][4:8] == ["208x208", "16", "4", "2"]  # darknet: (416 + 1 - 2) // 2 + 1
    assert rows["2"][4:9] == ["208x208", "16", "6", "2", "1.5"]  # k=2 s=1: same size, pad right
    assert rows["3"][4:7] == ["208x208", "16", "14"]  # mp5 at jump 2
    assert rows["8"][4:7] == ["208x208", "64", "30"]  # route: 4 x 16 channels, widest rf 6 + 12 * 2
    assert rows["9"][4:6] == ["208x208", "8"]
    assert rows["10"][4:8] == ["416x416", "8", "30", "1"]  # upsample halves the jump
    assert rows["11"][4:6] == ["416x416", "24"]  # route -1, 0: 8 + 16 channels
    assert rows["12"][4:6] == ["416x416", "24"]


def test_shape_darknet_odd_maxpool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "odd.cfg"
    cfg.write_text("[net]\nwidth=13\nheight=13\n[maxpool]\nsize=2\nstride=2\n")
    assert main(["shape", "--cfg", str(cfg)]) == 0
    assert _rows(capsys.readouterr().out)[0][4] == "7x7"  # darknet rounds up: (13 + 1 - 2) // 2 + 1
    assert main(["shape", "--cfg", str(cfg), "--input", "20x10"]) == 0  # --input overrides [net]
    assert _rows(capsys.readouterr().out)[0][4] == "10x5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[net]\nwidth=8\nheight=8\n[yolo]\nmask=0\n", "unsupported section [yolo] at line 4"),
        ("[net]\nwidth=8\nheight=8\n[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-5\n", "layer 1 [route]"),
        ("[net]\nwidth=4\nheight=4\n[convolutional]\nsize=7\nstride=1\n", "layer 0 [convolutional] line 4"),
        ("[convolutional]\nsize=3\nstride=x\n", "stride must be an int"),
        ("[maxpool]\nsize=2\n", "no [net] width/height"),
        ("[net]\nwidth=8\nheight=8\n[route]\nlayers=-1\n", "does not name an earlier layer"),
        ("[net]\nwidth=8\nheight=8\nsize\n", "darknet cfg line 4"),
    ],
)
def test_shape_darknet_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text)
    assert main(["shape", "--cfg", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_shape_cfg_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shape", "--cfg", str(tmp_path / "none.cfg")]) == 2
    assert "cannot read --cfg" in capsys.readouterr().err
