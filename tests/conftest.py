"""Hypothesis profiles, and the fast local loop.

Hypothesis: ``ci`` (default, 200 examples per property) and ``deep`` (nightly-style). Run the deep
profile with ``python -m pytest tests/test_properties.py --hypothesis-profile=deep``.

The fast loop: ``python -m pytest -m "not slow"`` leaves out the heavy walks marked here (every
registered pool through compile / export / ONNX, degenerate inputs, half precision, the API
battery, gradcheck, hypothesis properties, the mkdocs build, ...) besides the tests marked
``@pytest.mark.slow`` in their files; the cheap checks that the tables and the docs rendered from
them agree stay in. ``python -m pytest`` (CI) runs everything.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile(
    "deep", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")

#: test file -> the test functions marked slow there (``None``: all but those in :data:`FAST`).
SLOW: dict[str, frozenset[str] | None] = {
    "test_export_compile.py": None,
    "test_degenerate.py": None,
    "test_precision.py": None,
    "test_properties.py": None,
    "test_properties_ops.py": None,
    "test_zoo.py": None,
    "test_memory.py": None,
    "test_battery.py": frozenset({"test_battery"}),
    "test_ops.py": frozenset({"test_gradcheck"}),
}
#: the cheap checks of the files above that stay in the fast loop: the tables and their docs.
FAST: frozenset[str] = frozenset(
    {
        "test_exception_tables_name_registered_pools",
        "test_support_doc_matches_tests",
        "test_policy_covers_every_pool_and_case",
        "test_degenerate_doc_matches_tests",
        "test_tables_name_registered_pools",
        "test_precision_table_renders_every_pool",
    }
)
#: fixtures that make a test slow wherever it is (``site``: the mkdocs build of ``test_docs.py``).
SLOW_FIXTURES: frozenset[str] = frozenset({"site"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks the heavy walks ``slow`` (see the module docstring)."""
    slow = pytest.mark.slow
    for item in items:
        name = getattr(item, "originalname", None) or item.name.split("[", 1)[0]
        tests = SLOW.get(item.path.name, frozenset())
        walk = name not in FAST if tests is None else name in tests
        if walk or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(slow)
