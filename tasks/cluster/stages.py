"""`cluster.deploy`'s stages in the guide's order, and the final verification.

A stage is a named list of the namespace tasks it runs, with what it changes (shown before
asking). Every task is idempotent, so resuming is re-running: `--from STAGE` only skips
the stages before it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from invoke import Context

from ..core.cli import say
from ..core.errors import StepFailed
from ..core.inventory import Inventory
from ..core.run import OK, fan_out, poll, run_session
from ..facts import datastore, vrrp
from ..facts import mysql as facts

Task = Callable[..., None]


@dataclass(frozen=True)
class Stage:
    name: str
    changes: str                       # what it will change, shown before asking
    tasks: tuple[tuple[str, Task], ...]


def wait_datastore_writer(c: Context, dry: bool = False, yes: bool = False) -> None:
    """HAProxy admits a db server only after `rise` good checks `check_inter_ms` apart
    (guide: 30, 2 s apart), and the checks fail until db.users created the check user:
    wait for a writer, so the datastore VIP works before k3s needs it."""
    if dry:
        return
    with run_session(c, "cluster.deploy: datastore VIP", yes=yes) as r:
        rise, inter_s = r.inv.db["rise"], r.inv.db["check_inter_ms"] / 1000
        say(f"  waiting for HAProxy to admit a writer (rise {rise} checks, at most {inter_s:g} s "
            "apart)")
        t0 = time.monotonic()
        w = datastore.wait_writer(r, timeout=rise * inter_s + 30)
        took = time.monotonic() - t0
        if w.host is None or w.via is None:
            raise StepFailed(f"the datastore VIP has no writer after {took:.0f} s: "
                             f"{w.via or 'no balancer'}: {w.reason}. Fix: fab balancers.status "
                             "--role db shows each db server's last check (mysql-check needs "
                             "fab db.users)")
        if r.inv.db["health_check"] == "http":  # its health daemon turns read_only off
            ok, _ = poll(lambda: facts.writable(r.conn(r.inv.host(w.host))), timeout=30,
                         interval=0.5)
            if not ok:
                raise StepFailed(f"HAProxy sends writes to {w.host} but it stays read-only: "
                                 "its health daemon does not promote it. Fix: fab db.status "
                                 "(each node's check says why)")
            took = time.monotonic() - t0
        r.record(w.via, "datastore writer", OK, f"{w.host} after {took:.0f} s")
        say(f"  datastore VIP {r.inv.vips['db'].address}: writes go to {w.host} "
            f"(via {w.via})")


class HealthFirst:
    """The db http health endpoint before balancers.deploy switches HAProxy's check to it,
    when the databases already run (a cluster built by hand, or a re-run); otherwise every
    db server fails the new check until the databases stage, the datastore VIP has no
    server and a running k3s loses its datastore (k3s exits after ~10 s of that). On a
    fresh cluster (no database yet) it is installed in the databases stage instead."""

    def __init__(self) -> None:
        self.done = False

    def first(self, c: Context, dry: bool = False, yes: bool = False) -> None:
        from ..db.health import ensure_health
        from ..facts.mysql import server_version

        with run_session(c, "cluster.deploy: db health endpoint", dry=dry, yes=yes) as r:
            dbs = r.inv.with_role("db")

            def running(conn: Any, h: Any) -> bool:
                try:
                    server_version(conn, h.name)
                    return True
                except StepFailed:
                    return False

            if not all(r.each(dbs, running).values()):
                for h in dbs:
                    r.record(h, "health endpoint", OK, "later: in the databases stage")
                return
            r.each(dbs, lambda conn, h: ensure_health(r, conn, h))
            self.done = True

    def later(self, c: Context, dry: bool = False, yes: bool = False) -> None:
        from ..db import tasks as db

        if not self.done:
            db.health(c, dry=dry, yes=yes)


def verify(c: Context, dry: bool = False, yes: bool = False) -> None:
    """Every k3s host a Ready node, the datastore VIP has a writer, each VIP one holder."""
    from ..k3s.stages import check_ready

    if dry:
        return
    with run_session(c, "cluster.deploy: verify", yes=yes) as r:
        hosts = r.inv.with_role("k3s-balancer") + r.inv.with_role("db-balancer")
        servers = bool(r.inv.with_role("k3s-server"))
        # the three tiers are read side by side: each is a few round trips of its own
        jobs: dict[str, Callable[[], Any]] = {
            "vips": lambda: vrrp.members(r.inv, vrrp.observe_all(r, hosts)),
            "writer": lambda: datastore.find_writer(r),
            "nodes": lambda: check_ready(r) if servers else []}  # raises: every node not Ready
        done = fan_out(list(jobs), lambda k: jobs[k]())
        for key in ("nodes", "vips", "writer"):
            if not done[key][0]:
                raise done[key][1]
        bad = []
        for key, seen in done["vips"][1].items():
            v = vrrp.verdict(key, r.inv.vips[key], seen)
            if v.ok:
                r.record(v.holders[0], f"{key} VIP", OK, v.text)
            else:
                bad.append(f"{key} VIP: {v.text}")
        w = done["writer"][1]
        if w.host is None:
            bad.append(f"datastore VIP: no writer ({w.reason})")
        else:
            r.record(w.via or w.host, "datastore writer", OK, w.host)
        if servers:
            say(f"  k3s: {len(done['nodes'][1])} nodes Ready")
        if bad:
            raise StepFailed("verify: " + "; ".join(bad) + ". Fix: fab cluster.status shows "
                             "every tier")


def stages(inv: Inventory) -> list[Stage]:
    from ..balancers import tasks as balancers
    from ..db import tasks as db
    from ..k3s import tasks as k3s

    http = inv.db["health_check"] == "http"
    health = HealthFirst()
    dbs: list[tuple[str, Task]] = [
        ("db.install", db.install), ("db.configure", db.configure), ("db.secure", db.secure),
        ("db.replicate", db.replicate), ("db.users", db.users)]
    if http:
        dbs.append(("db.health", health.later))
    dbs.append(("datastore writer", wait_datastore_writer))
    n = {r: len(inv.with_role(r)) for r in ("k3s-server", "k3s-agent")}
    servers: list[tuple[str, Task]] = [("k3s.install-server", k3s.install_server)]
    readyz = inv.balancers["api_health_check"] == "readyz"
    if readyz:  # the balancers went first, on /ping: the client CA exists only now
        servers.append(("balancers.api-check-cert", balancers.api_check_cert))
    return [
        Stage("balancers", "HAProxy + keepalived installed and configured on the "
              f"{len(inv.with_role('k3s-balancer') + inv.with_role('db-balancer'))} balancers "
              "(reload, never restart, on a config change)",
              ((("db health endpoint first", health.first),) if http else ())
              + (("balancers.deploy", balancers.deploy),)),
        Stage("databases", f"MariaDB/MySQL on the {len(inv.with_role('db'))} db hosts: "
              "config, secure, master-master replication, the k3s and check users",
              tuple(dbs)),
        Stage("servers", f"k3s servers ({n['k3s-server']}) installed, started, joined"
              + ("; the API balancers' readyz check certificate issued on the first server, "
                 "installed, HAProxy reloaded" if readyz else ""), tuple(servers)),
        Stage("agents", f"k3s agents ({n['k3s-agent']}) installed and joined"
              if n["k3s-agent"] else "nothing: the inventory has no k3s agent",
              (("k3s.join-agent", k3s.join_agent),) if n["k3s-agent"] else ()),
        Stage("verify", "nothing (reads: nodes Ready, datastore writer, VIP holders)",
              (("verify", verify),)),
    ]


def names(inv: Inventory) -> list[str]:
    return [s.name for s in stages(inv)]
