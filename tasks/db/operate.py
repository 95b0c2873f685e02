"""Deliberate writer moves and repairs: `fab db.switchover` and `fab db.rejoin`.

switchover: the writer moves only when asked, with zero lost writes: the sticky-writer
entry is set to the peer on every db balancer's HAProxy (runtime API; the old writer
drained and its sessions cut there until the handoff); the health daemons then hand over
as in any failover: the old writer's turns it read-only and cuts its client sessions once
HAProxy's checks name the peer, the peer's turns it writable only once the old writer is
read-only and the peer has applied every GTID it holds. The old writer stays the standby,
replicating as before.

rejoin: a node holding errant transactions (commits of a cut-off writer its peer never
got; the health daemon fences it) is rebuilt from the current writer: its databases kept
in a dump file on it (0600) for the operator, dropped, re-seeded from the writer, its
binlog GTID state reset to the writer's, then replication resumes both ways.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Any

from invoke import Context

from ..core import secrets
from ..core.cli import H_YES, k3s_task, say
from ..core.errors import InputError, Refused, StepFailed
from ..core.inventory import Host, Inventory
from ..core.run import CHANGED, Run, poll, run_session
from ..core.ssh import sh
from ..facts import datastore
from ..facts import mysql as facts
from ..facts.haproxy import show_stat
from . import replication, sql
from .health import HEALTH_SERVICE as SERVICE
from .seed import databases, seed
from .session import Node, open_node, require_session

BACKUP_DIR = "/var/backups/k3s-ha"


@dataclass(frozen=True)
class Pair:
    """The two db nodes as a move sees them: `old` the writer now, `new` its peer."""
    old: Node
    new: Node


def _pair(r: Run, first: str) -> tuple[Node, Node]:
    pw = secrets.get_secret("db_admin_password", r.inv, yes=r.yes)
    nodes = r.each(r.inv.with_role("db"), lambda conn, h: require_session(
        open_node(r, conn, h, pw, create=False)))
    a = nodes[first]
    b = next(n for name, n in nodes.items() if name != first)
    return a, b


def _db_host(inv: Inventory, name: str) -> Host:
    if name not in {h.name for h in inv.with_role("db")}:
        raise InputError(f"--host {name!r} is not a db host. Fix: one of "
                         + ", ".join(h.name for h in inv.with_role("db")))
    return inv.host(name)


# ------------------------------------------------------------------ switchover
def switch_refusal(writer: str | None, target: str, target_broken: str, errant: str) -> str:
    """Why the writer cannot move to `target` ('' when it can; pure)."""
    if writer is None:
        return "HAProxy has no writer now: nothing to switch from (fab db.status)"
    if writer == target:
        return f"{target} is already the writer"
    if target_broken:
        return f"{target}: {target_broken}"
    if errant:
        return f"{target} holds transactions {errant} the writer lacks. Fix: fab db.rejoin"
    return ""


@k3s_task(help={"to": "the db host to take the writes (default: the standby)", "yes": H_YES})
def switchover(c: Context, to: str = "", yes: bool = False) -> None:
    """Move the writer to the standby deliberately, with zero lost writes."""
    with run_session(c, "db.switchover", yes=yes) as r:
        w = datastore.find_writer(r)
        target = to or next((h.name for h in r.inv.with_role("db") if h.name != w.host), "")
        _db_host(r.inv, target)
        new, old = _pair(r, target)
        why = switch_refusal(w.host, target, replication_broken(new), facts.errant_vs(
            new, facts.executed_gtids(new), facts.executed_gtids(old)))
        if why:
            raise Refused(f"db.switchover: {why}")
        _switch(r, Pair(old, new))
        say(f"the writer is now {new.name}; {old.name} is the standby")


def replication_broken(n: Node) -> str:
    rep = facts.replica_status(n)
    return "" if rep.sql_running == "Yes" and not rep.last_sql_errno else rep.describe()


def _switch(r: Run, p: Pair) -> None:
    """HAProxy's writer entry moved to `p.new` on every db balancer, the old writer
    drained there until the health daemons have handed over: the old writer's turns it
    read-only and cuts its clients once the checks name the new one, the new one's turns
    it writable only when the old one is read-only and every GTID it holds is applied
    (files/db-health.py.j2)."""
    be, bals = datastore.DB_BACKEND, r.inv.with_role("db-balancer")
    for b in bals:  # a standby's check can be down while it catches up
        r.step(b, f"{p.new.name} UP", lambda b=b: _wait_up(r.conn(b), be, p.new.name))
    try:
        for b in bals:
            r.step(b, f"writer {p.new.name}", lambda b=b: _set_writer(r.conn(b), be, p))
        r.step(p.new.host, "writable (health daemon)", lambda: _wait_handoff(p) or True)
    finally:
        for b in bals:
            datastore.admin_command(r.conn(b), f"set server {be}/{p.old.name} state ready")
    for b in bals:
        _check_entry(r.conn(b), p)


def _wait_handoff(p: Pair, timeout: float = 30) -> None:
    ok, _ = poll(lambda: facts.read_only(p.old) and not facts.read_only(p.new),
                 timeout=timeout, interval=0.3)
    if not ok:
        raise StepFailed(f"HAProxy names {p.new.name} but after {timeout:g} s it is "
                         f"{'still read-only' if facts.read_only(p.new) else 'writable'} and "
                         f"{p.old.name} {'read-only' if facts.read_only(p.old) else 'writable'}"
                         f": the health daemons did not hand over. Fix: fab db.status (each "
                         f"node's check says why), journalctl -u {SERVICE} on both")


def _wait_up(conn: Any, be: str, name: str, timeout: float = 20) -> bool:
    """False (nothing changed): `name` is UP in this HAProxy, waited for if need be."""
    def up() -> bool:
        return any(x.proxy == be and x.server == name and x.status.startswith("UP")
                   for x in show_stat(conn) or [])
    if not poll(up, timeout=timeout, interval=0.3)[0]:
        raise StepFailed(f"{name} is not UP in this HAProxy after {timeout:g} s although it "
                         "caught up: nothing switched. Fix: fab db.status (its check says why)")
    return False


def _set_writer(conn: Any, be: str, p: Pair) -> bool:
    """The old writer drained (no new client; its check goes on, so its health daemon
    hears the new entry at once), the entry set to the new one, the old one's sessions
    cut, the entry read back. Drained, not ready, until the handoff: were the new one's
    check to fail meanwhile, a client sent to the old one would set the entry back with
    its answer ([lab] 3 switchovers in 25 under load went back so, when the standby's
    check still flapped); drained, no server takes it and the entry stays."""
    for cmd in (f"set server {be}/{p.old.name} state drain",
                f"set table {be} key 1 data.gpt0 {p.new.host.server_id}",
                f"shutdown sessions server {be}/{p.old.name}"):
        datastore.admin_command(conn, cmd)
    _check_entry(conn, p)
    return True


def _check_entry(conn: Any, p: Pair) -> None:
    sid = datastore.stuck_server_id(conn)
    if sid != p.new.host.server_id:
        raise StepFailed(f"HAProxy's writer entry is {sid}, not {p.new.name} "
                         f"({p.new.host.server_id}) after the switch. Fix: fab balancers.status")


# ------------------------------------------------------------------ rejoin
@k3s_task(help={"host": "the db host to rebuild from the current writer", "yes": H_YES})
def rejoin(c: Context, host: str, yes: bool = False) -> None:
    """Rebuild a fenced node (errant transactions) from the writer; its data kept in a dump."""
    with run_session(c, "db.rejoin", yes=yes) as r:
        _db_host(r.inv, host)
        w = datastore.find_writer(r)
        if w.host == host:
            raise Refused(f"db.rejoin: {host} is the writer; rejoin rebuilds a standby. Fix: "
                          "fab db.switchover first, or name the other node")
        t, s = _pair(r, host)
        errant = facts.errant_vs(t, facts.executed_gtids(t), facts.executed_gtids(s))
        say(f"{host} holds {errant or 'no'} transactions {s.name} lacks; its data will be "
            f"replaced by {s.name}'s (a dump stays in {BACKUP_DIR} on {host})")
        if not secrets.confirm(f"Rebuild {host} from {s.name}?", yes=yes, default=True):
            raise InputError("db.rejoin: not confirmed; nothing changed")
        _rebuild(r, t, s)


def rejoin_fenced(r: Run) -> list[str]:
    """The drill's repair after a fault: each node other than the writer that holds GTIDs
    the writer lacks (fenced by its health daemon) rebuilt from it as `db.rejoin` does,
    its data kept in a dump, without asking (the drill was confirmed). 'name (GTIDs)'
    of each node rebuilt."""
    w = datastore.find_writer(r)
    if w.host is None:
        return []
    done = []
    for h in r.inv.with_role("db"):
        if h.name == w.host:
            continue
        t, s = _pair(r, h.name)
        errant = facts.errant_vs(t, facts.executed_gtids(t), facts.executed_gtids(s))
        if errant:
            say(f"  {h.name} holds {errant}, which the writer {s.name} lacks (fenced): "
                f"rebuilding it from {s.name} as db.rejoin does (dump in {BACKUP_DIR})")
            _rebuild(r, t, s)
            done.append(f"{h.name} ({errant})")
    return done


def _rebuild(r: Run, t: Node, s: Node) -> None:
    sh(t.conn, f"systemctl stop {SERVICE}", warn=True)  # fenced: HAProxy sees it DOWN
    try:
        s.read_facts(), t.read_facts()
        keep = r.step(t.host, "dump kept", lambda: _keep_dump(t))
        say(f"  {t.name}: its previous data is in {keep}")
        r.step(t.host, "replica stopped", lambda: t.write(sql.stop_replica(t.d)) or True)
        r.step(t.host, "databases dropped", lambda: _drop(t) or True)
        coords = r.step(t.host, f"seed from {s.name}", lambda: seed(t, s))
        pos = r.step(t.host, "GTID state = writer's", lambda: _reset_gtid(t, s, coords))
        user = r.inv.db["replication_user"]
        rpw = secrets.get_secret("replication_password", r.inv, yes=r.yes)
        r.step(t.host, f"replica of {s.name}", lambda: t.write(sql.change_source(
            t.d, host=s.host.address, port=r.inv.db["port"], user=user, password=rpw,
            gtid=True, own_domain=t.host.server_id or 0)) or t.write(sql.start_replica(t.d)) or True)
        if t.d.mariadb:
            r.step(s.host, f"replica of {t.name} from its new binlog",
                   lambda: _repoint(s, pos) or True)
    finally:
        sh(t.conn, f"systemctl start {SERVICE}", warn=True)
    rep = facts.wait_replica_healthy(t, 60)
    if not rep.healthy:
        raise StepFailed(f"{t.name}: replica not healthy after rejoin: {rep.describe()}")
    r.record(t.host, "rejoined", CHANGED, f"standby of {s.name}")


def _keep_dump(t: Node) -> str:
    path = f"{BACKUP_DIR}/rejoin-{t.name}-{time.strftime('%Y%m%dT%H%M%S')}.sql"
    dbs = databases(t)
    cmd = sql.dump_command(t.d, dbs) if dbs else "true"
    sh(t.conn, f"install -d -m 0700 {BACKUP_DIR} && umask 077 && {cmd} > {shlex.quote(path)}",
       timeout=1800)
    return path


def _drop(t: Node) -> None:
    replication.unlogged(t, [f"DROP DATABASE IF EXISTS {sql.ident(x)}" for x in databases(t)])


def _reset_gtid(t: Node, s: Node, coords: Any) -> str:
    """t's binlog forgets its errant GTIDs: its GTID state becomes the writer's at the
    seed point, as replica position and as binlog state (MariaDB); that position."""
    if not t.d.mariadb:
        t.write("RESET MASTER")
        t.write("SET GLOBAL gtid_purged = %s", (facts.executed_gtids(s),))
        return ""
    pos = str(s.q(sql.binlog_gtid_pos(), coords)[0]["g"] or "")
    t.write("RESET MASTER")
    t.write(sql.set_global("gtid_binlog_state", pos))
    t.write(sql.set_global("gtid_slave_pos", pos))
    return pos


def _repoint(s: Node, pos: str) -> None:
    """The writer's replica of the rebuilt node starts at that node's new binlog (MariaDB):
    its old position names GTIDs the reset binlog no longer has, and the rebuilt node's
    dump thread refused it with 1236 ([lab], even for the domain the writer ignores)."""
    s.write(sql.stop_replica(s.d))
    s.write(sql.set_global("gtid_slave_pos", pos))
    s.write(sql.start_replica(s.d))
