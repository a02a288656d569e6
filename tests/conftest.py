"""Hypothesis profiles: ``ci`` (default, 200 examples per property) and ``deep`` (nightly-style).

Run the deep profile with ``python -m pytest tests/test_properties.py --hypothesis-profile=deep``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile(
    "deep", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")
