"""The task boundary and what the operator sees: step lines, tables, shared help texts.

`k3s_task` wraps invoke's @task: expected failures (K3sHaError) become a one-paragraph
message and an exit code, never a traceback. Only the outermost task of a thread does
that: a task called by another task (cluster.deploy's stages) lets the error through to
its caller, which may add to it (the stage that failed, the command that resumes).
"""
from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable, Iterator

from invoke import Context, Exit, task
from tabulate import tabulate

from .errors import K3sHaError
from .ssh import POOL

log = logging.getLogger("k3sha")
_print_lock = threading.Lock()
_nesting = threading.local()  # depth of k3s_task calls in this thread


def say(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


def k3s_task(*args: Any, **kwargs: Any) -> Callable:
    """Like invoke.task, plus: project errors -> clean message + exit code (in the
    outermost task only; see the module docstring)."""

    def deco(fn: Callable) -> Any:
        @functools.wraps(fn)
        def wrapper(c: Context, *a: Any, **kw: Any) -> Any:
            if logging.getLogger().isEnabledFor(logging.DEBUG):  # fab --debug
                # show our commands (secrets masked), not paramiko's packet dumps
                for noisy in ("paramiko", "invoke", "fabric"):
                    logging.getLogger(noisy).setLevel(logging.WARNING)
                logging.getLogger("k3sha").setLevel(logging.DEBUG)
            depth = getattr(_nesting, "depth", 0)
            _nesting.depth = depth + 1
            try:
                with POOL.scope():  # one SSH connection per host for the whole invocation
                    return fn(c, *a, **kw)
            except K3sHaError as e:
                if depth:  # called by a task: its caller handles it, the outermost exits
                    raise
                raise Exit(f"error: {e}", code=e.exit_code) from None
            except KeyboardInterrupt:
                if depth:
                    raise
                raise Exit("interrupted", code=130) from None
            finally:
                _nesting.depth = depth

        return task(*args, **kwargs)(wrapper)

    if len(args) == 1 and callable(args[0]) and not kwargs:
        fn = args[0]
        args = ()
        return deco(fn)
    return deco


def iter_rows(rows: list[dict[str, Any]], cols: list[str]) -> Iterator[list[Any]]:
    for r in rows:
        yield [r.get(c, "") for c in cols]


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    return tabulate(list(iter_rows(rows, cols)), headers=cols, tablefmt="simple")



# ---------------------------------------------------------------- shared help texts
# One wording per option across namespaces: `@k3s_task(help={"dry": H_DRY, "yes": H_YES})`.
H_DRY = "show what would change (unified diffs), change nothing"
H_YES = "never prompt: secrets from K3S_HA_* env vars or the secrets file"
H_YES_NO_PROMPTS = "never prompt (this namespace asks nothing; accepted for scripts)"
H_HOST = ("only this host (its inventory name, e.g. k3s-server-01); default: every host "
          "with the task's role")
H_READ_ONLY_DRY = "accepted for symmetry: this task only reads"
