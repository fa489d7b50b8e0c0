"""Set-up shared by the CDK tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Know ``xdist_group`` under ``--strict-markers`` even when xdist is off (``-p no:xdist``)."""
    config.addinivalue_line("markers", "xdist_group(name): run every test of the group on one xdist worker")
