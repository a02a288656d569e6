"""MkDocs hook (mkdocs.yml -> hooks) that bundles MathJax into the built site.

The pages' math (``pymdownx.arithmatex`` in generic mode: ``\\( ... \\)`` and ``\\[ ... \\]``
inside ``.arithmatex`` elements) is typeset in the browser by MathJax 3. MathJax is not fetched
from a CDN: it comes from the ``django-static-mathjax`` wheel (a plain copy of MathJax 3.2.2,
installed by the ``docs`` extra; it needs no Django at all) and is copied into
``<site>/javascripts/mathjax/`` after the build, so the site renders its math with no network,
also when opened from ``file://``.

Only the ``tex-mml-chtml`` combined component is copied, with what it loads lazily (the CHTML
fonts, the a11y/ui/speech components); the other combined builds and the SVG output are left out.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

DISTRIBUTION = "django-static-mathjax"
TARGET = "javascripts/mathjax"
ENTRY = "tex-mml-chtml.js"
# top-level files of MathJax's es5/ folder that the tex-mml-chtml component can load
_TOP_FILES = {ENTRY, "core.js", "loader.js", "startup.js"}
_SKIP = ("output/svg.js", "output/svg/")


def mathjax_es5() -> Path:
    """Returns MathJax's ``es5`` folder inside the installed ``django-static-mathjax``."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as err:
        raise PluginError(
            f"the docs bundle MathJax from the {DISTRIBUTION!r} package, which is not installed: "
            "pip install -e '.[docs]'"
        ) from err
    for path in dist.files or []:
        if path.as_posix().endswith(f"es5/{ENTRY}"):
            es5 = Path(str(dist.locate_file(path))).parent
            if (es5 / ENTRY).is_file():
                return es5
    raise PluginError(f"{DISTRIBUTION!r} is installed but has no es5/{ENTRY}")


def _wanted(relative: Path) -> bool:
    if len(relative.parts) == 1:
        return relative.name in _TOP_FILES
    return not relative.as_posix().startswith(_SKIP)


def copy_mathjax(site_dir: Path) -> int:
    """Copies the MathJax files the site uses into ``site_dir/javascripts/mathjax``; returns the count."""
    es5 = mathjax_es5()
    target = site_dir / TARGET
    if target.exists():
        shutil.rmtree(target)
    count = 0
    for source in sorted(es5.rglob("*")):
        relative = source.relative_to(es5)
        if source.is_file() and _wanted(relative):
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
            count += 1
    licence = es5.parent / "LICENSE"
    if licence.is_file():
        shutil.copyfile(licence, target / "LICENSE")
    return count


def on_post_build(config: Any, **kwargs: Any) -> None:
    """MkDocs event: copy MathJax into the freshly built site."""
    copy_mathjax(Path(config["site_dir"]))
