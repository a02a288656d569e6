"""The README's feature table, rendered from what the tests assert.

One row per pool family stem (``avg1d/2d/3d``): half precision from ``tests/test_precision.py``
(its exception tables, which the registry walk asserts); fullgraph compile, inductor,
torch.export and ONNX from ``tests/test_export_compile.py`` (the same tables that render
``docs/support.md``); the deterministic-mode route from ``tests/test_cuda.py``'s exceptions.
A test fails when the README and this rendering disagree;
``python tests/test_feature_table.py --write`` rewrites it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import test_cuda
import test_export_compile
import test_precision

import torchpool as tp

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- feature-table:start -->", "<!-- feature-table:end -->"
HEADER = (
    "| pool | float16 | bfloat16 | fullgraph compile (aot_eager, train + eval) | inductor | torch.export "
    "| ONNX | deterministic mode |\n|---|---|---|---|---|---|---|---|\n"
)


def _onnx(cell: str) -> str:
    if cell.startswith("no"):
        return "no (no ONNX op)"
    return "yes (dynamo exporter)" if "dynamo exporter only" in cell else "yes"


def _compile(cell: str) -> str:
    return "yes (fixed seed)" if "fixed seed" in cell else cell


def render_rows() -> list[str]:
    """Markdown rows, one per name stem of the registry."""
    support = {row[0]: row for row in test_export_compile.support_rows()}
    stems: dict[str, list[tp.PoolInfo]] = {}
    for info in tp.list_pools():
        stems.setdefault(test_precision._stem(info.name), []).append(info)
    rows = []
    for stem, infos in stems.items():
        infos = sorted(infos, key=lambda info: info.dims)
        half = []
        for dtype in ("float16", "bfloat16"):
            per_dim = {}
            for info in infos:
                cell, _ = test_precision._status(info.name, dtype)
                per_dim.update({f"{d}d": cell for d in info.dims})
            half.append(test_precision._summarise(per_dim))
        names = [info.name for info in infos]
        compile_cells = {_compile(support[name][3]) for name in names}
        inductor_cells = {support[name][4] for name in names}
        onnx_cells = {_onnx(support[name][5]) for name in names}
        export_cells = {support[name][6] for name in names}
        raises = [name for name in names if name in test_cuda.DETERMINISTIC_EXCEPTIONS]
        deterministic = "no: PyTorch's backward raises" if raises else "yes"
        row = [
            test_precision._label(stem, infos),
            *half,
            " / ".join(sorted(compile_cells)),
            " / ".join(sorted(inductor_cells)),
            " / ".join(sorted(export_cells)),
            " / ".join(sorted(onnx_cells)),
            deterministic,
        ]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return rows


def render() -> str:
    return HEADER + "\n".join(render_rows()) + "\n"


def _section(text: str) -> str:
    match = re.search(re.escape(START) + r"\n(.*?)" + re.escape(END), text, flags=re.S)
    assert match is not None, f"README.md lacks the {START} ... {END} markers"
    return match.group(1)


def test_feature_table_covers_every_pool() -> None:
    labels = " ".join(row.split("|")[1] for row in render_rows())
    assert all(test_precision._stem(info.name) in labels for info in tp.list_pools())


def test_readme_feature_table_matches_tests() -> None:
    assert _section(README.read_text()) == render(), (
        "README.md's feature table is stale: run `python tests/test_feature_table.py --write`"
    )


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        text = README.read_text()
        old = _section(text)
        README.write_text(text.replace(START + "\n" + old + END, START + "\n" + render() + END))
        print(f"wrote the feature table into {README}")
    else:
        print(render())
