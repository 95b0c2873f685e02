"""One task run: inventory, connections, one fan-out over hosts, a poll helper, the recap.

`Run` loads the inventory, opens connections, runs a function per host (in parallel),
records step lines and, at the end, prints a recap of host x step with ok / changed /
failed, like Ansible's. `fan_out` is the project's only thread fan-out; `poll` its only
wait-until loop.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable

from fabric import Connection
from invoke import Context
from tabulate import tabulate

from . import inventory as inventory_mod
from .cli import say
from .errors import ConnectError, K3sHaError
from .inventory import Host, Inventory
from .ssh import POOL, lab_route_ok

OK, CHANGED, FAILED = "ok", "changed", "failed"


class Run:
    """One task run: inventory, connections, step lines and the recap."""

    def __init__(self, c: Context, title: str, *, dry: bool = False, yes: bool = False,
                 inv: Inventory | None = None):
        self.c = c
        self.title = title
        self.inv = inv or inventory_mod.load()
        if dry:
            c.config.run.dry = True
        self.dry = bool(c.config.run.dry)
        self.yes = yes
        self.results: "OrderedDict[tuple[str, str], str]" = OrderedDict()
        self.notes: dict[str, str] = {}
        self._conns: dict[str, Connection] = {}  # host -> the pool's connection, as handed out
        self._lock = threading.Lock()
        if self.dry:
            say(f"{title}: DRY RUN, nothing will be changed")

    # connections: one per host, from the invocation's pool (ssh.POOL)
    def conn(self, host: Host) -> Connection:
        with self._lock:
            conn = self._conns.get(host.name)
        if conn is None or not conn.is_connected:
            conn = POOL.shared(self.inv, host, self.c.config)  # (re)opened there
            with self._lock:
                self._conns[host.name] = conn
        return conn

    def lease(self, host: Host) -> Any:
        """`with r.lease(host) as conn:` a connection for this thread alone (ssh.Pool.lease)."""
        return POOL.lease(self.inv, host, self.c.config)

    def close(self) -> None:
        """Inside a task the pool outlives the run (the outermost task closes it); a Run
        used on its own (a script, a test) closes its connections here."""
        self._conns.clear()
        if not POOL.scoped:
            POOL.close_all()

    # steps
    def record(self, host: Host | str, step: str, status: str, note: str = "") -> None:
        name = host if isinstance(host, str) else host.name
        with self._lock:
            self.results[(name, step)] = status
        say(f"  {name:<22} {step:<34} {status}{(' - ' + note) if note else ''}")

    def step(self, host: Host, step: str, fn: Callable[[], Any]) -> Any:
        """Run one idempotent step; fn returns True when it changed something."""
        try:
            res = fn()
        except Exception:
            self.record(host, step, FAILED)
            raise
        self.record(host, step, CHANGED if res else OK)
        return res

    def each(self, hosts: list[Host], fn: Callable[[Connection, Host], Any],
             *, parallel: bool = True, connect_first: bool = True) -> dict[str, Any]:
        """fn(conn, host) on every host; failures are collected per host, then raised together."""

        if connect_first and self.inv.is_lab and hosts:
            if not lab_route_ok(self.inv, hosts[0].address):
                raise ConnectError(
                    f"the lab '{self.inv.lab['name']}' is not up (no route to "
                    f"{hosts[0].address} via {self.inv.lab['name']}-op); refusing to send lab "
                    "traffic elsewhere. Fix: fab lab.up")

        def one(h: Host) -> Any:
            conn = self.conn(h) if connect_first else None
            return fn(conn, h)  # type: ignore[arg-type]

        results = fan_out(hosts, one, parallel=parallel)
        failures = []
        out: dict[str, Any] = {}
        for h, (ok, val) in results.items():
            if ok:
                out[h.name] = val
            else:
                failures.append((h, val))
                if not any(k[0] == h.name for k in self.results):
                    self.record(h, "connect" if isinstance(val, ConnectError) else "run", FAILED)
                self.notes[h.name] = str(val)
        if failures:
            raise _Failures(failures)
        return out

    # recap
    def recap(self) -> str:
        """Host x step table, hosts in the inventory's order (others, e.g. a VIP, after)."""
        steps = list(OrderedDict.fromkeys(s for _, s in self.results))
        hosts = recap_order(list(self.inv.hosts), [h for h, _ in self.results])
        if not hosts:
            return ""
        rows = []
        for h in hosts:
            row = [h]
            counts = {OK: 0, CHANGED: 0, FAILED: 0}
            for s in steps:
                v = self.results.get((h, s), "")
                row.append(v)
                if v in counts:
                    counts[v] += 1
            row.append(f"ok={counts[OK]} changed={counts[CHANGED]} failed={counts[FAILED]}")
            rows.append(row)
        if len(steps) > 6:  # wide runs: summary only
            rows = [[r[0], r[-1]] for r in rows]
            return tabulate(rows, headers=["host", "recap"], tablefmt="simple")
        return tabulate(rows, headers=["host"] + steps + ["recap"], tablefmt="simple")

    @property
    def changed(self) -> bool:
        return any(v == CHANGED for v in self.results.values())


