"""Benchmarks: run ``python -m benchmarks.run_all --quick``."""
