"""Options of the unit tests."""


def pytest_addoption(parser):
    try:
        parser.addoption("--update-golden", action="store_true", default=False,
                         help="rewrite the golden files from the code under test (then "
                              "review the diff); without it a difference fails the test")
    except ValueError:  # already registered by another conftest
        pass
