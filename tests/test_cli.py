"""A walk over the command line with bad arguments and data that cannot give a result.

Every refusal is exit status 2 with one line on stderr that names the option (or the data's
problem), before any work; no traceback; ``results.json`` is strict JSON written atomically;
Ctrl-C gives status 130 and one line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import torchpool.lab.compare as compare
import torchpool.lab.gallery as gallery
from torchpool.cli import main, resolve_family
from torchpool.registry import get_pool_info, list_pools

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

TINY = ["--epochs", "1", "--seeds", "1", "--variants", "max2d", "--no-plots", "--threads", "1"]


def _main(argv: list[str]) -> int:
    """``main(argv)``; the argument parser's own errors raise SystemExit, turned into their status."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], *expected: str) -> str:
    """Runs ``argv`` and checks: status 2, one stderr line containing every ``expected``, no traceback."""
    code = _main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert "Traceback" not in err
    line = err.strip()
    assert line and "\n" not in line, err
    for text in expected:
        assert text in line, (text, line)
    return line


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if compare loads a dataset or gallery reads a photo: refusals come first."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the work started before the arguments were checked")

    monkeypatch.setattr(compare, "load_dataset", forbidden)
    monkeypatch.setattr(gallery, "load_image", forbidden)


# ---------------------------------------------------------------------------------------------- arguments

BAD_COMPARE_ARGUMENTS: list[tuple[list[str], str]] = [
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--lr", "fast"], "--lr"),
    (["--image-size", "0"], "--image-size"),
    (["--image-size", "-4"], "--image-size"),
    (["--image-size", "100000"], "--image-size"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "-1"], "--epochs"),
    (["--epochs", "1.5"], "--epochs"),
    (["--seeds", "0"], "--seeds"),
    (["--limit", "0"], "--limit"),
    (["--limit", "-10"], "--limit"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-64"], "--batch-size"),
    (["--threads", "0"], "--threads"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**40)], "--seed"),
    (["--variants", "maxx2d"], "--variants"),
    (["--variants", "max2d", "nosuch"], "nosuch"),
    (["--variants", ","], "--variants"),
    (["--dataset", "mnist"], "--dataset"),
    (["--device", "tpu"], "--device"),
    (["--no-such-option"], "--no-such-option"),
]


@pytest.mark.parametrize(
    ("argv", "option"), BAD_COMPARE_ARGUMENTS, ids=lambda a: " ".join(a) if isinstance(a, list) else None
)
def test_compare_refuses_bad_arguments_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None, argv: list[str], option: str
) -> None:
    _refused(capsys, ["compare", "--out", str(tmp_path / "out"), *argv], option)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_compare_cuda_without_a_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    _refused(capsys, ["compare", "--out", str(tmp_path / "o"), "--device", "cuda"], "--device cuda")


def test_compare_batch_size_indivisible_by_the_world_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    _refused(
        capsys,
        ["compare", "--out", str(tmp_path / "o"), "--batch-size", "3"],
        "--batch-size 3",
        "world size 2",
    )
    import torch.distributed as dist

    assert not dist.is_initialized()  # refused before any process group was set up


def test_compare_unknown_variant_suggests_close_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    line = _refused(
        capsys, ["compare", "--out", str(tmp_path / "o"), "--variants", "median2", "max2d"], "--variants"
    )
    assert "did you mean" in line and "'median2d'" in line


def test_compare_data_dir_without_a_dataset_that_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    _refused(
        capsys, ["compare", "--out", str(tmp_path / "o"), "--data-dir", str(tmp_path)], "--data-dir", "digits"
    )


