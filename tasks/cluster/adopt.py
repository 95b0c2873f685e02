"""`cluster.adopt`: read a cluster built by hand from the guide and say, per host and item,
what was found, what the inventory says, and what `cluster.deploy` will do about it.

Read-only. Balancers: keepalived.conf and haproxy.cfg as they are on the host against what
the inventory renders, and keepalived's own VRRP state (facts.vrrp). Databases: the replica
status and server settings as root reads them over the host's socket (the guide's hosts
have no k3sha_admin yet), judged by the same rule db.replicate applies
(`replication.direction_state`), and the accounts' hosts. k3s: binary, unit, config, token.
`compare_*` are pure; `read_*` do the SSH.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from fabric import Connection

from ..balancers import config as bconfig
from ..core.errors import K3sHaError
from ..core.inventory import K3S_API_PORT, Host, Inventory
from ..core.run import Run
from ..core.ssh import read_file, sh
from ..db import replication
from ..facts import mysql as mfacts
from ..facts import vrrp
from ..k3s import effect
from ..k3s.config import Role, node_config


class Risk(enum.Enum):
    NONE = "none"          # deploy keeps it, or rewrites it without an interruption
    BRIEF = "brief"        # one short interruption (a reconnect, a VIP move)
    BLOCKS = "blocks"      # deploy stops there (exit 2) until it is fixed by hand


@dataclass(frozen=True)
class Finding:
    host: str
    item: str
    found: str
    inventory: str
    deploy: str
    risk: Risk = Risk.NONE


# ------------------------------------------------------------------ balancers (pure)
@dataclass(frozen=True)
class KeepalivedConf:
    instances: tuple[tuple[str, int, int], ...]   # (name, vrid, priority)
    auth: str                                     # auth_type, "" when none


def parse_keepalived(text: str) -> KeepalivedConf:
    names = re.findall(r"(?m)^\s*vrrp_instance\s+(\S+)", text)
    vrids = [int(x) for x in re.findall(r"(?m)^\s*virtual_router_id\s+(\d+)", text)]
    prios = [int(x) for x in re.findall(r"(?m)^\s*priority\s+(\d+)", text)]
    auth = re.search(r"(?m)^\s*auth_type\s+(\S+)", text)
    return KeepalivedConf(tuple(zip(names, vrids, prios + [0] * len(names))),
                          auth.group(1) if auth else "")


def compare_balancer(inv: Inventory, h: Host, keepalived: str | None, haproxy: str | None,
                     seen: vrrp.Balancer) -> list[Finding]:
    out = []
    want = bconfig.keepalived_config(inv, h)
    w, f = parse_keepalived(want), parse_keepalived(keepalived or "")
    desc = (lambda k: ", ".join(f"{n} vrid {v} prio {p}" for n, v, p in k.instances)
            + (f", auth {k.auth}" if k.auth else "") or "no instance")
    if keepalived is None:
        out.append(Finding(h.name, "keepalived.conf", "absent", desc(w), "write + start"))
    elif keepalived != want:
        # same VRID: keepalived's reload keeps the state and the VIP, even under a new
        # instance name (measured: tests/lab/test_adopt_lab.py); a new VRID is a new router
        moved = {v for _, v, _ in f.instances} != {v for _, v, _ in w.instances}
        out.append(Finding(
            h.name, "keepalived.conf", desc(f), desc(w),
            "rewrite + reload: a new VRID is a new VRRP router, the VIP moves once"
            if moved else "rewrite + reload (same VRID: the state and the VIP are kept)",
            Risk.BRIEF if moved else Risk.NONE))
    if haproxy is None:
        out.append(Finding(h.name, "haproxy.cfg", "absent", "rendered", "write + start"))
    elif haproxy != bconfig.haproxy_config(inv, h):
        out.append(Finding(h.name, "haproxy.cfg", "differs (hand-written)", "rendered",
                           "validate + rewrite + reload (open connections kept)"))
    for key in bconfig.pair_keys(inv, h):
        vip = inv.vips[key]
        holds = "holds" if seen.holds(vip) else "does not hold"
        out.append(Finding(h.name, f"VRRP {key}", f"{seen.state(vip).value}, {holds} "
                           f"{vip.address}", f"vrid {vip.virtual_router_id}",
                           "keep the holder (reload carries the state over)"))
    return out


# ------------------------------------------------------------------ databases (pure)
def compare_db(inv: Inventory, h: Host, peer: Host, rep: mfacts.ReplicaStatus,
               settings: dict[str, str], users: list[tuple[str, str]],
               dropin: bool = True) -> list[Finding]:
    user = inv.db["replication_user"]
    out = []
    if not dropin:
        out.append(Finding(h.name, "my.cnf", "no k3s-ha drop-in (hand-written settings)",
                           "k3s-ha drop-in (binlog ROW, semi-sync, limits ...)",
                           "db.configure adds it; mysqld restarts once (replicas reconnect "
                           "at their position)", Risk.BRIEF))
    sid = settings.get("server_id", "?")
    if sid != str(h.server_id):
        out.append(Finding(h.name, "server_id", sid, str(h.server_id),
                           "db.configure writes it; mysqld restarts once", Risk.BRIEF))
    if settings.get("log_bin") != "1" or settings.get("log_slave_updates") != "1":
        out.append(Finding(h.name, "binlog", f"log_bin={settings.get('log_bin')} "
                           f"log_slave_updates={settings.get('log_slave_updates')}", "1 and 1",
                           "db.configure; mysqld restarts once", Risk.BRIEF))
    found = (f"from {rep.source_host} as {rep.source_user} at {rep.source_log_file}:"
             f"{rep.exec_pos}, IO {rep.io_running} SQL {rep.sql_running}"
             if rep.configured else "not a replica")
    d = replication.direction_state(rep, peer, user)
    deploy = {replication.State.OK: "keep (no reset, no re-point)",
              replication.State.MISSING: "CHANGE MASTER from the peer's current position",
              replication.State.REPAIR: "new credentials, same position (threads restart once)",
              replication.State.KICK: "reconnect the IO thread",
              replication.State.START: "START REPLICA",
              replication.State.REFUSE: f"REFUSES: {d.why}"}[d.state]
    risk = {replication.State.REFUSE: Risk.BLOCKS, replication.State.OK: Risk.NONE}.get(
        d.state, Risk.BRIEF)
    out.append(Finding(h.name, "replication", found,
                       f"from {peer.address} ({peer.name}) as {user}", deploy, risk))
    managed = {inv.db["user"]: "db-balancers", inv.db["check_user"]: "db-balancers",
               user: f"{peer.address} only"}
    for name, where in managed.items():
        hosts = sorted(hh for u, hh in users if u == name)
        if name == user and users and peer.address not in hosts:
            out.append(Finding(h.name, f"account {name}", ", ".join(hosts) or "absent", where,
                               f"add {name}@{peer.address}: {peer.name}'s replica logs in "
                               "anew (threads restart once, same position)"
                               + ("; '%' is LEFT: drop it by hand" if "%" in hosts else ""),
                               Risk.BRIEF))
        elif "%" in hosts and name != user:
            out.append(Finding(h.name, f"account {name}", ", ".join(hosts), where,
                               "limited to the db-balancers ('%' dropped)"))
    return out


# ------------------------------------------------------------------ reading
SETTINGS = "SELECT @@server_id AS server_id, @@log_bin AS log_bin, " \
           "@@log_slave_updates AS log_slave_updates"


def read_db(conn: Connection) -> tuple[mfacts.ReplicaStatus, dict[str, str],
                                       list[tuple[str, str]], bool]:
    """As root over the socket (the guide's hosts have no admin account of ours yet)."""
    dropin = bool(sh(conn, "ls /etc/mysql/*/*k3s-ha.cnf /etc/my.cnf.d/*k3s-ha.cnf 2>/dev/null",
                     warn=True, write=False).stdout.strip())
    rep = sh(conn, "mysql -e 'SHOW SLAVE STATUS\\G'", write=False).stdout
    st = sh(conn, f"mysql -B -e '{SETTINGS}'", write=False).stdout
    us = sh(conn, "mysql -NB -e 'SELECT User, Host FROM mysql.user'", write=False).stdout
    rows = mfacts.parse_text_status(st)
    users = [tuple(ln.split("\t")[:2]) for ln in us.splitlines() if "\t" in ln]
    return (mfacts.parse_replica_status(mfacts.parse_text_status(rep)), rows[0] if rows else {},
            users, dropin)  # type: ignore[return-value]


K3S_PROBE = r"""
for f in /usr/local/bin/k3s /etc/systemd/system/k3s.service /etc/systemd/system/k3s-agent.service \
         /etc/rancher/k3s/config.yaml /var/lib/rancher/k3s/server/token; do
  [ -e "$f" ] && echo "present $f"; done
for u in k3s k3s-agent; do echo "unit $u $(systemctl is-active $u 2>/dev/null)"; done
"""


def compare_k3s(h: Host, probe: str, missing: list[str] | None = None) -> list[Finding]:
    """missing: the config.yaml settings the running k3s does not have yet (k3s.effect),
    None when not read (k3s not running)."""
    present = [ln.split()[1] for ln in probe.splitlines() if ln.startswith("present ")]
    units = dict(ln.split()[1:3] for ln in probe.splitlines()
                 if ln.startswith("unit ") and len(ln.split()) >= 3)
    unit = "k3s" if "k3s-server" in h.roles else "k3s-agent"
    if not present:
        return [Finding(h.name, "k3s", "not installed", unit, "install + start")]
    out = [Finding(h.name, "k3s", f"{unit} {units.get(unit, '?')}; "
                   + ", ".join(p.rsplit("/", 1)[-1] for p in present), unit,
                   "keep running: restarted only if its unit, env file or a setting changes")]
    if missing is not None:
        has_cfg = any(p.endswith("config.yaml") for p in present)
        found = "ours or hand-written" if has_cfg else "absent (flags on the unit's command line)"
        out.append(Finding(
            h.name, "config.yaml", found, "rendered from the inventory",
            "write; no restart: every setting already in effect" if not missing else
            f"write + restart once ({', '.join(missing)} not in effect)",
            Risk.BRIEF if missing else Risk.NONE))
    return out


def read_k3s(r: Run, conn: Connection, h: Host) -> list[Finding]:
    probe = sh(conn, K3S_PROBE, warn=True, write=False).stdout
    unit = "k3s" if h.has("k3s-server") else "k3s-agent"
    if f"unit {unit} active" not in probe:
        return compare_k3s(h, probe)
    first = r.inv.with_role("k3s-server")[0]
    cfg = node_config(r.inv, h, Role.SERVER if h.has("k3s-server") else Role.AGENT)
    with r.lease(first) as api:  # kubectl on the first server, one connection per thread
        run = effect.observe(conn, api, h.name, cfg, K3S_API_PORT)
    return compare_k3s(h, probe, effect.not_in_effect(cfg, run))


def read_all(r: Run) -> list[Finding]:
    inv = r.inv
    findings: list[Finding] = []
    bal = inv.with_role("k3s-balancer") + inv.with_role("db-balancer")
    views = vrrp.observe_all(r, bal)

    def balancer(conn: Connection, h: Host) -> list[Finding]:
        ka, hp = (read_file(conn, p) for p in ("/etc/keepalived/keepalived.conf",
                                               "/etc/haproxy/haproxy.cfg"))
        return compare_balancer(inv, h, ka.decode() if ka else None,
                                hp.decode() if hp else None, views[h.name])

    dbs = inv.with_role("db")

    def db(conn: Connection, h: Host) -> list[Finding]:
        peer = [x for x in dbs if x.name != h.name][0]
        try:
            return compare_db(inv, h, peer, *read_db(conn))
        except K3sHaError as e:
            return [Finding(h.name, "database", f"not readable: {str(e).splitlines()[0]}",
                            "MariaDB/MySQL", "install + configure")]

    k3s = inv.with_role("k3s-server") + inv.with_role("k3s-agent")
    res = {**r.each(bal, balancer), **r.each(dbs, db),
           **r.each(k3s, lambda conn, h: read_k3s(r, conn, h))}
    for h in bal + dbs + k3s:
        findings += res.get(h.name, [])
    return findings