def recap_order(inventory_names: list[str], seen: list[str]) -> list[str]:
    """The names in `seen` once each: inventory order first, then the rest as first seen
    (threads finish in any order; the recap must not depend on it)."""
    present = set(seen)
    rest = [n for n in OrderedDict.fromkeys(seen) if n not in set(inventory_names)]
    return [n for n in inventory_names if n in present] + rest


class _Failures(K3sHaError):
    def __init__(self, failures: list[tuple[Host, BaseException]]):
        self.failures = failures
        # every host failing the same way keeps that way's code (a wrong password typed
        # once fails each db node: bad input, 2); mixed: a step failed, 1
        codes = {getattr(e, "exit_code", 1) for _, e in failures}
        self.exit_code = codes.pop() if len(codes) == 1 else 1
        lines = [f"{len(failures)} host(s) failed:"]
        for h, e in failures:
            msg = str(e) if isinstance(e, K3sHaError) else f"{type(e).__name__}: {e}"
            lines.append(f"  {msg}" if msg.startswith(h.name) else f"  {h.name}: {msg}")
        super().__init__("\n".join(lines))


def run_session(c: Context, title: str, **kw: Any) -> "_Session":
    return _Session(c, title, **kw)


class _Session:
    """Context manager: `with run_session(c, "db.install") as r:` prints the recap on exit."""

    def __init__(self, c: Context, title: str, **kw: Any):
        self.c, self.title, self.kw = c, title, kw
        self.run: Run | None = None

    def __enter__(self) -> Run:
        self.run = Run(self.c, self.title, **self.kw)
        say(f"{self.title} ({self.run.inv.path.name})")
        return self.run

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        assert self.run is not None
        self.run.close()
        table = self.run.recap()
        if table:
            say("\nRECAP " + self.title + "\n" + table)
        if et is None:
            if self.run.dry:
                say("dry run: nothing was changed")
            elif self.run.results and not self.run.changed:
                say("no changes: everything was already in place")
        if et is not None and issubclass(et, K3sHaError):
            return None  # propagate to k3s_task for the message/exit code
        return None


def fan_out(items: list[Any], fn: Callable[[Any], Any], *, parallel: bool = True
            ) -> dict[Any, tuple[bool, Any]]:
    """Run fn(item) for every item (in threads), return {item: (ok, result_or_exception)}.

    One failure never hides another item's result: every item is run and reported.
    """
    from concurrent.futures import ThreadPoolExecutor

    out: dict[Any, tuple[bool, Any]] = {}

    def one(it: Any) -> tuple[bool, Any]:
        try:
            return True, fn(it)
        except Exception as e:  # reported per item by the caller
            return False, e

    if not parallel or len(items) <= 1:
        for it in items:
            out[it] = one(it)
        return out
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as ex:
        for it, res in zip(items, ex.map(one, items)):
            out[it] = res
    return out


def poll(fn: Callable[[], Any], *, timeout: float, interval: float = 0.5,
         until: Callable[[Any], bool] = bool) -> tuple[bool, Any]:
    """Call fn() until until(result) holds or timeout seconds pass: (met, last result).

    An exception from fn counts as "not yet" until the timeout, then it is raised.
    """
    end = time.monotonic() + timeout
    while True:
        try:
            res = fn()
            err = None
        except Exception as e:  # retried until the deadline
            res, err = None, e
        if err is None and until(res):
            return True, res
        if time.monotonic() >= end:
            if err is not None:
                raise err
            return False, res
        time.sleep(interval)
