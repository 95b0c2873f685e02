"""The drill's safety: it starts only on a healthy cluster, says exactly what it will
disrupt and asks, and always restores, also on an error or Ctrl-C, with a second Ctrl-C
unable to interrupt the restore (SIGINT is held off while it runs).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from ..core.cli import say
from ..core.errors import InputError, Refused
from ..core.secrets import confirm, interactive

Restore = Callable[[], None]


class Unhealthy(Refused):
    """The cluster is not healthy enough to start a drill (exit 2)."""


def require_healthy(problems: list[str]) -> None:
    if problems:
        raise Unhealthy("the cluster is not healthy, so a drill would measure an earlier "
                        "failure; nothing was disrupted:\n  - " + "\n  - ".join(problems) +
                        "\nFix: repair it (fab cluster.status shows the state), then run the "
                        "drill again")


def ask(plan: list[str], *, yes: bool) -> None:
    """Show what will be disrupted and ask; --yes skips; no terminal without --yes: exit 2."""
    say("The drill will disrupt, one at a time, restoring after each:\n  " +
        "\n  ".join(plan))
    if yes:
        return
    if not interactive():
        raise InputError("failover.drill disrupts the cluster and this run has no terminal to "
                         "ask. Fix: run it with --yes")
    if not confirm("Go ahead?", default=False):
        raise Refused("the drill was declined; nothing was disrupted")


@contextmanager
def sigint_held() -> Iterator[list[int]]:
    """While inside, Ctrl-C is noted (and reported) instead of raising; in the main thread
    only (elsewhere signals cannot arrive). Yields the list of noted signals."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, _frame: object) -> None:
        noted.append(signum)
        say("  (Ctrl-C while restoring: the restore finishes first)")

    old = signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, old)


def run_restore(restore: Restore, what: str) -> Exception | None:
    """Run `restore` with Ctrl-C held off; returns the error it raised (None: restored)."""
    with sigint_held():
        try:
            restore()
            return None
        except Exception as e:  # noqa: BLE001 - reported by the caller, never swallowed
            say(f"  RESTORE FAILED ({what}): {e}")
            return e


@contextmanager
def restoring(restore: Restore, what: str) -> Iterator[None]:
    """Runs `restore` when the block ends however it ends (error, Ctrl-C or normally).
    A failed restore after a clean block is raised; after a failed block the block's error
    wins (the restore's is printed)."""
    try:
        yield
    except BaseException:
        run_restore(restore, what)
        raise
    err = run_restore(restore, what)
    if err is not None:
        raise err
