"""The documentation site builds with ``mkdocs build --strict`` and its Python examples run.

The build needs the ``docs`` extra (mkdocs-material, mkdocstrings[python]); it is skipped
where mkdocs is not installed. The examples only need torchpool.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import torchpool.registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FAMILY_PAGES = [
    "output-size",
    "max-avg",
    "stochastic",
    "median",
    "combined",
    "pyramid",
    "global",
    "netvlad",
    "bilinear",
    "unpool",
]
OTHER_PAGES = ["registry", "commands", "performance"]
EXAMPLES = [
    (page, i, code)
    for page in sorted(DOCS.glob("*.md"))
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S))
]


def test_every_page_has_a_source() -> None:
    for name in [*FAMILY_PAGES, *OTHER_PAGES, "index"]:
        assert (DOCS / f"{name}.md").is_file(), name


@pytest.mark.parametrize(
    ("page", "index", "code"), EXAMPLES, ids=[f"{page.stem}-{i}" for page, i, _ in EXAMPLES]
)
def test_docs_example_runs(page: Path, index: int, code: str) -> None:
    registry = torchpool.registry._REGISTRY
    saved = dict(registry)  # the registry page's example registers a pool: undo it afterwards
    try:
        exec(compile(code, f"{page}#example{index}", "exec"), {"__name__": "__docs_example__"})
    finally:
        registry.clear()
        registry.update(saved)


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in [*FAMILY_PAGES, *OTHER_PAGES]:
        page = site / name / "index.html"
        assert page.is_file(), name
    assert (site / "index.html").is_file()
    # the API reference blocks were rendered, not left as text
    median = (site / "median" / "index.html").read_text(encoding="utf-8")
    assert 'id="torchpool.ops.median.median_pool2d"' in median
    assert ":::" not in median
