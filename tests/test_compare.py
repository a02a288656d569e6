"""``torchpool compare``: outputs, skipping, datasets (digits, Fashion-MNIST, image folder), pairing, DDP.

The claims, the statistics and the measurements without training are in ``test_claims.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from torchpool.cli import main
from torchpool.lab.compare import salt_and_pepper
from torchpool.lab.data import DEFAULT_FASHION_DIR, DatasetError, load_fashion_mnist, load_folder, read_idx

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

VARIANT_KEYS = {
    "name",
    "family",
    "status",
    "reason",
    "accuracy_mean",
    "accuracy_std",
    "train_accuracy_mean",
    "gap",
    "accuracy",
    "shift_consistency",
    "parameters",
    "epoch_seconds",
    "per_seed",
}


def _no_nan(constant: str) -> Any:
    raise AssertionError(f"results.json holds a bare {constant}: not JSON")


def _compare(tmp_path: Path, *args: str, out: str = "out") -> tuple[int, dict[str, Any] | None]:
    code = main(["compare", "--out", str(tmp_path / out), *args])
    results = tmp_path / out / "results.json"
    return code, json.loads(results.read_text(), parse_constant=_no_nan) if results.exists() else None


def test_tiny_run_writes_results_report_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = ["--limit", "300", "--test-limit", "120", "--epochs", "1", "--seeds", "2", "--threads", "1"]
    code, results = _compare(tmp_path, *tiny, "--variants", "max2d,median2d", "netvlad", "max1d,max3d")
    assert code == 0 and results is not None
    assert set(results) >= {"config", "machine", "variants", "claims", "measurements"}
    assert isinstance(results["machine"], str)
    config = results["config"]
    assert config["epochs"] == 1 and config["train_images"] == 300 and config["evaluated_test_images"] == 120
    assert config["estimated_seconds"] > 0 and config["total_seconds"] > 0
    by_name = {v["name"]: v for v in results["variants"]}
    assert list(by_name) == ["max2d", "median2d", "netvlad", "max1d", "max3d"]
    for v in results["variants"]:
        assert set(v) >= VARIANT_KEYS
    sets = set(config["evaluation_sets"])
    assert {"sp 0.1", "gauss 0.2", "scale 0.75", "scale 1.5", "rot -15", "rot +15"} <= sets
    for name in ("max2d", "median2d", "netvlad"):
        v = by_name[name]
        assert v["status"] == "ok" and v["reason"] is None
        assert 0.0 <= v["accuracy_mean"] <= 1.0 and 0.0 <= v["train_accuracy_mean"] <= 1.0
        assert [r["seed"] for r in v["per_seed"]] == [0, 1]
        gaps = [r["train_accuracy"] - r["test_accuracy"] for r in v["per_seed"]]
        assert v["gap"] == pytest.approx(sum(gaps) / 2)
        assert set(v["accuracy"]) == sets and all(0.0 <= a <= 1.0 for a in v["accuracy"].values())
        assert 0.0 <= v["shift_consistency"] <= 1.0
        assert v["parameters"] > 1000 and v["epoch_seconds"] > 0
        # an accuracy is a count of the 120 evaluated images
        for r in v["per_seed"]:
            assert r["test_accuracy"] * 120 == pytest.approx(round(r["test_accuracy"] * 120))
    assert by_name["netvlad"]["role"] == "head" and by_name["median2d"]["role"] == "pool"
    for name, dims in (("max1d", "1d"), ("max3d", "3d")):
        assert by_name[name]["status"] == "skipped"
        assert dims in by_name[name]["reason"] and "2-d" in by_name[name]["reason"]
    cost = results["measurements"]["costs"]
    assert set(cost) == {"max2d", "median2d", "netvlad", "(no pooling)"}
    assert (
        cost["(no pooling)"]["flops"] > 4 * cost["max2d"]["flops"]
    )  # two 2x pools: stages 2, 3 at 1/4, 1/16
    verdicts = {c["id"]: c["verdict"] for c in results["claims"]}
    assert verdicts["5b"] == "not tested" and verdicts["7a"] == "supported" and verdicts["8"] == "supported"

    out = tmp_path / "out"
    report = (out / "report.md").read_text()
    assert report.index("## Verdicts") < report.index("## 1a.") < report.index("## Not testable here")
    assert "| median2d |" in report and "not tested" in report and "36.2 AP" in report
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 8 and "<table>" in page and 'src="noise.png"' not in page
    import matplotlib.image as mpimg

    for png in (
        "effects.png",
        "noise.png",
        "scale.png",
        "shift.png",
        "computation.png",
        "spp.png",
        "unpooling.png",
    ):
        image = mpimg.imread(out / png)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
        assert float(np.asarray(image).std()) > 0.01  # not a blank canvas
        assert f"]({png})" in report

    printed = capsys.readouterr().out
    assert "\r" not in printed  # not a terminal: one line per variant, no in-place updates
    assert sum(line.startswith("[") for line in printed.splitlines()) == 5
    assert "max1d" in printed and "skipped" in printed and "estimated time:" in printed


def test_variants_of_one_seed_are_paired(tmp_path: Path) -> None:
    """max2d is the CNN with max pools and a global-average head, and so is the global_avg head variant:
    the same seed gives them the same weights, batches and evaluation, hence the same numbers."""
    args = ["--limit", "200", "--test-limit", "100", "--epochs", "1", "--seeds", "2", "--threads", "1"]
    code, results = _compare(tmp_path, *args, "--variants", "max2d", "global_avg", "avg2d", "--no-plots")
    assert code == 0 and results is not None
    runs = {v["name"]: v["per_seed"] for v in results["variants"]}
    keys = ("test_accuracy", "train_accuracy", "accuracy", "shift_consistency")
    for a, b in zip(runs["max2d"], runs["global_avg"]):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    assert runs["max2d"][0]["accuracy"] != runs["max2d"][1]["accuracy"]  # the seeds do differ
    assert runs["max2d"][0]["accuracy"] != runs["avg2d"][0]["accuracy"]  # and so do the pools


def test_only_inapplicable_variants_exit_1_with_reasons(tmp_path: Path) -> None:
    code, results = _compare(tmp_path, "--limit", "100", "--variants", "max1d", "stochastic1d", "--no-plots")
    assert code == 1 and results is not None
    assert [v["status"] for v in results["variants"]] == ["skipped", "skipped"]
    assert "2-d" in results["variants"][0]["reason"]


def test_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    options = [o for o in text.split() if o.startswith("--") and o.strip("-,[]") and o != "--help"]
    assert len(set(options)) >= 16
    chunks = text.split("options:", 1)[1].split(" --")[1:]
    for chunk in chunks:
        if chunk.startswith("help"):
            continue
        assert "default" in chunk, chunk[:80]
    for value in (
        "digits 16",
        "fashion-mnist 3000",
        "fashion-mnist 1000",
        "digits 3",
        "max2d strided_conv",
        "simpool",
    ):
        assert value in text


def test_unknown_variant_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, results = _compare(tmp_path, "--variants", "max2d", "maxx2d")
    assert code == 2 and results is None
    err = capsys.readouterr().err
    assert "maxx2d" in err and "did you mean" in err and "Traceback" not in err


@pytest.mark.slow
def test_max2d_learns_digits(tmp_path: Path) -> None:
    code, results = _compare(tmp_path, "--variants", "max2d", "--epochs", "3", "--seeds", "1", "--no-plots")
    assert code == 0 and results is not None
    assert results["variants"][0]["accuracy_mean"] > 0.7  # chance is 0.1
    assert results["config"]["evaluated_test_images"] == results["config"]["test_images"]  # digits: all


def test_salt_and_pepper_noise() -> None:
    x = torch.full((4, 1, 50, 50), 0.5)
    noisy = salt_and_pepper(x, 0.2, torch.Generator().manual_seed(0))
    hit = noisy != 0.5
    assert 0.17 < float(hit.float().mean()) < 0.23
    assert set(noisy[hit].tolist()) == {0.0, 1.0}
    assert torch.equal(salt_and_pepper(x, 0.0, torch.Generator()), x)


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1").tobytes()


def test_read_idx_round_trip_and_malformed_files(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "ok").write_bytes(_idx_bytes(images))
    (tmp_path / "ok.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(tmp_path / "ok"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "ok.gz"), images)

    (tmp_path / "bad_magic").write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(DatasetError, match=r"bad_magic is not an IDX file: magic number 12340803"):
        read_idx(tmp_path / "bad_magic")
    (tmp_path / "short").write_bytes(_idx_bytes(images)[:-5])
    with pytest.raises(
        DatasetError, match=r"declares dims \[2, 3, 4\] \(24 data bytes\) but the file holds 19"
    ):
        read_idx(tmp_path / "short")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b" + b"junk")
    with pytest.raises(DatasetError, match="does not decompress"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(DatasetError, match="cannot read IDX file"):
        read_idx(tmp_path / "absent")


def test_fashion_mnist_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = _compare(tmp_path, "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "nowhere"))
    assert code == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (bad / stem).write_bytes(_idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    (bad / "train-labels-idx1-ubyte").write_bytes(b"not an idx file")
    (bad / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(5, np.uint8)))
    code, _ = _compare(tmp_path, "--dataset", "fashion-mnist", "--data-dir", str(bad))
    err = capsys.readouterr().err
    assert code == 2 and "train-labels-idx1-ubyte is not an IDX file" in err and "Traceback" not in err
    (bad / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(4, np.uint8)))
    code, _ = _compare(tmp_path, "--dataset", "fashion-mnist", "--data-dir", str(bad))
    assert code == 2 and "5 images but 4 labels" in capsys.readouterr().err


@pytest.mark.skipif(not DEFAULT_FASHION_DIR.is_dir(), reason=f"{DEFAULT_FASHION_DIR} is absent")
def test_fashion_mnist_installed_files(tmp_path: Path) -> None:
    data = load_fashion_mnist()
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert set(data.test_y.tolist()) == set(range(10))
    assert float(data.test_x.min()) >= 0.0 and float(data.test_x.max()) == 1.0
    # a small uncompressed copy through --data-dir keeps the training run fast
    small = tmp_path / "small"
    small.mkdir()
    for stem, n in (("train", 300), ("t10k", 200)):
        for kind in ("images-idx3", "labels-idx1"):
            array = read_idx(DEFAULT_FASHION_DIR / f"{stem}-{kind}-ubyte.gz")[:n]
            (small / f"{stem}-{kind}-ubyte").write_bytes(_idx_bytes(array))
    code, results = _compare(
        tmp_path, "--dataset", "fashion-mnist", "--data-dir", str(small), "--epochs", "1", "--seeds", "2",
        "--test-limit", "150", "--variants", "max2d", "avg2d", "--no-plots",
    )  # fmt: skip
    assert code == 0 and results is not None
    assert results["config"]["image_size"] == [28, 28] and results["config"]["test_images"] == 200
    assert results["config"]["evaluated_test_images"] == 150 and results["config"]["limit"] == 3000
    assert 0.0 <= results["variants"][0]["accuracy_mean"] <= 1.0


def _write_tree(root: Path) -> None:
    import matplotlib.image as mpimg

    rng = np.random.default_rng(0)
    for label, name in enumerate(["circles", "stripes"]):
        (root / name).mkdir(parents=True)
        for i in range(6):
            size = 20 + 3 * i
            yy, xx = np.mgrid[:size, :size] / size
            base = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1) if label == 0 else (np.sin(xx * 20) > 0)
            rgb = np.stack([base * 0.9, base * 0.5, rng.random((size, size)) * 0.2], axis=-1)
            mpimg.imsave(root / name / f"{i}.png", rgb.astype(np.float32))


def test_folder_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_tree(tmp_path / "tree")
    data = load_folder(tmp_path / "tree", image_size=12, seed=0)
    assert data.classes == ["circles", "stripes"]
    assert data.train_x.shape[1:] == (1, 12, 12) and len(data.train_y) + len(data.test_y) == 12
    assert len(data.test_y) >= 2 and set(data.test_y.tolist()) == {0, 1}
    assert float(data.train_x.min()) >= 0.0 and float(data.train_x.max()) <= 1.0
    code, results = _compare(
        tmp_path, "--dataset", "folder", "--data-dir", str(tmp_path / "tree"), "--image-size", "16",
        "--epochs", "1", "--seeds", "1", "--batch-size", "4", "--variants", "max2d", "spp", "--no-plots",
    )  # fmt: skip
    assert code == 0 and results is not None
    assert [v["status"] for v in results["variants"]] == ["ok", "ok"]
    assert results["config"]["num_classes"] == 2

    (tmp_path / "one" / "only").mkdir(parents=True)
    code, _ = _compare(tmp_path, "--dataset", "folder", "--data-dir", str(tmp_path / "one"))
    assert code == 2 and "at least 2" in capsys.readouterr().err
    code, _ = _compare(tmp_path, "--dataset", "folder")
    assert code == 2 and "--data-dir" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path: Path) -> None:
    common = ["--variants", "max2d", "--epochs", "2", "--seeds", "1", "--batch-size", "64", "--no-plots"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        "-m", "torchpool", "compare", *common, "--out", str(tmp_path / "ddp"),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.count("[1/1] max2d") == 1  # only rank 0 prints
    ddp = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert ddp["config"]["world_size"] == 2
    code, single = _compare(tmp_path, *common, "--threads", "1", out="single")
    assert code == 0 and single is not None and single["config"]["world_size"] == 1
    a, b = ddp["variants"][0]["accuracy_mean"], single["variants"][0]["accuracy_mean"]
    assert a > 0.7 and abs(a - b) < 0.05


@pytest.mark.slow
def test_grid_over_two_processes_gives_the_table_of_one(tmp_path: Path) -> None:
    common = ["--variants", "max2d", "stochastic2d", "avg2d", "--limit", "200", "--test-limit", "100"]
    common += ["--epochs", "1", "--seeds", "2", "--no-plots"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        "-m", "torchpool", "compare", *common, "--grid", "--threads", "1", "--out", str(tmp_path / "grid"),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    grid = json.loads((tmp_path / "grid" / "results.json").read_text())
    assert grid["config"]["world_size"] == 2 and grid["config"]["grid"] is True
    code, single = _compare(tmp_path, *common, "--threads", "1", out="single")
    assert code == 0 and single is not None
    keys = ("seed", "test_accuracy", "train_accuracy", "accuracy", "shift_consistency")
    for a, b in zip(grid["variants"], single["variants"], strict=True):
        assert a["name"] == b["name"]
        assert [{k: r[k] for k in keys} for r in a["per_seed"]] == [
            {k: r[k] for k in keys} for r in b["per_seed"]
        ]
    timed = {"4"}  # the latency claim compares times measured in each run
    assert [c["verdict"] for c in grid["claims"] if c["id"] not in timed] == [
        c["verdict"] for c in single["claims"] if c["id"] not in timed
    ]


def test_presets_fill_only_the_options_left_unset() -> None:
    import argparse

    from torchpool.lab.compare import PRESETS, add_arguments, resolve_preset

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--dataset", "fashion-mnist", "--epochs", "7", "--limit", "all"])
    resolve_preset(args)
    quick = PRESETS["quick"]["fashion-mnist"]
    assert (args.epochs, args.limit, args.test_limit, args.seeds) == (
        7,
        None,
        quick["test_limit"],
        quick["seeds"],
    )
    args = parser.parse_args(["--preset", "thorough", "--test-limit", "500"])
    resolve_preset(args)
    thorough = PRESETS["thorough"]["digits"]
    assert (args.epochs, args.seeds, args.test_limit) == (thorough["epochs"], thorough["seeds"], 500)
    with pytest.raises(SystemExit):
        parser.parse_args(["--limit", "many"])