def test_compare_refuses_an_out_that_cannot_take_the_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _refused(capsys, ["compare", "--out", str(a_file)], "--out", "is a file")
    _refused(capsys, ["compare", "--out", str(a_file / "below")], "--out", "not a folder")
    (tmp_path / "taken" / "results.json").mkdir(parents=True)
    _refused(capsys, ["compare", "--out", str(tmp_path / "taken")], "--out", "results.json")
    assert a_file.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "taken"]  # the probe left nothing


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder nobody can write)")
def test_compare_refuses_an_unwritable_out(capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    _refused(capsys, ["compare", "--out", "/proc/self/torchpool-out"], "--out", "not writable")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_compare_refuses_a_read_only_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _refused(capsys, ["compare", "--out", str(locked / "out")], "--out", "not writable")
        _refused(capsys, ["compare", "--out", str(locked)], "--out", "not writable")
    finally:
        locked.chmod(0o700)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_variants_take_commas_as_well_as_spaces(tmp_path: Path) -> None:
    out = str(tmp_path / "o")
    assert compare.validate_arguments(_args("--out", out, "--variants", "max2d,median2d", "gem")) == [
        "max2d",
        "median2d",
        "gem",
    ]
    args = _args("--out", out, "--variants", "max2d, median2d,,", "max2d", "spp,gem")
    assert compare.validate_arguments(args) == ["max2d", "median2d", "spp2d", "gem"]
    assert compare.split_variants(["a,b", " c "]) == ["a", "b", "c"]


def test_variants_take_the_registry_spelling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name the registry resolves to another (``max`` for ``max2d``) runs once, as the registry names it."""
    real = get_pool_info
    aliases = {"max": "max2d", "median": "median2d"}

    def with_aliases(name: str) -> Any:
        return real(aliases.get(name, name))

    monkeypatch.setattr(compare, "get_pool_info", with_aliases)
    args = _args("--out", str(tmp_path / "o"), "--variants", "max,median", "max2d")
    assert compare.validate_arguments(args) == ["max2d", "median2d"]


# ---------------------------------------------------------------------------------------------- data


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1").tobytes()


def _fashion(
    root: Path, train: int = 20, test: int = 10, size: int = 8, test_size: int | None = None
) -> Path:
    """Four IDX files of random ``size`` x ``size`` images, labels cycling through the 10 classes."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for stem, n, side in (("train", train, size), ("t10k", test, test_size or size)):
        (root / f"{stem}-images-idx3-ubyte").write_bytes(_idx(rng.integers(0, 256, (n, side, side))))
        (root / f"{stem}-labels-idx1-ubyte").write_bytes(_idx(np.arange(n) % 10))
    return root


def _folder(root: Path, counts: dict[str, int]) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def _split_folder(root: Path) -> Path:
    """``root/train`` with classes a, b and ``root/test`` with a, b and c, which training never saw."""
    _folder(root / "train", {"a": 2, "b": 2})
    _folder(root / "test", {"a": 1, "b": 1, "c": 1})
    return root


def _compare_on(tmp_path: Path, *argv: str) -> list[str]:
    return ["compare", "--out", str(tmp_path / "out"), *TINY, *argv]


BAD_DATA: list[tuple[str, Callable[[Path], list[str]], tuple[str, ...]]] = [
    (
        "fashion 0 training images",
        lambda p: ["--dataset", "fashion-mnist", "--data-dir", str(_fashion(p / "f", train=0))],
        ("train", "no images"),
    ),
    (
        "fashion 0 test images",
        lambda p: ["--dataset", "fashion-mnist", "--data-dir", str(_fashion(p / "f", test=0))],
        ("test", "no images"),
    ),
    (
        "fashion test images of another size",
        lambda p: ["--dataset", "fashion-mnist", "--data-dir", str(_fashion(p / "f", test_size=6))],
        ("6x6", "8x8"),
    ),
    (
        "fashion test images of another size, resized",
        lambda p: [
            "--dataset",
            "fashion-mnist",
            "--data-dir",
            str(_fashion(p / "f", test_size=6)),
            "--image-size",
            "8",
        ],
        ("6x6", "8x8"),
    ),
    (
        "fashion a class without training images",
        lambda p: ["--dataset", "fashion-mnist", "--data-dir", str(_fashion(p / "f", train=9))],
        ("no training image", "Boot"),
    ),
    (
        "fashion data dir is a file",
        lambda p: ["--dataset", "fashion-mnist", "--data-dir", str(p / "tiny.py")],
        ("--data-dir", "is a file"),
    ),
    (
        "folder: a class with one image leaves it out of the split",
        lambda p: ["--dataset", "folder", "--data-dir", str(_folder(p / "d", {"a": 3, "b": 1}))],
        ("at least 2 images per class", "'b' (1)"),
    ),
    (
        "folder: one image per class leaves the test set empty",
        lambda p: ["--dataset", "folder", "--data-dir", str(_folder(p / "d", {"a": 1, "b": 1}))],
        ("at least 2 images per class",),
    ),
    (
        "folder: a class folder without images",
        lambda p: ["--dataset", "folder", "--data-dir", str(_folder(p / "d", {"a": 3, "b": 0}))],
        ("'b' holds no images",),
    ),
    (
        "folder: a test class the training tree lacks",
        lambda p: ["--dataset", "folder", "--data-dir", str(_split_folder(p / "d"))],
        ("'c'", "training tree"),
    ),
    (
        "folder: data dir is a file",
        lambda p: ["--dataset", "folder", "--data-dir", str(p / "tiny.py")],
        ("--data-dir", "is a file"),
    ),
    (
        "folder: data dir missing",
        lambda p: ["--dataset", "folder", "--data-dir", str(p / "absent")],
        ("absent", "does not exist"),
    ),
    (
        "digits: --limit leaves classes without training images",
        lambda p: ["--limit", "5"],
        ("--limit 5", "no training image"),
    ),
]


@pytest.mark.parametrize(("case", "make", "expected"), BAD_DATA, ids=[case for case, _, _ in BAD_DATA])
def test_compare_refuses_data_that_cannot_give_a_result(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    make: Callable[[Path], list[str]],
    expected: tuple[str, ...],
) -> None:
    (tmp_path / "tiny.py").write_text("not a folder\n")

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("training started on data that cannot give a result")

    monkeypatch.setattr(compare, "train_one", no_training)
    line = _refused(capsys, _compare_on(tmp_path, *make(tmp_path)), *expected)
    assert line.startswith("torchpool compare: error:")
    assert not (tmp_path / "out").exists()


def _strict_json(path: Path) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{path} holds a bare {constant}: not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_tiny_fashion_run_writes_strict_json_and_no_temporary_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _fashion(tmp_path / "f", train=20, test=10)
    argv = _compare_on(
        tmp_path, "--dataset", "fashion-mnist", "--data-dir", str(data), "--variants", "max2d,avg2d"
    )
    assert _main(argv) == 0, capsys.readouterr().err
    results = _strict_json(tmp_path / "out" / "results.json")
    assert [v["name"] for v in results["variants"]] == ["max2d", "avg2d"]
    assert results["config"]["variants"] == ["max2d", "avg2d"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "report.html",
        "report.md",
        "results.json",
    ]


def test_a_diverged_variant_is_reported_not_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class NaNAdam(torch.optim.Adam):
        def step(self, closure: Any = None) -> Any:
            loss = super().step(closure)
            with torch.no_grad():
                for group in self.param_groups:
                    group["params"][0].fill_(float("nan"))
            return loss

    monkeypatch.setattr(torch.optim, "Adam", NaNAdam)
    data = _fashion(tmp_path / "f")
    code = _main(_compare_on(tmp_path, "--dataset", "fashion-mnist", "--data-dir", str(data)))
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert "max2d" in captured.out and "diverged" in captured.out
    variant = _strict_json(tmp_path / "out" / "results.json")["variants"][0]
    assert variant["status"] == "diverged" and "NaN or infinite" in variant["reason"]
    assert variant["accuracy_mean"] is None


def test_results_json_is_strict_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    compare.write_json_atomic(
        target, {"a": float("nan"), "b": [float("inf"), -float("inf"), 0.5], "c": (1, None)}
    )
    assert _strict_json(target) == {"a": None, "b": [None, None, 0.5], "c": [1, None]}
    before = target.read_text()

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compare.write_json_atomic(target, {"a": 1.0})
    assert target.read_text() == before  # the old file whole, not a part of the new one
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left


def test_ctrl_c_exits_130_with_one_line(tmp_path: Path) -> None:
    command = [
        sys.executable, "-u", "-m", "torchpool", "compare", "--out", str(tmp_path / "out"),
        "--variants", "max2d", "--epochs", "10000", "--seeds", "1", "--limit", "200", "--threads", "1",
        "--no-plots",
    ]  # fmt: skip
    # The child gets Ctrl-C's default disposition, as in a terminal: a test run started in the
    # background (``cmd &`` in a script) ignores SIGINT, a child inherits that and Python then
    # never raises KeyboardInterrupt (the run went on for its 10000 epochs).
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # printed when training starts
        assert first.startswith("torchpool compare:"), first + (
            process.stderr.read() if process.stderr else ""
        )
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip() == "torchpool compare: interrupted (Ctrl-C)"
    assert not (tmp_path / "out" / "results.json").exists()


# ---------------------------------------------------------------------------------------------- gallery


def test_gallery_refuses_bad_arguments_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    png = str(tmp_path / "g.png")
    (tmp_path / "photo.txt").write_text("x")
    for argv, option in (
        (["--size", "-1", "--out", png], "--size"),
        (["--seed", str(2**70), "--out", png], "--seed"),
        (["--size", "big"], "--size"),
        (["--image", str(tmp_path / "absent.png"), "--out", png], "--image"),
        (["--image", str(tmp_path), "--out", png], "--image"),
        (["--out", str(tmp_path)], "--out"),
        (["--out", str(tmp_path / "missing" / "g.png")], "--out"),
        (["--out", str(tmp_path / "photo.txt" / "g.png")], "--out"),
        (["--out", str(tmp_path / "g.nosuchformat")], "--out"),
    ):
        _refused(capsys, ["gallery", *argv], option)
    assert not (tmp_path / "g.png").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder nobody can write)")
