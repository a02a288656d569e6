"""The outputs of ``torchpool compare``: the text table, ``report.md`` and ``results.json``.

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so a
reader or an interrupted run sees the old file or the whole new one; ``results.json`` is strict
JSON (NaN and infinities become ``null``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .claims import Claim
from .training import NOISE_LEVELS, RESIZE_FACTOR

__all__ = ["cell", "format_table", "write_json_atomic", "write_report"]


def cell(mean: float | None, std: float | None = None, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _table_rows(variants: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "role", "setting", "test acc", "train", "gap"]
    header += [f"noise {level:g}" for level in NOISE_LEVELS if level > 0]
    header += [f"{RESIZE_FACTOR:g}x size", "params", "s/epoch"]
    rows = []
    for v in variants:
        if v["status"] != "ok":
            rows.append([v["name"], v["status"], v["reason"] or ""] + [""] * (len(header) - 3))
            continue
        rows.append(
            [
                v["name"],
                v["role"],
                v["setting"],
                cell(v["accuracy_mean"], v["accuracy_std"]),
                cell(v["train_accuracy_mean"]),
                cell(v["gap"]),
                *[cell(v["noise_accuracy"].get(str(level))) for level in NOISE_LEVELS if level > 0],
                cell(v["resized_accuracy"]),
                f"{v['parameters']:,}",
                f"{v['epoch_seconds']:.2f}",
            ]
        )
    return header, rows


def format_table(variants: list[dict[str, Any]]) -> str:
    """The results as a fixed-width text table (skipped variants show their reason)."""
    header, rows = _table_rows(variants)
    ok_rows = [r for r, v in zip(rows, variants) if v["status"] == "ok"]
    widths = [max(len(r[i]) for r in [header, *ok_rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    for r, v in zip(rows, variants):
        if v["status"] != "ok":
            lines.append(f"{r[0].ljust(widths[0])}  {v['status']}: {r[2]}")
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def _markdown_table(variants: list[dict[str, Any]]) -> str:
    header, rows = _table_rows(variants)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(out: Path, results: dict[str, Any], claims: list[Claim], plots: list[str]) -> None:
    cfg = results["config"]
    ok = [v for v in results["variants"] if v["status"] == "ok"]
    lines = [
        "# torchpool compare",
        "",
        f"Dataset: {cfg['dataset_description']}. Model: conv(16)-BN-ReLU-POOL-conv(32)-BN-ReLU-POOL-"
        "conv(64)-BN-ReLU-HEAD-Linear; windowed variants replace both POOLs (global-average HEAD), "
        "head variants replace the HEAD (max2d POOLs).",
        f"Training: {cfg['epochs']} epochs, {cfg['seeds']} seed(s) per variant (seeds {cfg['seed']}.."
        f"{cfg['seed'] + cfg['seeds'] - 1}), Adam lr {cfg['lr']}, global batch {cfg['batch_size']}, "
        f"world size {cfg['world_size']}.",
        f"Machine: {results['machine']}.",
        "",
        "Accuracies are mean ± sample std over seeds on the test split; *gap* is train accuracy minus test "
        "accuracy; *noise p* is test accuracy with a fraction p of pixels set to 0 or 1; "
        f"*{RESIZE_FACTOR:g}x size* is test accuracy on test images upsampled {RESIZE_FACTOR:g}x "
        "(bilinear) without retraining.",
        "",
        _markdown_table(results["variants"]),
        "",
        "## Survey claims",
        "",
        "Rule: a claim is *supported* when the difference goes the claimed way and the mean ± std "
        "intervals do not overlap, *not supported* when they do not overlap the other way, "
        "*inconclusive* otherwise (or with one seed). Each std is at least the binomial standard "
        "error of a test accuracy on this test split. This is a small sample "
        f"({cfg['seeds']} seed(s), {cfg['epochs']} epochs, {cfg['train_images']} "
        "training images, one small CNN, one dataset): a verdict describes this run, not pooling in general.",
        "",
    ]
    for c in claims:
        lines.append(f"{c.number}. **{c.text}** — {c.verdict}. {c.evidence}.")
        lines.extend(f"   - {note}" for note in c.notes)
    if ok:
        best = max(ok, key=lambda v: v["accuracy_mean"])
        lines += [
            "",
            f"Highest mean test accuracy in this run: {best['name']} "
            f"({cell(best['accuracy_mean'], best['accuracy_std'])}).",
        ]
    if plots:
        lines += ["", *[f"![{p}]({p})" for p in plots]]
    _write_atomic(out / "report.md", "\n".join(lines) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader (or a run interrupted half-way) sees the old file or the whole new one, never a part.
    """
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; a plain write would follow the umask
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _strict(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    r"""Writes ``data`` as strict JSON (NaN and infinities become ``null``), atomically.

    Args:
        path: the file; its folder must exist.
        data: dicts, lists, strings, numbers, booleans and None.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_json_atomic(folder / "r.json", {"accuracy": float("nan"), "runs": [1.0, float("inf")]})
        >>> (folder / "r.json").read_text()
        '{\n  "accuracy": null,\n  "runs": [\n    1.0,\n    null\n  ]\n}\n'
    """
    _write_atomic(path, json.dumps(_strict(data), indent=2, allow_nan=False) + "\n")
