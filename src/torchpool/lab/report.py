"""The outputs of ``torchpool compare``: the text table, ``report.md`` and ``results.json``.

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so a
reader or an interrupted run sees the old file or the whole new one; ``results.json`` is strict
JSON (NaN and infinities become ``null``).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .claims import NOT_TESTABLE, Claim
from .stats import RULE
from .training import GAUSS_SIGMAS, ROTATIONS, SCALES, SHIFT_MAX, SP_LEVELS

__all__ = ["cell", "format_table", "write_json_atomic", "write_report"]


def cell(mean: float | None, std: float | None = None, digits: int = 3) -> str:
    """``0.951 ± 0.004`` (or ``-`` for a missing value)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _table_rows(
    variants: list[dict[str, Any]], cost: dict[str, dict[str, Any]]
) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "role", "setting", "test acc", "gap", "s&p 0.1", "gauss 0.2"]
    header += [f"{s:g}x" for s in SCALES] + [
        "rot ±15",
        "shift cons.",
        "params",
        "MFLOPs",
        "ms/batch",
        "s/epoch",
    ]
    rows = []
    for v in variants:
        if v["status"] != "ok":
            rows.append([v["name"], v["status"], v["reason"] or ""] + [""] * (len(header) - 3))
            continue
        acc = v["accuracy"]
        rot = [acc.get(f"rot {d:+g}") for d in ROTATIONS]
        c = cost.get(v["name"], {})
        rows.append(
            [
                v["name"],
                v["role"],
                v["setting"],
                cell(v["accuracy_mean"], v["accuracy_std"]),
                cell(v["gap"]),
                cell(acc.get("sp 0.1")),
                cell(acc.get("gauss 0.2")),
                *[cell(acc.get(f"scale {s:g}")) for s in SCALES],
                cell(None if None in rot else sum(r for r in rot if r is not None) / len(rot)),
                cell(v["shift_consistency"]),
                f"{v['parameters']:,}",
                f"{c['flops'] / 1e6:.2f}" if c else "-",
                f"{c['latency_ms']:.1f}" if c else "-",
                f"{v['epoch_seconds']:.2f}",
            ]
        )
    return header, rows


