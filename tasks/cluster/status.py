"""`cluster.status`: one view across the three tiers, read from the programs themselves
through the observation layer (tasks/facts), never by scraping the other status tasks.

`collect` reads (balancers: keepalived's own VRRP data, the NIC's addresses, HAProxy's
runtime API; databases: each node's replica status, semi-sync and read_only over the admin
session, the writer as the datastore VIP's HAProxy picks it; k3s: the nodes as the first
server's API lists them). `judge` (pure) turns the view into typed problems; `render` prints
the tables and one closing line; `to_json` gives scripts the same view (no secret in it).
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.errors import K3sHaError
from ..core.inventory import Host, Inventory
from ..core.run import Run
from ..db.session import open_node
from ..facts import datastore, vrrp
from ..facts import k3s as kfacts
from ..facts import mysql as mfacts
from ..facts.haproxy import show_stat
from ..balancers import checkcert


class Tier(enum.Enum):
    BALANCERS = "balancers"
    DATABASES = "databases"
    K3S = "k3s"


@dataclass(frozen=True)
class Problem:
    tier: Tier
    subject: str     # a host, a pair, a node
    text: str

    def line(self) -> str:
        return f"{self.tier.value}: {self.subject}: {self.text}"


@dataclass
class BalancerView:
    host: str
    pair: str
    vrrp: str
    holds_vip: bool
    haproxy: str
    keepalived: str
    backends: list[dict[str, Any]] = field(default_factory=list)  # proxy, server, status, check
    error: str = ""
    api_check: str = ""   # readyz configured: the check HAProxy runs (balancers.checkcert)


@dataclass
class DbView:
    host: str
    reachable: bool
    version: str = ""
    io: str = ""
    sql: str = ""
    lag: int | None = None
    errors: str = ""
    semi_sync_on: bool = False
    semi_sync_clients: str = ""
    read_only: bool = False
    error: str = ""


@dataclass
class NodeView:
    name: str
    roles: str
    ready: str
    taints: list[str]


@dataclass
class ClusterView:
    balancers: list[BalancerView]
    pairs: list[dict[str, Any]]        # key, address, health, holders, text
    databases: list[DbView]
    writer: dict[str, Any]             # host, via, known, reason
    nodes: list[NodeView] | None       # None: no k3s host in the inventory
    k3s_error: str = ""


# ------------------------------------------------------------------ reading
def _balancers(r: Run) -> tuple[list[BalancerView], list[dict[str, Any]]]:
    hosts = r.inv.with_role("k3s-balancer") + r.inv.with_role("db-balancer")
    views = vrrp.observe_all(r, hosts)
    by_key = vrrp.members(r.inv, views)

    def backends(h: Host) -> tuple[list[dict[str, Any]], str]:
        v = views[h.name]
        up = v.reachable and v.haproxy == "active"
        stats = show_stat(r.conn(h)) if up else None
        return [{"proxy": s.proxy, "server": s.server, "backup": s.backup,
                 "status": s.status, "check": s.check} for s in stats or []], \
            checkcert.readyz_line(r.inv, r.conn(h)) if up and h.has("k3s-balancer") else ""

    stats = r.each(hosts, lambda _c, h: backends(h), connect_first=False)
    rows = [BalancerView(m.host, key, m.state.value, m.holds, m.haproxy, m.keepalived,
                         stats.get(m.host, ([], ""))[0], m.error,
                         stats.get(m.host, ([], ""))[1] if key == "api" else "")
            for key, seen in by_key.items() for m in seen]
    pairs = []
    for key, seen in by_key.items():
        v = vrrp.verdict(key, r.inv.vips[key], seen)
        pairs.append({"key": key, "address": v.address, "health": v.health.value,
                      "holders": list(v.holders), "text": v.text})
    return rows, pairs


def _db_one(r: Run, h: Host, password: str) -> DbView:
    try:
        n = open_node(r, r.conn(h), h, password, create=False)
        if n.db is None:
            return DbView(h.name, True, str(n.d), error="no admin account (fab db.secure)")
        rep, semi = mfacts.replica_status(n), mfacts.semi_sync(n)
    except K3sHaError as e:
        return DbView(h.name, False, error=str(e).splitlines()[0][:200])
    errors = "; ".join(e for e in (
        rep.last_io_errno and f"IO {rep.last_io_errno}: {rep.last_io_error[:80]}",
        rep.last_sql_errno and f"SQL {rep.last_sql_errno}: {rep.last_sql_error[:80]}") if e)
    return DbView(h.name, True, str(n.d), rep.io_running or "-", rep.sql_running or "-",
                  rep.lag, errors, semi.source_on, semi.clients, mfacts.read_only(n))


def _databases(r: Run) -> tuple[list[DbView], dict[str, Any]]:
    from ..core import secrets

    hosts = r.inv.with_role("db")
    if not hosts:
        return [], {}
    pw = secrets.get_secret("db_admin_password", r.inv, yes=r.yes)
    rows = r.each(hosts, lambda _c, h: _db_one(r, h, pw), connect_first=False)
    w = datastore.find_writer(r)
    return [rows[h.name] for h in hosts], {"host": w.host, "via": w.via, "known": w.known,
                                           "reason": w.reason}


def _nodes(r: Run) -> tuple[list[NodeView] | None, str]:
    servers = r.inv.with_role("k3s-server")
    if not servers:
        return None, ""
    try:
        nodes = kfacts.nodes(r.conn(servers[0]))
    except K3sHaError as e:
        return [], f"no node list from {servers[0].name}: {str(e).splitlines()[0][:200]}"
    return [NodeView(n.name, ",".join(n.roles) or "<none>", n.ready, list(n.taints))
            for n in nodes], ""


def collect(r: Run) -> ClusterView:
    balancers, pairs = _balancers(r)
    databases, writer = _databases(r)
    nodes, k3s_error = _nodes(r)
    return ClusterView(balancers, pairs, databases, writer, nodes, k3s_error)


# ------------------------------------------------------------------ judging (pure)
def _balancer_problems(view: ClusterView) -> list[Problem]:
    out = [Problem(Tier.BALANCERS, f"{p['key']} pair", p["text"])
           for p in view.pairs if p["health"] != vrrp.PairHealth.HEALTHY.value]
    for b in view.balancers:
        for unit in ("haproxy", "keepalived"):
            if getattr(b, unit) != "active":
                out.append(Problem(Tier.BALANCERS, b.host, f"{unit} is {getattr(b, unit)}"))
        out += [Problem(Tier.BALANCERS, b.host, f"backend {s['proxy']}/{s['server']} is "
                        f"{s['status']} ({s['check'] or 'no check'})")
                for s in b.backends if not str(s["status"]).startswith("UP")]
        if b.api_check and not b.api_check.startswith("readyz"):
            out.append(Problem(Tier.BALANCERS, b.host, f"API check {b.api_check}"))
    return out


def _db_problems(view: ClusterView, semi_sync_wanted: bool) -> list[Problem]:
    out = []
    for d in view.databases:
        if not d.reachable or d.error:
            out.append(Problem(Tier.DATABASES, d.host, d.error or "unreachable"))
            continue
        if d.io != "Yes" or d.sql != "Yes":
            out.append(Problem(Tier.DATABASES, d.host, f"replication IO={d.io} SQL={d.sql}"
                               + (f" ({d.errors})" if d.errors else "")))
        elif d.lag is None or d.lag > 30:
            out.append(Problem(Tier.DATABASES, d.host, f"replication lag {d.lag} s"))
        if semi_sync_wanted and not d.semi_sync_on:
            out.append(Problem(Tier.DATABASES, d.host, "semi-sync fell back to async"))
    if view.databases and not view.writer.get("host"):
        out.append(Problem(Tier.DATABASES, "datastore VIP",
                           f"no writer: {view.writer.get('reason') or 'unknown'}"))
    return out


def _k3s_problems(view: ClusterView, inv: Inventory) -> list[Problem]:
    if view.nodes is None:
        return []
    if view.k3s_error:
        return [Problem(Tier.K3S, "API", view.k3s_error)]
    by_name = {n.name: n for n in view.nodes}
    taint = inv.cluster.get("node_taint", "")
    out = []
    for h in inv.with_role("k3s-server") + inv.with_role("k3s-agent"):
        n = by_name.get(h.name)
        if n is None:
            out.append(Problem(Tier.K3S, h.name, "not a node of the cluster"))
            continue
        if n.ready != "True":
            out.append(Problem(Tier.K3S, h.name, f"Ready={n.ready}"))
        if "k3s-server" in h.roles and taint and taint not in n.taints:
            out.append(Problem(Tier.K3S, h.name, f"server without the taint {taint}"))
    return out


def judge(view: ClusterView, inv: Inventory) -> list[Problem]:
    return (_balancer_problems(view) + _db_problems(view, bool(inv.db.get("semi_sync")))
            + _k3s_problems(view, inv))


# ------------------------------------------------------------------ output (pure)
def closing_line(problems: list[Problem], view: ClusterView) -> str:
    if not problems:
        tiers = ["balancers", "databases"] + (["k3s"] if view.nodes is not None else [])
        return f"cluster: no problem found ({', '.join(tiers)} checked)"
    per = {t.value: sum(1 for p in problems if p.tier is t) for t in Tier}
    return (f"cluster: {len(problems)} PROBLEM(S) ("
            + ", ".join(f"{k} {v}" for k, v in per.items() if v) + "): "
            + "; ".join(p.line() for p in problems))


def to_json(view: ClusterView, problems: list[Problem]) -> dict[str, Any]:
    doc = asdict(view)
    doc["problems"] = [{"tier": p.tier.value, "subject": p.subject, "text": p.text}
                       for p in problems]
    doc["ok"] = not problems
    return doc


def _mark(bad: bool, text: str) -> str:
    return f"!! {text}" if bad else text


def render(view: ClusterView, problems: list[Problem], lab: bool) -> str:
    from ..core.cli import table

    bad = {p.subject for p in problems}
    out = ["===== balancers", table([
        {"balancer": _mark(b.host in bad, b.host), "pair": b.pair, "VRRP": b.vrrp,
         "VIP": "HOLDS" if b.holds_vip else "-", "haproxy": b.haproxy,
         "keepalived": b.keepalived,
         "backends": " ".join(f"{s['server']}:{s['status'].split()[0]}" for s in b.backends)}
        for b in view.balancers],
        ["balancer", "pair", "VRRP", "VIP", "haproxy", "keepalived", "backends"])]
    out += [f"{p['key']} pair: {p['text']}" for p in view.pairs]
    out += [f"{b.host}: API check {b.api_check}" for b in view.balancers if b.api_check]
    out += ["", "===== databases", table([
        {"node": _mark(d.host in bad, d.host), "version": d.version or "-",
         "writes": "yes" if d.host == view.writer.get("host") else "-",
         "IO": d.io or "-", "SQL": d.sql or "-", "lag": "-" if d.lag is None else d.lag,
         "semi-sync": ("on" if d.semi_sync_on else "off") + f" ({d.semi_sync_clients})",
         "read_only": "ON" if d.read_only else "OFF", "errors": d.errors or d.error or "-"}
        for d in view.databases],
        ["node", "version", "writes", "IO", "SQL", "lag", "semi-sync", "read_only",
         "errors"])]
    if view.writer:
        out.append(f"datastore writer: {view.writer['host'] or 'NONE'}"
                   + (f" (via {view.writer['via']})" if view.writer.get("via") else ""))
    if view.nodes is not None:
        out += ["", "===== k3s" + (" (the lab runs k3s-ha's stand-in, not k3s)" if lab else "")]
        out.append(view.k3s_error or table([
            {"node": _mark(n.name in bad, n.name), "roles": n.roles, "Ready": n.ready,
             "taints": ",".join(n.taints) or "-"} for n in view.nodes],
            ["node", "roles", "Ready", "taints"]))
    return "\n".join(out + ["", closing_line(problems, view)])