def test_gallery_refuses_an_unwritable_out(capsys: pytest.CaptureFixture[str], no_work: None) -> None:
    _refused(capsys, ["gallery", "--out", "/proc/self/g.png"], "--out", "not writable")


# ---------------------------------------------------------------------------------------------- list


@pytest.mark.parametrize(
    ("text", "family"),
    [
        ("median", "median"),
        ("MEDIAN", "median"),
        ("Max/Avg", "max/avg"),
        ("max", "max/avg"),
        ("avg", "max/avg"),
        ("Global", "global"),
    ],
)
def test_list_family_is_case_insensitive_and_takes_max_for_max_avg(
    capsys: pytest.CaptureFixture[str], text: str, family: str
) -> None:
    assert resolve_family(text) == family
    assert main(["list", "--family", text]) == 0
    out = capsys.readouterr().out
    for info in list_pools(family):
        assert info.name in out
    assert f"{len(list_pools(family))} pools" in out


def test_list_unknown_family_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(capsys, ["list", "--family", "nope"], "--family", "'nope'", "max/avg")
    assert line.startswith("torchpool list: error:")
    _refused(capsys, [], "command")


def test_list_shows_the_ops_with_a_second_input_apart(capsys: pytest.CaptureFixture[str]) -> None:
    """SPP on regions and max unpooling take boxes / indices: not registry pools, listed in a section
    after the pools' count, each row naming a real functional and Module; a --family leaves it out."""
    import torchpool as tp

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    pools, _, section = out.partition(f"{len(list_pools())} pools\n")
    assert section.startswith("\nops that take a second input")
    rows = {line.split()[0]: line.split()[1] for line in section.strip().splitlines()[2:-2]}
    assert {"roi_spatial_pyramid_pool", "max_unpool2d"} <= set(rows)
    assert rows["roi_spatial_pyramid_pool"] == "RoISpatialPyramidPool" and "SPPNet" in section
    assert section.strip().endswith(f"{len(rows)} ops with a second input")
    for function, module in rows.items():
        assert callable(getattr(tp, function)) and issubclass(getattr(tp, module), torch.nn.Module)
        assert function not in pools
        with pytest.raises(ValueError, match="not registered"):
            get_pool_info(function)
    assert main(["list", "--family", "max"]) == 0
    filtered = capsys.readouterr().out
    assert "second input" not in filtered and "roi_spatial_pyramid_pool" not in filtered
    assert filtered.rstrip().endswith(f"{len(list_pools('max/avg'))} pools")


