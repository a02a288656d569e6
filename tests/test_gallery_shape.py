"""Tests of ``torchpool gallery`` and ``torchpool shape``."""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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
    assert "24 panels, input 64x96" in capsys.readouterr().out
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
activation=linear

[upsample]
stride=2

[route]
layers=-1, 0

[shortcut]
from=-2
"""


def _cfg_rows(output: str) -> dict[str, list[str]]:
    """Table rows by darknet index: index, type, line, w x h, channels, rf, jump."""
    return {row[0]: row for row in _rows(output) if row[0] != "input"}


def test_shape_darknet_cfg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "net.cfg"
    cfg.write_text(_CFG)
    assert main(["shape", "--cfg", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["#", "layer", "line", "w", "x", "h", "channels", "rf", "jump"]
    assert out.splitlines()[1].split() == ["input", "416x416", "3", "1", "1"]
    rows = _cfg_rows(out)
    lines = _CFG.splitlines()
    # darknet's arithmetic, by hand: rf += (size - 1) * jump, jump *= stride
    expected = {
        "0": ("convolutional", "416x416", "16", "3", "1"),
        "1": ("maxpool", "208x208", "16", "4", "2"),  # (416 + 1 - 2) / 2 + 1
        "2": ("maxpool", "208x208", "16", "6", "2"),  # size 2 stride 1: the size is kept
        "3": ("maxpool", "208x208", "16", "14", "2"),  # 6 + 4 * 2
        "4": ("route", "208x208", "16", "6", "2"),  # layer 2
        "7": ("maxpool", "208x208", "16", "30", "2"),  # 6 + 12 * 2
        "8": ("route", "208x208", "64", "30", "2"),  # 4 x 16 channels, the largest field
        "9": ("convolutional", "208x208", "8", "30", "2"),
        "10": ("upsample", "416x416", "8", "30", "1"),  # the jump is divided by the stride
        "11": ("route", "416x416", "24", "30", "1"),  # -1, 0: 8 + 16 channels
        "12": ("shortcut", "416x416", "24", "30", "1"),  # the previous layer's channels
    }
    for index, (kind, size, channels, rf, jump) in expected.items():
        row = rows[index]
        assert (row[1], *row[3:]) == (kind, size, channels, rf, jump), row
        assert lines[int(row[2]) - 1] == f"[{kind}]"  # the line of the section header
    assert len(rows) == 13


def test_shape_darknet_odd_maxpool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "odd.cfg"
    cfg.write_text("[net]\nwidth=13\nheight=13\nchannels=3\n[maxpool]\nsize=2\nstride=2\n")
    assert main(["shape", "--cfg", str(cfg)]) == 0
    assert _cfg_rows(capsys.readouterr().out)["0"][3] == "7x7"  # darknet rounds up: (13 + 1 - 2) / 2 + 1
    # --input is HxW and overrides [net]; the table prints darknet's w x h
    assert main(["shape", "--cfg", str(cfg), "--input", "20x10", "--channels", "5"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == ["input", "10x20", "5", "1", "1"]
    assert _cfg_rows(out)["0"][3:5] == ["5x10", "5"]


def test_shape_darknet_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "net.cfg"
    cfg.write_text(_CFG)
    assert main(["shape", "--cfg", str(cfg), "--json"]) == 0
    out = capsys.readouterr().out
    layers = json.loads(out)
    assert len(layers) == 13 and len(out.strip().splitlines()) == 13 + 2  # one object per line
    assert layers[1] == {
        "index": 1,
        "type": "maxpool",
        "line": 14,
        "output": {"width": 208, "height": 208},
        "channels": 16,
        "receptive_field": {"width": 4, "height": 4},
        "jump": {"width": 2, "height": 2},
        "flat": False,
    }
    assert [layer["index"] for layer in layers] == list(range(13))
    assert all(_CFG.splitlines()[layer["line"] - 1] == f"[{layer['type']}]" for layer in layers)


def test_shape_tokens_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shape", "--input", "224x160", "--channels", "3", "conv7s2p3c64", "up2", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)
    assert layers[0] == {
        "index": 1,
        "type": "conv",
        "token": "conv7s2p3c64",
        "output": [112, 80],
        "features": None,
        "channels": 64,
        "receptive_field": [7, 7],
        "jump": [2, 2],
        "start": [0, 0],
    }
    assert layers[1]["jump"] == [1, 1] and layers[1]["output"] == [224, 160]


_NET = "[net]\nwidth=8\nheight=8\nchannels=3\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_NET + "[bogus]\n", "layer 0 [bogus] at line 5: unsupported section"),
        (
            _NET + "[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-5\n",
            "layer 1 [route] at line 8: layers=-5",
        ),
        (
            _NET.replace("8", "4") + "[convolutional]\nsize=7\n",
            "layer 0 [convolutional] at line 5: size 7 does not fit",
        ),
        (_NET + "[convolutional]\nsize=3\nstride=x\n", "stride must be an int"),
        (
            _NET + "[convolutional]\nsize=5_1\n",
            "darknet cfg line 6 in [convolutional]: size must be an int, got '5_1'",
        ),
        (_NET + "[maxpool]\nsize= 2 2\n", "size must be an int"),
        ("[maxpool]\nsize=2\n", "no [net] section"),
        ("[net]\nwidth=8\nheight=8\n[maxpool]\nsize=2\n", "[net] at line 1: no channels="),
        (_NET + "[route]\nlayers=-1\n", "does not name an earlier layer"),
        (_NET + "size\n", "darknet cfg line 5"),
        (
            _NET + "[convolutional]\nfilters=16\nsize=3\n[yolo]\nmask=0,1,2\nclasses=80\nnum=9\n",
            "3 x (80 classes + 5) = 255",
        ),
        (_NET + "[convolutional]\nsize=3\nactivation=leakyy\n", "unknown activation 'leakyy'"),
        (_NET + "[convolutional]\nsize=3\nstrid=2\n", "unknown option(s) ['strid']"),
        (_NET + "[softmax]\n[convolutional]\nsize=1\n", "[softmax] (line 5) outputs a flat vector"),
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
    assert err.startswith("torchpool shape: error: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "none.cfg", "cannot read"),
        (lambda d: d, "cannot read"),  # a directory
        (lambda d: _write(d / "weights.bin", bytes(range(256)) * 4), "not a text file"),
        (
            lambda d: _write(d / "latin1.cfg", b"[net]\n# caf\xe9\nwidth=8\n"),
            "not a UTF-8 text file (byte 0xe9 at line 2)",
        ),
        (lambda d: _write(d / "big.cfg", b"#" * (1 << 20) + b"\n"), "larger than 1048576 bytes"),
        (lambda d: Path("/dev/zero"), "larger than 1048576 bytes"),
    ],
)
def test_shape_cfg_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path)
    if not path.exists() and path.name != "none.cfg":
        pytest.skip(f"{path} does not exist here")
    assert main(["shape", "--cfg", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("torchpool shape: error: --cfg: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_shape_cfg_bom_and_crlf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "win.cfg"
    cfg.write_bytes(
        b"\xef\xbb\xbf[net]\r\nwidth=8\r\nheight=8\r\nchannels=3\r\n[maxpool]\r\nsize=2\r\nstride=2\r\n"
    )
    assert main(["shape", "--cfg", str(cfg)]) == 0
    assert _cfg_rows(capsys.readouterr().out)["0"][3] == "4x4"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cfg", "x.cfg", "conv3"], "not both"),
        (["--cfg", "x.cfg", "--ceil"], "--ceil applies to pool tokens"),
        (["--cfg", "x.cfg", "--input", "8x8x8"], "--input with --cfg must be HxW"),
        (["--input", "2_24", "conv3"], "--input must be"),
        (["--input", "٢٢٤", "conv3"], "--input must be"),
        (["--input", "10", "conv٣"], "unknown layer"),
    ],
)
def test_shape_cli_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shape", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("value", ["3_0", "0", "-3", "x"])
def test_shape_channels_strict(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["shape", "--input", "8", "--channels", value, "conv3"])
    assert exit_info.value.code == 2
    assert "--channels: must be a positive int" in capsys.readouterr().err


def test_shape_help_is_true(capsys: pytest.CaptureFixture[str]) -> None:
    """The help's conv padding rule, checked against PyTorch's convolution for every small case."""
    with pytest.raises(SystemExit):
        main(["shape", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert '"same"' not in text.split("sppK1,K2")[0]  # convK's default padding is not called "same"
    assert "(default D * (K // 2): the size is kept only for an odd K at stride 1)" in text
    assert "--json" in text and "--cfg FILE reads a darknet cfg" in text
    for k, s, d, n in itertools.product(range(1, 7), (1, 2, 3), (1, 2), (9, 10)):
        p = d * (k // 2)
        torch_size = F.conv1d(
            torch.zeros(1, 1, n), torch.zeros(1, 1, k), stride=s, padding=p, dilation=d
        ).shape[-1]
        (state,) = shape.trace([n], [shape.parse_token(f"conv{k}s{s}d{d}")])[1:]
        assert state.size == (torch_size,)
        assert (torch_size == n) == (k % 2 == 1 and s == 1), (k, s, d, n)


def test_shape_docs_examples_are_real(capsys: pytest.CaptureFixture[str]) -> None:
    """Every ``$ torchpool shape`` example of docs/commands.md prints what the docs show."""
    root = Path(__file__).parent.parent
    docs = (root / "docs" / "commands.md").read_text()
    section = docs[docs.index("## torchpool shape") :]
    examples = re.findall(r"```console\n\$ torchpool (shape[^\n]*)\n(.*?)```", section, re.S)
    assert len(examples) == 3
    for command, shown in examples:
        argv = [
            a if not a.endswith(".cfg") else str(root / "tests" / "data" / "darknet" / a)
            for a in command.split()
        ]
        assert main(argv) == 0
        printed = capsys.readouterr().out.splitlines()
        lines = shown.rstrip("\n").splitlines()
        if lines[-1] == "...":
            lines = lines[:-1]
            printed = printed[: len(lines)]
        assert printed == lines, command