def format_table(variants: list[dict[str, Any]], cost: dict[str, dict[str, Any]] | None = None) -> str:
    """The results as a fixed-width text table (skipped variants show their reason)."""
    header, rows = _table_rows(variants, cost or {})
    ok_rows = [r for r, v in zip(rows, variants) if v["status"] == "ok"]
    widths = [max(len(r[i]) for r in [header, *ok_rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    for r, v in zip(rows, variants):
        if v["status"] != "ok":
            lines.append(f"{r[0].ljust(widths[0])}  {v['status']}: {r[2]}")
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


# A report is a list of blocks rendered twice: Markdown and self-contained HTML.
Block = tuple[str, Any]


def _effect(c: Any) -> str:
    return str(c.effect_text())


def _verdict_rows(claims: list[Claim]) -> list[list[str]]:
    rows = []
    for c in claims:
        judged = [x for x in c.comparisons if x.direction != "report"]
        first = judged[0] if judged else None
        effect = (
            f"{first.name}: {_effect(first)}" if first is not None and first.interval is not None else "-"
        )
        rows.append([c.id, c.text, effect, f"**{c.verdict}**", c.reason])
    return rows


def _claim_blocks(c: Claim, figure: str | None) -> list[Block]:
    blocks: list[Block] = [("h2", f"{c.id}. {c.text}")]
    blocks.append(("p", f"**Source:** {c.source}."))
    blocks.append(("p", f"**Measured:** {c.measurement}."))
    rows = []
    for x in c.comparisons:
        shown = [f"{v:+,.0f}" if x.unit else f"{v:+.4f}" for v in x.values[:8]]
        values = ", ".join(shown) + (f" ... ({len(x.values)} values)" if len(x.values) > 8 else "")
        claimed = {"higher": "> 0", "lower": "< 0", "report": "(reported)"}[x.direction]
        rows.append([x.name, x.label, claimed, values or "-", _effect(x), x.verdict, x.reason])
    if rows:
        blocks.append(
            (
                "table",
                (["comparison", "metric", "claimed", "per seed", "effect [95% CI]", "verdict", "why"], rows),
            )
        )
    blocks.append(("p", f"**Rule:** {c.rule}."))
    blocks.append(("p", f"**Verdict: {c.verdict}** — {c.reason}."))
    for note in c.notes:
        blocks.append(("p", f"*Note:* {note}"))
    if figure:
        blocks.append(("img", figure))
    return blocks


def _blocks(results: dict[str, Any], claims: list[Claim], figures: dict[str, str]) -> list[Block]:
    cfg = results["config"]
    cost = results.get("measurements", {}).get("costs", {})
    seeds = f"seeds {cfg['seed']}..{cfg['seed'] + cfg['seeds'] - 1}"
    blocks: list[Block] = [
        ("h1", "torchpool compare: the pooling survey's claims, measured"),
        (
            "p",
            f"**Dataset:** {cfg['dataset_description']}; every evaluation uses the same seeded subset of "
            f"{cfg['evaluated_test_images']} test images. **Model:** "
            "conv(16)-BN-ReLU-POOL-conv(32)-BN-ReLU-POOL-"
            "conv(64)-BN-ReLU-HEAD-Linear; a *pool* variant replaces both POOLs (global-average HEAD), "
            "a *head* "
            "variant replaces the HEAD and a *neck* is inserted before it (max2d POOLs); *strided_conv* "
            "downsamples with a learned 3x3 stride-2 convolution instead of pooling "
            "(the no-pooling control).",
        ),
        (
            "p",
            f"**Training:** {cfg['epochs']} epoch(s), {cfg['seeds']} paired seed(s) per variant "
            f"({seeds}: the same "
            "batches in the same order and the same initial weights of the shared layers for "
            "every variant), "
            f"Adam lr {cfg['lr']}, global batch {cfg['batch_size']}, world size {cfg['world_size']}, preset "
            f"{cfg.get('preset', 'quick')}.",
        ),
        (
            "p",
            f"**Machine:** {results['machine']}. **Time:** {cfg.get('total_seconds', 0):.0f} s "
            f"(estimated {cfg.get('estimated_seconds', 0):.0f} s at the start).",
        ),
        ("h2", "Verdicts"),
        (
            "p",
            f"Each effect is the mean paired difference over seeds (variant minus baseline) with its 95% "
            f"t-interval. Rule: {RULE}. This is one small CNN on one small dataset with a few seeds: "
            "a verdict "
            "describes this run, not pooling in general.",
        ),
        ("table", (["claim", "text", "effect [95% CI]", "verdict", "why"], _verdict_rows(claims))),
    ]
    if "effects" in figures:
        blocks.append(("img", figures["effects"]))
    for c in claims:
        blocks += _claim_blocks(c, c.figure)
    blocks.append(("h2", "Not testable here"))
    blocks.append(("table", (["claim", "published figure", "why not here"], [list(t) for t in NOT_TESTABLE])))
    blocks.append(("h2", "Every variant"))
    blocks.append(
        (
            "p",
            f"Means over seeds on the evaluated test images. *gap*: train minus test accuracy; *s&p 0.1*: "
            f"10% of pixels set to 0 or 1 (levels {', '.join(f'{x:g}' for x in SP_LEVELS)} in results.json); "
            f"*gauss 0.2*: additive noise sigma 0.2 (of {', '.join(f'{x:g}' for x in GAUSS_SIGMAS)}); "
            f"*{'/'.join(f'{s:g}x' for s in SCALES)}*: test images resized, a new input size; *rot ±15*: "
            f"mean over ±15° rotations; *shift cons.*: share of predictions unchanged by a 1-{SHIFT_MAX} px "
            "shift; *MFLOPs*: per image (convolutions and matrix products, torch.utils.flop_counter); "
            "*ms/batch*: measured forward latency of a batch of "
            f"{results.get('measurements', {}).get('cost_batch', '?')}.",
        )
    )
    header, rows = _table_rows(results["variants"], cost)
    blocks.append(("table", (header, rows)))
    if "no-pool" in figures:
        blocks.append(("img", figures["no-pool"]))
    return blocks


def _md(blocks: list[Block]) -> str:
    lines: list[str] = []
    for kind, value in blocks:
        if kind == "h1":
            lines += [f"# {value}", ""]
        elif kind == "h2":
            lines += [f"## {value}", ""]
        elif kind == "p":
            lines += [value, ""]
        elif kind == "img":
            lines += [f"![{value}]({value})", ""]
        elif kind == "table":
            header, rows = value
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
            lines.append("")
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Markdown emphasis of the report (``**bold**``, ``*italic*``) as HTML, after escaping."""
    import re

    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"\*(.+?)\*", r"<i>\1</i>", out)


def _html(blocks: list[Block], folder: Path) -> str:
    body: list[str] = []
    for kind, value in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{_inline(value)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(value)}</p>")
        elif kind == "img":
            path = folder / value
            if path.is_file():
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                body.append(f'<p><img alt="{html.escape(value)}" src="data:image/png;base64,{data}"></p>')
        elif kind == "table":
            header, rows = value
            head = "".join(f"<th>{_inline(h)}</th>" for h in header)
            cells = "".join(
                "<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>" for r in rows
            )
            body.append(f"<table><tr>{head}</tr>{cells}</table>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 6px}"
        "th{background:#f3f3f3}img{max-width:100%}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>torchpool compare</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(out: Path, results: dict[str, Any], claims: list[Claim], figures: dict[str, str]) -> None:
    """Writes ``report.md`` and the self-contained ``report.html`` (figures inline, base64)."""
    blocks = _blocks(results, claims, figures)
    _write_atomic(out / "report.md", _md(blocks) + "\n")
    _write_atomic(out / "report.html", _html(blocks, out))


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
