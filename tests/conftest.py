"""Hypothesis profiles, and the fast local loop.

Hypothesis: ``ci`` (default, 200 examples per property) and ``deep`` (nightly-style). Run the deep
profile with ``python -m pytest tests/test_properties.py --hypothesis-profile=deep``.

The fast loop: ``python -m pytest -m "not slow"`` leaves out the heavy walks marked here (every
registered pool through compile / export / ONNX, degenerate inputs, half precision, the API
battery, gradcheck, hypothesis properties, the mkdocs build) and the single tests that take
seconds (compile, ONNX, subprocesses), besides the tests marked ``@pytest.mark.slow`` in their
files; the cheap checks that the tables and the docs rendered from them agree stay in.
``python -m pytest`` (CI) runs everything: the marks only deselect under ``-m "not slow"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
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
    "test_stochastic_memory.py": None,
    "test_battery.py": frozenset({"test_battery"}),
    "test_ops.py": frozenset({"test_gradcheck"}),
    # single tests that take seconds each (compile, ONNX, gradcheck, subprocesses, downloads)
    "test_adaptive.py": frozenset(
        {
            "test_separable_avg_pool3d_matches_pytorch",
            "test_both_routes_match_reference_and_each_other",
            "test_mode_default_follows_torch_flag_off_cpu",
            "test_decomposed_route_gradcheck",
        }
    ),
    "test_median.py": frozenset(
        {
            "test_onnx_torchscript_exporter",
            "test_onnx_options",
            "test_options_gradcheck",
            "test_gradcheck",
            "test_compiled_matches_eager",
            "test_large_window_fallback",
            "test_integer_input_is_exact",
            "test_custom_op_checks",
        }
    ),
    "test_cli.py": frozenset({"test_ctrl_c_exits_130_with_one_line", "test_a_closed_pipe_stops_quietly"}),
    "test_compare.py": frozenset(
        {"test_fashion_mnist_installed_files", "test_tiny_run_writes_results_report_and_plots"}
    ),
    "test_registry.py": frozenset({"test_python_dash_m"}),
    "test_bilinear.py": frozenset({"test_sketch_inner_products_are_unbiased"}),
    "test_stochastic.py": frozenset({"test_fullgraph_compile_matches_eager_with_dilation_and_ceil"}),
    "test_pyramid.py": frozenset({"test_fullgraph_compile_matches_eager_with_ties"}),
    "test_combined_global.py": frozenset(
        {"test_dilated_combined_pools_match_reference", "test_dilated_learned_and_gated_match_reference"}
    ),
    "test_readme.py": frozenset({"test_readme_example_runs"}),
    "test_gallery_shape.py": frozenset(
        {"test_gallery_image_option", "test_gallery_default_photo", "test_gallery_grayscale_kept_size"}
    ),
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
    seen: dict[str, set[str]] = {}
    for item in items:
        name = getattr(item, "originalname", None) or item.name.split("[", 1)[0]
        seen.setdefault(item.path.name, set()).add(name)
        tests = SLOW.get(item.path.name, frozenset())
        walk = name not in FAST if tests is None else name in tests
        if walk or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(slow)
    for file, names in seen.items():  # a renamed test would silently join the fast loop
        stale = sorted((SLOW.get(file) or frozenset()) - names)
        if stale and not config.option.keyword:
            warnings.warn(
                pytest.PytestWarning(f"conftest.SLOW names no test of {file}: {stale}"), stacklevel=1
            )


@pytest.fixture
def one_thread() -> Iterator[None]:
    """PyTorch (and the C kernels, which take its thread count) on one thread, restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fresh_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The C kernel loader with an empty cache folder and no library loaded yet (restored after)."""
    import torchpool._native as native

    monkeypatch.setenv("TORCHPOOL_CACHE_DIR", str(tmp_path))
    native.load.cache_clear()
    yield
    native.load.cache_clear()
