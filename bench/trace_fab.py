"""Where the seconds of one `fab` run go: SSH handshakes, remote commands, database logins
and sleeps, per task session (e.g. the ~12 sessions of a no-op `cluster.deploy`).

Runs fab in this process with timing hooks on Fabric/pymysql/time.sleep, then prints a table
per session and the totals. Read-only itself; the task run is whatever ARGS say.

    K3S_HA_INVENTORY=... .venv/bin/python bench/trace_fab.py cluster.deploy --yes
"""
from __future__ import annotations

import atexit
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

T0 = time.monotonic()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pymysql  # noqa: E402
from fabric import Connection  # noqa: E402
from tabulate import tabulate  # noqa: E402

EVENTS: list[tuple[str, float, float, str]] = []  # kind, start (s from T0), seconds, what
_lock = threading.Lock()


def _timed(cls: Any, name: str, kind: str, what: Callable[..., str]) -> None:
    orig = getattr(cls, name)

    def wrapper(self: Any, *a: Any, **k: Any) -> Any:
        t = time.monotonic()
        try:
            return orig(self, *a, **k)
        finally:
            with _lock:
                EVENTS.append((kind, t - T0, time.monotonic() - t, what(self, a)))

    setattr(cls, name, wrapper)


def hook() -> None:
    _timed(Connection, "run", "command", lambda s, a: f"{s.host} {str(a[0])[:80] if a else ''}")
    _timed(Connection, "open", "open", lambda s, a: s.host)  # runs before every command
    _timed(pymysql.connections.Connection, "connect", "db login", lambda s, a: s.host)
    real_sleep = time.sleep

    def sleep(x: float) -> None:
        t = time.monotonic()
        real_sleep(x)
        with _lock:
            EVENTS.append(("sleep", t - T0, time.monotonic() - t, str(x)))

    time.sleep = sleep  # type: ignore[assignment]
    from tasks.core import run
    enter, leave = run._Session.__enter__, run._Session.__exit__

    def entered(self: Any) -> Any:
        self.trace_t0 = time.monotonic()
        return enter(self)

    def left(self: Any, *a: Any) -> Any:
        out = leave(self, *a)
        EVENTS.append(("session", self.trace_t0 - T0, time.monotonic() - self.trace_t0,
                       self.title))
        return out

    run._Session.__enter__, run._Session.__exit__ = entered, left  # type: ignore[method-assign]


def report() -> None:
    total = time.monotonic() - T0
    sessions = [e for e in EVENTS if e[0] == "session"]
    rows = []
    for _, start, took, title in sessions:
        inside = [e for e in EVENTS if start <= e[1] <= start + took]
        opens = [e for e in inside if e[0] == "open" and e[2] > 0.02]  # a real handshake
        cmds = [e for e in inside if e[0] == "command"]
        rows.append([title, f"{start:.2f}", f"{took:.2f}", len(opens), len(cmds),
                     sum(1 for e in inside if e[0] == "db login"),
                     f"{sum(e[2] for e in inside if e[0] == 'sleep' and e[2] > 0.05):.2f}"])
    print("\n" + tabulate(rows, headers=["session", "start s", "took s", "handshakes",
                                         "commands", "db logins", "sleeps >50ms s"]),
          file=sys.stderr)
    first = min((s[1] for s in sessions), default=total)
    print(f"total {total:.2f} s; before the first session (imports, fab) {first:.2f} s; "
          f"{sum(1 for e in EVENTS if e[0] == 'command')} remote commands", file=sys.stderr)


if __name__ == "__main__":
    hook()
    atexit.register(report)
    from fabric.main import program

    sys.argv = ["fab"] + sys.argv[1:]
    program.run()
