"""Unit test fixtures. The `--update-golden` option itself is registered in tests/conftest.py
(pytest reads options only from the first conftest files it loads)."""
from __future__ import annotations

import pytest


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
