"""run.fan_out (the one thread fan-out) and run.poll (the one wait-until helper)."""
import threading
import time
from types import SimpleNamespace

import pytest

from tasks.core import run


# ---- fan_out

def test_fan_out_runs_items_concurrently():
    # three items that each wait for the other two: only a real fan-out gets past it
    barrier = threading.Barrier(3, timeout=5)
    res = run.fan_out(["a", "b", "c"], lambda it: (barrier.wait(), it.upper())[1])
    assert res == {"a": (True, "A"), "b": (True, "B"), "c": (True, "C")}


def test_one_failing_item_never_hides_another_result():
    """The first item fails at once, the second succeeds later, the third fails later:
    every item is reported with its own result or exception."""
    def fn(it):
        if it == "fast-fail":
            raise ConnectionError("no route to fast-fail")
        time.sleep(0.2)
        if it == "slow-fail":
            raise ValueError("slow-fail broke")
        return f"{it} done"

    res = run.fan_out(["fast-fail", "slow-ok", "slow-fail"], fn)
    assert list(res) == ["fast-fail", "slow-ok", "slow-fail"]  # the items' order
    assert res["slow-ok"] == (True, "slow-ok done")
    ok, err = res["fast-fail"]
    assert not ok and isinstance(err, ConnectionError) and "fast-fail" in str(err)
    ok, err = res["slow-fail"]
    assert not ok and isinstance(err, ValueError)


def test_fan_out_sequential_runs_in_order_and_reports_all():
    seen = []

    def fn(it):
        seen.append(it)
        if it == 2:
            raise RuntimeError("two")
        return it

    res = run.fan_out([3, 2, 1], fn, parallel=False)
    assert seen == [3, 2, 1]
    assert res[3] == (True, 3) and res[1] == (True, 1) and not res[2][0]


def test_fan_out_of_nothing():
    assert run.fan_out([], lambda it: it) == {}


# ---- poll, on a fake clock: no real waiting

@pytest.fixture
def clock(monkeypatch):
    now = SimpleNamespace(t=0.0, sleeps=[])

    def sleep(s):
        now.sleeps.append(s)
        now.t += s

    monkeypatch.setattr(run, "time", SimpleNamespace(monotonic=lambda: now.t, sleep=sleep))
    return now


def test_poll_returns_as_soon_as_the_condition_holds(clock):
    answers = iter(["activating", "activating", "active", "never asked"])
    met, last = run.poll(lambda: next(answers), timeout=10, interval=0.5,
                         until=lambda s: s == "active")
    assert (met, last) == (True, "active")
    assert clock.sleeps == [0.5, 0.5]


def test_poll_gives_up_at_the_deadline_with_the_last_result(clock):
    calls = []
    met, last = run.poll(lambda: calls.append(1) or len(calls), timeout=2, interval=0.5,
                         until=lambda n: n > 100)
    assert not met and last == len(calls) == 5  # at t = 0, 0.5, 1, 1.5, 2
    assert clock.t == 2


def test_poll_default_condition_is_truthiness(clock):
    answers = iter([None, "", 0, "up"])
    assert run.poll(lambda: next(answers), timeout=5, interval=1) == (True, "up")


def test_poll_retries_exceptions_until_the_condition_holds(clock):
    answers = iter([ConnectionError("refused"), TimeoutError("slow"), "ok"])

    def fn():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert run.poll(fn, timeout=5, interval=1) == (True, "ok")


def test_poll_raises_the_last_exception_at_the_deadline(clock):
    n = iter(range(100))

    def fn():
        raise ConnectionError(f"refused #{next(n)}")

    with pytest.raises(ConnectionError, match=r"refused #4$"):
        run.poll(fn, timeout=2, interval=0.5)


def test_poll_at_the_deadline_a_result_after_an_exception_is_returned(clock):
    """Only an exception from the last try is raised; an earlier one is not."""
    answers = iter([ConnectionError("refused"), "starting", "starting", "starting"])

    def fn():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert run.poll(fn, timeout=1, interval=0.5, until=lambda s: s == "up") == (False, "starting")