def test_an_os_error_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", "/data/locked")

    monkeypatch.setattr(compare, "load_dataset", denied)
    line = _refused(capsys, ["compare", "--out", str(tmp_path / "o")], "Permission denied", "/data/locked")
    assert line.startswith("torchpool compare: error:")


def test_a_closed_pipe_stops_quietly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "torchpool", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # like `torchpool list | head -0`
    err = process.stderr.read()
    assert process.wait(timeout=60) == 1
    assert err == ""


@pytest.fixture
def fresh_kernels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    import torchpool._native as native

    monkeypatch.setenv("TORCHPOOL_CACHE_DIR", str(tmp_path / "cache"))
    native.load.cache_clear()
    native._paths.clear()
    native._errors.clear()
    yield native
    native.load.cache_clear()


def test_kernels_builds_and_lists_every_kernel(
    capsys: pytest.CaptureFixture[str], fresh_kernels: Any
) -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    assert main(["kernels"]) == 0
    out = capsys.readouterr().out
    names = fresh_kernels.kernel_names()
    assert "exp_weighted" in names
    for name in names:
        assert f"{name} " in out and str(fresh_kernels.built_path(name)) in out
    assert f"{len(names)} of {len(names)} kernels built" in out


def test_kernels_without_them_says_why_and_fails(
    capsys: pytest.CaptureFixture[str], fresh_kernels: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCHPOOL_NATIVE", "0")
    assert main(["kernels"]) == 1
    out = capsys.readouterr().out
    assert "NOT built: disabled by TORCHPOOL_NATIVE=0" in out and "pure-PyTorch path" in out
    assert f"0 of {len(fresh_kernels.kernel_names())} kernels built" in out
