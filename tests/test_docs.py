"""The documentation site builds with ``mkdocs build --strict`` and its Python examples run.

The build needs the ``docs`` extra (mkdocs-material, mkdocstrings[python], django-static-mathjax);
it is skipped where mkdocs is not installed. The examples only need torchpool. The built site
is checked for its API tables (every public class's real signature, types and defaults) and,
where Debian's ``chromium`` is installed, for math that renders with no network.
"""

from __future__ import annotations

import html
import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from records import POOLS

import torchpool.registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: the family pages: every registered pool's (``PoolRecord.docs_page``), and the pages of what is
#: not a registered pool (output sizes, unpooling).
FAMILY_PAGES = [*dict.fromkeys(record.docs_page for record in POOLS.values()), "output-size", "unpool"]
OTHER_PAGES = ["registry", "commands", "performance"]


def _is_module(target: str) -> bool:
    try:
        importlib.import_module(target)
    except ModuleNotFoundError:
        return False
    return True


# the modules whose API reference each page shows (its ``::: module`` directives; a directive of one
# function or class is not a module page)
def _api_pages() -> dict[str, list[str]]:
    pages: dict[str, list[str]] = {}
    for page in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"^::: (\S+)$", page.read_text(encoding="utf-8"), flags=re.M):
            if _is_module(target):
                pages.setdefault(page.stem, []).append(target)
    return pages


API_PAGES = _api_pages()
# public classes whose API entry cannot be right until their source changes: {"module.Class": reason}
API_XFAIL: dict[str, str] = {}
# what docs/_ext/sphinx_compat.py writes for a parameter that no docstring describes
UNDESCRIBED = "see the description above."
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


SURVEY_TITLE = "《卷积神经网络中的各种池化操作》"
# "seed" meaning the survey (the project's seed text, not in the repository); a random seed is fine
SURVEY_AS_SEED = re.compile(r"shared/seed|\bthe seed\b|\bseed's\b|\bseed text\b|\bseed claims\b", re.I)


def test_docs_cite_the_survey_not_the_seed() -> None:
    """User-facing pages call the survey "the survey" and the home page cites it by its title."""
    for page in sorted(DOCS.glob("*.md")):
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            assert not SURVEY_AS_SEED.search(line), f"{page.name}:{number}: {line}"
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    assert SURVEY_TITLE in index
    assert "The various pooling operations in CNNs" in index


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once by ``mkdocs build --strict`` for this module's tests."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site


def test_mkdocs_build_strict(site: Path) -> None:
    for name in [*FAMILY_PAGES, *OTHER_PAGES]:
        page = site / name / "index.html"
        assert page.is_file(), name
    assert (site / "index.html").is_file()
    # the API reference blocks were rendered, not left as text
    median = (site / "median" / "index.html").read_text(encoding="utf-8")
    assert 'id="torchpool.ops.median.median_pool2d"' in median
    assert ":::" not in median


# --------------------------------------------------------------------------- offline math


