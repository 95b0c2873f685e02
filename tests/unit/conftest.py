"""Unit test options. `--update-golden` rewrites golden files from the current output
(review the diff before committing); without it a golden mismatch fails the test."""
from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        parser.addoption("--update-golden", action="store_true", default=False,
                         help="rewrite golden files from the current output, then review "
                              "the diff")
    except ValueError:  # already registered by another conftest
        pass


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
