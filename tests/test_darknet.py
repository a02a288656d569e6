"""torchpool.darknet against darknet itself, on darknet's published YOLO cfg files.

``tests/data/darknet/*.darknet.txt`` are darknet's own printouts for the cfg files next to them
(see that folder's README): every layer's receptive field and every printed output size must
agree. Further tests check the arithmetic against PyTorch's pooling/convolution (the sizes of
the windows darknet slides) and the strict parsing.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import torchpool as tp
from torchpool.darknet import (
    ACTIVATIONS,
    CfgError,
    LayerShape,
    Option,
    parse_int,
    parse_int_list,
    parse_sections,
    read_cfg_file,
    trace_cfg,
)

DATA = Path(__file__).parent / "data" / "darknet"
YOLO_FILES = ["yolov3", "yolov3-spp", "yolov3-tiny", "yolov4", "yolov4-tiny"]


def _darknet_printout(name: str) -> tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int, int]]]:
    """Receptive fields ``{layer: (w, h)}`` and output sizes ``{layer: (w, h, c)}`` darknet printed."""
    fields: dict[int, tuple[int, int]] = {}
    sizes: dict[int, tuple[int, int, int]] = {}
    layer = None
    for line in (DATA / f"{name}.darknet.txt").read_text().splitlines():
        match = re.match(r"\s*(\d+) - receptive field: (\d+) x (\d+)", line)
        if match:
            fields[int(match[1])] = (int(match[2]), int(match[3]))
            continue
        match = re.match(r"\s*(\d+) ", line)
        if match:
            layer = int(match[1])
        match = re.search(r"(?:->|outputs:)\s*(\d+) x\s*(\d+) x\s*(\d+)", line)
        if match and layer is not None and layer not in sizes:
            sizes[layer] = (int(match[1]), int(match[2]), int(match[3]))
    return fields, sizes


@pytest.mark.parametrize("name", [*YOLO_FILES, "sections"])
def test_every_layer_equals_darknets_printout(name: str) -> None:
    shapes = trace_cfg(read_cfg_file(DATA / f"{name}.cfg"))
    fields, sizes = _darknet_printout(name)
    assert [s.index for s in shapes] == sorted(fields) == list(range(len(shapes)))
    printed = {
        "convolutional",
        "maxpool",
        "local_avgpool",
        "route",
        "shortcut",
        "upsample",
        "reorg",
        "reorg3d",
    }
    assert sum(s.type in printed for s in shapes) >= len(shapes) // 2
    for s in shapes:
        assert (s.rf_width, s.rf_height) == fields[s.index], s
        if s.type in printed:  # darknet prints [yolo], [sam], [avgpool], ... without "-> w x h x c"
            assert (s.width, s.height, s.channels) == sizes[s.index], s


def test_sections_file_flat_layers() -> None:
    """darknet prints [dropout], [avgpool], [softmax] and [cost] by their number of values."""
    shapes = {s.index: s for s in trace_cfg(read_cfg_file(DATA / "sections.cfg"))}
    printout = (DATA / "sections.darknet.txt").read_text()
    assert "dropout    p = 0.100         768  ->    768" in printout
    assert shapes[10].width * shapes[10].height * shapes[10].channels == 768
    assert re.search(r"avg\s+16 x\s+8 x\s+10 ->\s+10", printout)
    assert (shapes[17].width, shapes[17].height, shapes[17].channels) == (1, 1, 10)
    assert [(s.type, s.flat) for s in (shapes[17], shapes[18], shapes[19])] == [
        ("avgpool", False),
        ("softmax", True),
        ("cost", True),
    ]
    # stride_x=2 stride_y=1: darknet's receptive-field code uses stride_x on both axes
    assert (shapes[1].width, shapes[1].height, shapes[1].jump_width, shapes[1].jump_height) == (16, 24, 2, 2)


def _heads(shapes: list[LayerShape]) -> list[tuple[int, int, int, int]]:
    return [(s.index, s.width, s.height, s.channels) for s in shapes if s.type == "yolo"]


def test_yolov3_heads_at_416() -> None:
    shapes = trace_cfg(read_cfg_file(DATA / "yolov3.cfg"))
    assert len(shapes) == 107
    assert _heads(shapes) == [(82, 13, 13, 255), (94, 26, 26, 255), (106, 52, 52, 255)]
    # the heads' routes: layers = -1, 61 and -1, 36 concatenate the upsampled map with the backbone
    assert [(s.index, s.channels) for s in shapes if s.type == "route"] == [
        (83, 512),
        (86, 768),
        (95, 256),
        (98, 384),
    ]


@pytest.mark.parametrize("name", ["yolov3-spp", "yolov4"])
def test_608_files_at_416(name: str) -> None:
    text = read_cfg_file(DATA / f"{name}.cfg")
    assert [s.width for s in trace_cfg(text) if s.type == "yolo"] in ([19, 38, 76], [76, 38, 19])
    heads = [(s.width, s.channels) for s in trace_cfg(text, width=416, height=416) if s.type == "yolo"]
    assert sorted(heads) == [(13, 255), (26, 255), (52, 255)]
    spp = [s for s in trace_cfg(text) if s.type == "route" and s.channels == 2048]
    assert len(spp) == 1 and spp[0].width == 19  # [mp13, mp9, mp5, x] of a 512-channel map


def test_yolov4_tiny_route_groups_halve_channels() -> None:
    text = read_cfg_file(DATA / "yolov4-tiny.cfg")
    sections = parse_sections(text)[1:]
    shapes = trace_cfg(text)
    grouped = [i for i, s in enumerate(sections) if "groups" in s.options]
    assert grouped == [3, 11, 19]
    for i in grouped:
        assert sections[i].options["groups"].value == "2" and sections[i].options["group_id"].value == "1"
        assert shapes[i].channels * 2 == shapes[i - 1].channels
        assert (shapes[i].width, shapes[i].height) == (shapes[i - 1].width, shapes[i - 1].height)
    assert _heads(shapes) == [(30, 13, 13, 255), (37, 26, 26, 255)]


def test_yolov3_tiny_stride_one_maxpool() -> None:
    shapes = trace_cfg(read_cfg_file(DATA / "yolov3-tiny.cfg"))
    pools = [(s.index, s.width) for s in shapes if s.type == "maxpool"]
    assert pools == [(1, 208), (3, 104), (5, 52), (7, 26), (9, 13), (11, 13)]  # size 2 stride 1 keeps 13
    assert _heads(shapes) == [(16, 13, 13, 255), (23, 26, 26, 255)]


def test_every_activation_name() -> None:
    assert len(ACTIVATIONS) == 23
    for name in sorted(ACTIVATIONS):
        cfg = f"[net]\nwidth=4\nheight=4\nchannels=1\n[convolutional]\nsize=1\nactivation={name}\n"
        assert trace_cfg(cfg)[0].channels == 1
    with pytest.raises(CfgError, match="unknown activation 'Leaky'"):
        trace_cfg("[net]\nwidth=4\nheight=4\nchannels=1\n[convolutional]\nactivation=Leaky\n")


def _cfg(w: int, h: int, section: str) -> str:
    return f"[net]\nwidth={w}\nheight={h}\nchannels=2\n{section}"


def test_maxpool_sizes_equal_pytorch_on_darknets_padding() -> None:
    """darknet pads ``padding // 2`` before and the rest after; PyTorch pools that padded map."""
    checked = 0
    for w, size, stride, padding in itertools.product(range(1, 9), range(1, 5), range(1, 4), range(0, 5)):
        x = torch.zeros(1, 1, w, w)
        padded = F.pad(x, (padding // 2, padding - padding // 2) * 2, value=float("-inf"))
        section = f"[maxpool]\nsize={size}\nstride={stride}\npadding={padding}\n"
        if size > w + padding:
            # darknet's C division can still give 1 when size - (w + padding) < stride; never 0 or less
            numerator = w + padding - size
            if -numerator < stride:
                assert trace_cfg(_cfg(w, w, section))[0].width == 1
            else:
                with pytest.raises(CfgError, match="does not fit"):
                    trace_cfg(_cfg(w, w, section))
            continue
        expected = F.max_pool2d(padded, size, stride).shape[-2:]
        (shape,) = trace_cfg(_cfg(w, w, section))
        assert (shape.height, shape.width) == tuple(expected), (w, size, stride, padding)
        checked += 1
    assert checked > 300


def test_conv_sizes_equal_pytorch() -> None:
    for w, h, size, sx, sy, pad in itertools.product((5, 8), (3, 7), (1, 2, 3, 5), (1, 2), (1, 3), (0, 1)):
        section = f"[convolutional]\nfilters=4\nsize={size}\nstride_x={sx}\nstride_y={sy}\npad={pad}\n"
        p = size // 2 if pad else 0
        if size > min(w, h) + 2 * p:
            continue
        expected = F.conv2d(
            torch.zeros(1, 2, h, w), torch.zeros(4, 2, size, size), stride=(sy, sx), padding=p
        )
        (shape,) = trace_cfg(_cfg(w, h, section))
        assert (shape.height, shape.width, shape.channels) == (*expected.shape[-2:], 4), (
            w,
            h,
            size,
            sx,
            sy,
            pad,
        )


def test_conv_stride_rules() -> None:
    """``stride_x``/``stride_y`` override ``stride`` only when both are given or per axis."""

    def size(options: str) -> tuple[int, int]:
        (shape,) = trace_cfg(_cfg(12, 12, f"[convolutional]\nsize=1\n{options}"))
        return shape.width, shape.height

    assert size("stride=2\n") == (6, 6)
    assert size("stride_x=3\n") == (4, 12)
    assert size("stride=2\nstride_y=3\n") == (6, 4)
    assert size("stride=2\nstride_x=3\nstride_y=4\n") == (4, 3)


def test_route_layers_absolute_negative_and_errors() -> None:
    body = "[convolutional]\nfilters=3\nsize=1\n[maxpool]\nsize=2\nstride=2\n"
    body += "[convolutional]\nfilters=5\nsize=1\n"
    net = _cfg(8, 8, body)
    assert trace_cfg(net + "[route]\nlayers=0\n")[-1].channels == 3
    assert trace_cfg(net + "[route]\nlayers = -1, 1\n")[-1].channels == 8  # 5 + 3
    with pytest.raises(CfgError, match=r"different sizes \(w x h\): 4x4, 8x8"):
        trace_cfg(net + "[route]\nlayers=-1,0\n")
    with pytest.raises(CfgError, match="layers=3 does not name an earlier layer"):
        trace_cfg(net + "[route]\nlayers=3\n")
    with pytest.raises(CfgError, match="groups=2 does not divide the 5 channels"):
        trace_cfg(net + "[route]\nlayers=-1\ngroups=2\n")
    with pytest.raises(CfgError, match=r"group_id must be in \[0, 2\)"):
        trace_cfg(net + "[route]\nlayers=0,0\ngroups=2\ngroup_id=2\n")
    with pytest.raises(CfgError, match="layers must be an int, got ''"):
        trace_cfg(net + "[route]\nlayers=-1,\n")


def test_yolo_and_region_channel_checks() -> None:
    conv = "[convolutional]\nsize=1\nfilters={}\n"
    assert (
        trace_cfg(_cfg(13, 13, conv.format(255) + "[yolo]\nmask = 6,7,8\nclasses=80\nnum=9\n"))[-1].channels
        == 255
    )
    assert trace_cfg(_cfg(13, 13, conv.format(27) + "[yolo]\nclasses=4\nnum=3\n"))[-1].channels == 27
    assert (
        trace_cfg(_cfg(13, 13, conv.format(125) + "[region]\nclasses=20\ncoords=4\nnum=5\n"))[-1].channels
        == 125
    )
    with pytest.raises(CfgError, match=r"\[region\] needs 5 x \(80 classes \+ 4 coords \+ 1\) = 425"):
        trace_cfg(_cfg(13, 13, conv.format(125) + "[region]\nclasses=80\nnum=5\n"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5), ("-6", -6), ("+2", 2), ("007", 7)],
)
def test_parse_int_accepts_plain_decimals(value: str, expected: int) -> None:
    assert parse_int(value, "size", "maxpool", 1) == expected


@pytest.mark.parametrize("value", ["5_1", "\u0665", "5x", "0x10", "1e3", "5.0", "", "--1", "1 2"])
def test_parse_int_refuses_the_rest(value: str) -> None:
    with pytest.raises(
        CfgError, match=f"line 9 in \\[maxpool\\]: size must be an int, got {re.escape(repr(value))}"
    ):
        parse_int(value, "size", "maxpool", 9)


def test_size_with_underscore_refused_everywhere() -> None:
    """``size=5_1`` was read as 51 (Python's int); now both the shape tracer and the SPP finder refuse it."""
    spp = "[maxpool]\nstride=1\nsize=5_1\n[route]\nlayers=-1,-2\n"
    with pytest.raises(ValueError, match="size must be an int, got '5_1'"):
        tp.from_darknet_cfg(spp)
    with pytest.raises(CfgError, match="size must be an int, got '5_1'"):
        trace_cfg(_cfg(8, 8, spp))
    assert parse_int_list(Option("-1, 61", 3), "layers", "route") == (-1, 61)


def test_read_cfg_file_limits(tmp_path: Path) -> None:
    small = tmp_path / "a.cfg"
    small.write_bytes(b"[net]\nwidth=1\n")
    assert read_cfg_file(small) == "[net]\nwidth=1\n"
    with pytest.raises(CfgError, match="larger than 8 bytes"):
        read_cfg_file(small, limit=8)
    small.write_bytes(b"[net]\0")
    with pytest.raises(CfgError, match="not a text file"):
        read_cfg_file(small)


# ---------------------------------------------------------------------------------------------
# from_darknet_cfg on whole files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["yolov3-spp", "yolov4"])
def test_from_darknet_cfg_finds_the_spp_block(name: str) -> None:
    module = tp.from_darknet_cfg(read_cfg_file(DATA / f"{name}.cfg"))
    assert (module.kernel_sizes, module.order) == ((5, 9, 13), "darknet")
    x = torch.randn(1, 3, 19, 19, dtype=torch.float64)
    # reference: darknet's [maxpool] size k stride 1 pads k - 1 in total (k // 2 each side) with -inf
    pools = [F.max_pool2d(F.pad(x, (k // 2,) * 4, value=float("-inf")), k, 1) for k in (13, 9, 5)]
    torch.testing.assert_close(module(x), torch.cat([*pools, x], 1), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["yolov3", "yolov3-tiny", "yolov4-tiny"])
def test_from_darknet_cfg_without_spp_block(name: str) -> None:
    with pytest.raises(ValueError, match="no SPP block"):
        tp.from_darknet_cfg(read_cfg_file(DATA / f"{name}.cfg"))


def test_from_darknet_cfg_whole_file_absolute_indices_and_two_blocks() -> None:
    text = read_cfg_file(DATA / "yolov4.cfg")
    sections = parse_sections(text)
    spp_route = next(s for s in sections if s.name == "route" and s.options["layers"].value == "-1,-3,-5,-6")
    index = sections.index(spp_route) - 1  # darknet's layer index ([net] is not a layer)
    absolute = ",".join(str(index + k) for k in (-1, -3, -5, -6))
    lines = text.splitlines()
    lines[spp_route.options["layers"].line - 1] = f"layers={absolute}"
    assert tp.from_darknet_cfg("\n".join(lines)).kernel_sizes == (5, 9, 13)
    twice = text + "\n[convolutional]\nsize=1\nfilters=512\n" + text[text.index("### SPP ###") :]
    with pytest.raises(ValueError, match="2 SPP blocks"):
        tp.from_darknet_cfg(twice)
    broken = text.replace("layers=-1,-3,-5,-6", "layers=-1,-5,-3,-6")
    with pytest.raises(ValueError, match=r"no SPP block.*not an SPP concatenation"):
        tp.from_darknet_cfg(broken)


def test_darknet_short_section_names_and_order() -> None:
    text = "[network]\nwidth=8\nheight=8\nchannels=2\n[conv]\nsize=3\nfilters=4\n[max]\nsize=2\nstride=2\n"
    text += "[avg]\n[soft]\n"
    shapes = trace_cfg(text)
    assert [(s.type, s.width, s.channels, s.flat) for s in shapes] == [
        ("conv", 6, 4, False),
        ("max", 3, 4, False),
        ("avg", 1, 4, False),
        ("soft", 1, 4, True),
    ]
    with pytest.raises(CfgError, match=r"layer 1 \[net\] at line 6: \[net\] must be the first section"):
        trace_cfg("[net]\nwidth=8\nheight=8\nchannels=2\n[dropout]\n[net]\n")
    with pytest.raises(CfgError, match="layer 0 \\[gaussian_yolo\\] at line 5: unsupported section"):
        trace_cfg("[net]\nwidth=8\nheight=8\nchannels=2\n[Gaussian_yolo]\n")