def test_math_renderer_is_bundled(site: Path) -> None:
    """The pages load MathJax from the site itself, never from the network."""
    median = (site / "median" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in median
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', median)
    assert not [src for src in scripts if re.match(r"(https?:)?//", src)], scripts
    mathjax = [src for src in scripts if "mathjax" in src.lower() and src.endswith("chtml.js")]
    assert mathjax, scripts
    for src in mathjax:
        assert (site / "median" / src).resolve().is_file(), src
    fonts = site / "javascripts" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert len(list(fonts.glob("*.woff"))) > 10


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _headless(
    browser: str, profile: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs headless Chromium with every host name unresolvable (no network at all)."""
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=15000",  # let MathJax finish typesetting before the dump
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_math_renders_offline_in_chromium(site: Path, tmp_path: Path) -> None:
    """The built median page, opened from file:// with no network, contains typeset math."""
    browser = _chromium()
    if browser is None:
        print("SKIP reason: Debian's chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    page = (site / "median" / "index.html").resolve()
    source = page.read_text(encoding="utf-8")
    expected = len(re.findall(r'class="arithmatex"', source))
    assert expected >= 3  # the display formula and the inline math of the median page
    result = _headless(browser, tmp_path / "profile", "--dump-dom", page.as_uri())
    dom = result.stdout
    assert "</html>" in dom, result.stderr[-2000:]
    rendered = re.findall(r'<mjx-container class="MathJax[^"]*" jax="CHTML"', dom)
    assert len(rendered) >= expected, (len(rendered), expected)
    assert 'display="true"' in dom  # the display formula
    assert "<mjx-mi" in dom and "<mjx-mo" in dom  # typeset glyphs, not text
    # no TeX left as text: arithmatex's delimiters are gone from what the page shows
    body = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)
    shown = html.unescape(re.sub(r"<[^>]+>", "", body))
    for delimiter in ("\\[", "\\]", "\\(", "\\)"):
        assert delimiter not in shown, f"raw TeX {delimiter} left in the page"
    # the picture: a screenshot of the rendered page (for a person to look at when it fails)
    shot = tmp_path / "median.png"
    _headless(browser, tmp_path / "profile", "--window-size=1280,1400", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000


# --------------------------------------------------------------------------- API tables


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", fragment))).strip()


def _api_blocks(page: str) -> dict[str, tuple[str | None, list[list[str]]]]:
    """``{object id: (signature text or None, parameter table rows)}`` of a built page."""
    blocks: dict[str, tuple[str | None, list[list[str]]]] = {}
    for chunk in page.split('<div class="doc doc-object ')[1:]:
        heading = re.search(r'<h\d id="([^"]+)"', chunk)
        if heading is None:
            continue
        signature = re.search(r'<div class="doc-signature highlight">(.*?)</div>', chunk, flags=re.S)
        table = re.search(r"Parameters:</span></p>\s*<table>(.*?)</table>", chunk, flags=re.S)
        rows = []
        if table:
            for row in re.findall(r'<tr class="doc-section-item">(.*?)</tr>', table.group(1), flags=re.S):
                rows.append([_text(cell) for cell in re.findall(r"<td>(.*?)</td>", row, flags=re.S)])
        blocks[heading.group(1)] = (_text(signature.group(1)) if signature else None, rows)
    return blocks


def _shown_default(default: Any) -> str:
    return default.__name__ if hasattr(default, "__name__") else repr(default)


def _shown_type(annotation: Any) -> str | None:
    """The type column's text for a string annotation (dotted names show their last part)."""
    if not isinstance(annotation, str):
        return None
    return re.sub(r"\b(?:[A-Za-z_][A-Za-z_0-9]*\.)+([A-Za-z_][A-Za-z_0-9]*)", r"\1", annotation)


def _unquote(text: str) -> str:
    return text.replace('"', "'")


PUBLIC_CLASSES = [
    pytest.param(
        page,
        module,
        name,
        id=f"{module}.{name}",
        marks=[pytest.mark.xfail(strict=True, reason=API_XFAIL[f"{module}.{name}"])]
        if f"{module}.{name}" in API_XFAIL
        else [],
    )
    for page, modules in API_PAGES.items()
    for module in modules
    for name in importlib.import_module(module).__all__
    if inspect.isclass(getattr(importlib.import_module(module), name))
]


@pytest.fixture(scope="module")
def api_pages(site: Path) -> dict[str, dict[str, tuple[str | None, list[list[str]]]]]:
    return {page: _api_blocks((site / page / "index.html").read_text(encoding="utf-8")) for page in API_PAGES}


@pytest.mark.parametrize(("page", "module", "name"), PUBLIC_CLASSES)
def test_api_table_shows_real_signature(
    api_pages: dict[str, dict[str, tuple[str | None, list[list[str]]]]], page: str, module: str, name: str
) -> None:
    """Each public class shows its real signature, and a parameter table with types and defaults."""
    cls = getattr(importlib.import_module(module), name)
    parameters = [
        p
        for p in inspect.signature(cls).parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    blocks = api_pages[page]
    assert f"{module}.{name}" in blocks, f"{name} is not documented on {page}"
    signature, rows = blocks[f"{module}.{name}"]
    assert signature is not None, f"{name} shows no signature"
    assert signature.startswith(f"{name}("), signature
    shown = _unquote(signature.replace(" ", ""))
    for p in parameters:
        expected = p.name if p.default is p.empty else f"{p.name}={_shown_default(p.default)}"
        assert _unquote(expected.replace(" ", "")) in shown, (expected, signature)
    if not parameters:
        return
    assert [row[0] for row in rows] == [p.name for p in parameters], f"{name}'s parameter table: {rows}"
    for p, (_, shown_type, description, default) in zip(parameters, rows, strict=True):
        assert shown_type, f"{name}({p.name}) has an empty type"
        written = _shown_type(p.annotation)
        if written is not None:
            assert shown_type.replace(" ", "") == written.replace(" ", ""), (p, shown_type)
        assert description and description != UNDESCRIBED, f"{name}({p.name}) is not described"
        if p.default is p.empty:
            assert default == "required", (p, default)
        else:
            assert _unquote(default) == _unquote(_shown_default(p.default)), (p, default)
