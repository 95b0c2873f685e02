"""Lab modules whose lab moves through states it cannot leave (test_db_lab: file/position
-> GTID -> TLS; test_api_check_lab: before k3s -> after; test_balancers_lab: hand-built
pair -> adopted) mark each test with the state it needs, `stage(N)` (none: 0). Tests run
by stage, in whatever order within one (file order, or pytest-randomly's shuffle): the
order is declared, not taken from where a test sits in the file."""
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "stage(n): the module's forward-only mode this test "
                            "needs; tests run by stage (tests/lab/conftest.py)")


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle
def pytest_collection_modifyitems(items):
    def stage(item):
        m = item.get_closest_marker("stage")
        return m.args[0] if m else 0
    by_module: dict = {}
    for i, item in enumerate(items):
        by_module.setdefault(item.module, []).append(i)
    for positions in by_module.values():
        ordered = sorted((items[i] for i in positions), key=stage)  # stable
        for i, item in zip(positions, ordered):
            items[i] = item
