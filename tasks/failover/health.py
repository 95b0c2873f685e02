"""Is the cluster healthy? The drill's gate before a scenario and its wait after the
restore. Each tier that is deployed is read from the programs themselves: keepalived and
the NICs (facts.vrrp), the databases' replication threads, the datastore VIP's writer
(HAProxy's runtime API), the k3s API through its VIP and the nodes' Ready state.
"""
from __future__ import annotations

import enum
import time
from contextlib import suppress
from typing import Callable

from ..core.errors import K3sHaError
from ..core.inventory import Host
from ..core.run import Run, fan_out
from ..facts import k3s as k3sfacts
from ..facts import vrrp
from . import writer as w
from .actions import db_writer, fresh


class Part(enum.Enum):
    BALANCERS = "balancers"
    DB = "databases"
    K3S = "k3s"


def deployed(r: Run) -> set[Part]:
    """The tiers the inventory has AND the hosts run (k3s: installed on the servers)."""
    out = set()
    if any(r.inv.with_role(v.role) for v in r.inv.vips.values()):
        out.add(Part.BALANCERS)
    if r.inv.with_role("db"):
        out.add(Part.DB)
    servers = r.inv.with_role("k3s-server")
    with suppress(K3sHaError):
        if servers and k3sfacts.installed_version(r.conn(servers[0])):
            out.add(Part.K3S)
    return out


def balancer_problems(r: Run) -> list[str]:
    hosts = [h for v in r.inv.vips.values() for h in r.inv.with_role(v.role)]
    views = vrrp.observe_all(r, hosts)
    out = []
    for key, seen in vrrp.members(r.inv, views).items():
        v = vrrp.verdict(key, r.inv.vips[key], seen)
        if not v.ok:
            out.append(f"{key} VIP: {v.text}")
        out += [f"{m.host}: haproxy {m.haproxy}" for m in seen
                if m.reachable and m.haproxy != "active"]
    return out


def db_problems(r: Run) -> list[str]:
    def one(h: Host) -> str:
        try:
            a = w.admin(r.inv, fresh(r, h), h)
        except K3sHaError as e:
            return f"{h.name}: {str(e).splitlines()[0]}"
        try:
            p = w.replication_problem(a)
        finally:
            a.close()
        return f"{h.name}: replication {p}" if p else ""
    res = fan_out(r.inv.with_role("db"), one)
    out = [v if ok else f"{h.name}: {v}" for h, (ok, v) in res.items()]
    if db_writer(r) is None:
        out.append("the datastore VIP has no writer (HAProxy marks no database UP)")
    return [p for p in out if p]


def k3s_problems(r: Run) -> list[str]:
    why = []
    for h in r.inv.with_role("k3s-server"):
        try:
            nodes = k3sfacts.nodes(fresh(r, h), timeout=5)
        except K3sHaError as e:
            why.append(str(e).splitlines()[0])
            continue
        late = [n.name for n in nodes if not n.is_ready]
        return [f"k3s node {n} not Ready" for n in late]
    return why or ["no k3s server"]


CHECKS: dict[Part, Callable[[Run], list[str]]] = {
    Part.BALANCERS: balancer_problems, Part.DB: db_problems, Part.K3S: k3s_problems}


def problems(r: Run, tiers: set[Part]) -> list[str]:
    out: list[str] = []
    for t in Part:
        if t in tiers:
            try:
                out += CHECKS[t](r)
            except K3sHaError as e:
                out.append(f"{t.value}: {str(e).splitlines()[0]}")
    return out


def wait_healthy(r: Run, tiers: set[Part], timeout: float) -> tuple[float | None, list[str]]:
    """(seconds until every check passed, or None), and the problems last seen."""
    t0 = time.monotonic()
    while True:
        left = problems(r, tiers)
        if not left:
            return time.monotonic() - t0, []
        if time.monotonic() - t0 > timeout:
            return None, left
        time.sleep(1)

