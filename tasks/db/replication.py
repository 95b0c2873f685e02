"""Master-master replication: a typed plan (pure) and its executor, kept apart.

`direction_state` judges one replica -> source direction from what the replica reports;
`plan` turns both directions and the two nodes' data into `Action`s, or raises Refused
when going on could lose or duplicate rows (k3s-ha never re-points, resets or skips).
`execute` sends each action's SQL to its replica; `ensure_repl_user` and
`ensure_semi_sync` converge the per-node settings the directions rely on.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Callable, Protocol

from ..core.errors import Refused, StepFailed
from ..core.inventory import Host, Inventory
from ..facts import mysql as facts
from . import sql
from .session import Node, ssl_required
from .tls import REMOTE_CA


class State(Enum):
    OK = "ok"
    MISSING = "missing"     # never configured: set it up from the source's coordinates
    REPAIR = "repair"       # wrong user or refused login: new credentials, same position
    KICK = "kick"           # IO thread stuck connecting: reconnect it
    START = "start"         # configured and stopped: start it
    GTID = "gtid"           # healthy, by file/position: move it to GTID at the same point
    TLS = "tls"             # working, TLS not as wanted: change it, threads stopped briefly
    REFUSE = "refuse"       # not ours to fix (foreign source, SQL error)


@dataclass(frozen=True)
class Direction:
    state: State
    why: str = ""           # for REFUSE: what is wrong and the fix


class Kind(Enum):
    SEED = "seed"           # load the source's data into the empty replica first
    CONFIGURE = "configure"
    REPAIR = "repair"
    KICK = "kick"
    START = "start"
    GTID = "gtid"
    TLS = "tls"


@dataclass(frozen=True)
class Action:
    kind: Kind
    replica: Node
    source: Node


_KIND = {State.MISSING: Kind.CONFIGURE, State.REPAIR: Kind.REPAIR, State.KICK: Kind.KICK,
         State.START: Kind.START, State.GTID: Kind.GTID, State.TLS: Kind.TLS}


def direction_state(rep: facts.ReplicaStatus, peer: Host, user: str,
                    gtid: bool = False, tls: tuple[str, str] = ("", "")) -> Direction:
    """The state of one replica -> source direction (pure). tls: (the replica's TLS as
    session.replica_tls reads it, the wanted one: the CA path or "" for off)."""
    if not rep.configured:
        return Direction(State.MISSING)
    if rep.source_host != peer.address:
        return Direction(State.REFUSE, (
            f"it replicates from {rep.source_host}, not from its peer {peer.name} "
            f"({peer.address}); k3s-ha does not re-point a configured replica"))
    if rep.last_sql_errno or rep.sql_running not in ("Yes", "No"):
        return Direction(State.REFUSE, (
            f"replica in error ({rep.describe()}); k3s-ha never resets or skips events. "
            "Fix: compare the rows named in the error on both nodes (fab db.checksum), "
            "repair by hand, START REPLICA, then run db.replicate again"))
    if rep.source_user != user or rep.last_io_errno in (1045, 1044):
        return Direction(State.REPAIR)
    if tls[0] != tls[1] and not (gtid and not rep.using_gtid):  # a GTID move sets TLS too
        return Direction(State.TLS)
    if rep.last_io_errno or rep.io_running == "Connecting":
        return Direction(State.KICK)
    if gtid and not rep.using_gtid:
        return Direction(State.GTID)
    if rep.io_running != "Yes" or rep.sql_running != "Yes":
        return Direction(State.START)
    return Direction(State.OK)


def plan(a: Node, b: Node, user: str, gtid: bool = False, tls_ca: str = "") -> list[Action]:
    """Actions to reach healthy master-master from both nodes' facts; raises Refused."""
    assert a.facts is not None and b.facts is not None
    if (a.facts.replica.configured and b.facts.replica.configured and a.d.mariadb
            and facts.divergence(a.facts.gtid, b.facts.gtid) is facts.Divergence.DIVERGED):
        raise Refused(
            f"{a.name} and {b.name} diverged: {a.name} holds {facts.gtids_lacking(a.facts.gtid, b.facts.gtid)} "
            f"that {b.name} lacks and {b.name} holds {facts.gtids_lacking(b.facts.gtid, a.facts.gtid)} that "
            f"{a.name} lacks (errant transactions of a cut-off writer). Fix: fab db.rejoin "
            "--host <the node NOT taking writes; fab db.status marks it ERRANT>")
    states: dict[str, State] = {}
    for x, y in ((a, b), (b, a)):
        assert x.facts is not None
        st = direction_state(x.facts.replica, y.host, user, gtid,
                             (x.facts.source_tls, tls_ca))
        if st.state is State.REFUSE:
            raise Refused(f"{x.name}: {st.why}")
        states[x.name] = st.state
    actions = _seeding(a, b, [x for x in (a, b) if states[x.name] is State.MISSING])
    for x, y in ((a, b), (b, a)):
        if states[x.name] is not State.OK:
            actions.append(Action(_KIND[states[x.name]], x, y))
    return actions


def _seeding(a: Node, b: Node, missing: list[Node]) -> list[Action]:
    """A seed action when one node alone holds data and neither direction exists yet."""
    assert a.facts is not None and b.facts is not None
    if not missing or a.facts.data == b.facts.data:
        return []
    # the seed source: the only node with rows, else the only node with tables
    full = ([x for x in (a, b) if x.facts and x.facts.has_data]
            or [x for x in (a, b) if x.facts and x.facts.data])
    if len(missing) == 2 and len(full) == 1:
        return [Action(Kind.SEED, b if full[0] is a else a, full[0])]
    diff = sorted(t for t in set(a.facts.data) | set(b.facts.data)
                  if a.facts.data.get(t) != b.facts.data.get(t))
    raise Refused(
        f"{a.name} and {b.name} hold different data ({', '.join(diff[:8])}) and "
        "replication is not set up both ways: joining them would lose or duplicate "
        "rows. Fix: decide which node is right, empty the other one's databases "
        "(keep a dump), then run db.replicate again to seed it from the right one")


def relogin(actions: list[Action], replica: Node, source: Node) -> list[Action]:
    """After `source` got a new replication password, `replica` must log in anew: its
    kick/start becomes a repair, and a healthy direction gets one (pure)."""
    mine = [x for x in actions if x.replica is replica]
    if not mine:
        return actions + [Action(Kind.REPAIR, replica, source)]
    return [replace(x, kind=Kind.REPAIR) if x.replica is replica
            and x.kind in (Kind.KICK, Kind.START, Kind.TLS) else x for x in actions]


# ------------------------------------------------------------------ execution
class Steps(Protocol):
    dry: bool

    def step(self, host: Host, step: str, fn: Callable[[], Any]) -> Any: ...


def execute(r: Steps, actions: list[Action], inv: Inventory, user: str, password: str,
            seed: Callable[[Node, Node], tuple[str, int]]) -> None:
    """Seeds first (their coordinates start the seeded replica), then each direction."""
    coords: dict[str, tuple[str, int]] = {}
    for x in actions:
        if x.kind is Kind.SEED:
            coords[x.replica.name] = ("", 4) if r.dry else r.step(
                x.replica.host, f"seed from {x.source.name}", lambda x=x: seed(x.replica,
                                                                              x.source))
    for x in actions:
        if x.kind is not Kind.SEED:
            r.step(x.replica.host, _label(x, inv),
                   lambda x=x: _apply(x, inv, user, password, coords) or True)


def tls_ca(inv: Inventory) -> str:
    """The CA path replicas verify their source with ("" when [db] tls is off)."""
    return REMOTE_CA if inv.db["tls"] else ""


def _label(x: Action, inv: Inventory) -> str:
    step = f"replica of {x.source.name}"
    return {Kind.CONFIGURE: step, Kind.REPAIR: step + " (credentials)",
            Kind.KICK: step + " (reconnect)", Kind.START: step + " (start)",
            Kind.GTID: step + " (to GTID, same position)",
            Kind.TLS: step + (" (to TLS, same position)" if tls_ca(inv) else
                              " (TLS off, same position)")}[x.kind]


def _apply(x: Action, inv: Inventory, user: str, password: str,
           coords: dict[str, tuple[str, int]]) -> None:
    """The SQL of one action, sent to its replica."""
    n, d = x.replica, x.replica.d
    ca = tls_ca(inv) or None  # with [db] tls off, only a TLS action turns TLS off
    if x.kind is Kind.CONFIGURE:
        fpos = coords.get(n.name) or facts.binlog_position(x.source)
        if fpos is None:
            raise StepFailed(f"{x.source.name}: binary log is off. Fix: fab db.configure")
        if inv.db["gtid"]:
            _gtid_slave_pos(n, x.source, fpos)
        n.write(sql.change_source(d, own_domain=n.host.server_id or 0,
                                  host=x.source.host.address, port=inv.db["port"],
                                  user=user, password=password, log_file=fpos[0],
                                  log_pos=fpos[1], gtid=inv.db["gtid"], tls_ca=ca))
    elif x.kind is Kind.GTID:
        n.write(sql.stop_replica(d))
        rep = facts.replica_status(n)  # what the SQL thread applied: the exact point
        _gtid_slave_pos(n, x.source, (rep.relay_source_log_file, rep.exec_pos))
        n.write(sql.change_source(d, gtid=True, own_domain=n.host.server_id or 0, tls_ca=ca))
    elif x.kind is Kind.REPAIR:
        n.write(sql.stop_replica(d))
        n.write(sql.change_source(d, user=user, password=password, tls_ca=ca))
    elif x.kind is Kind.TLS:  # no host/port given: the applied position (and GTID) stay
        n.write(sql.stop_replica(d))
        n.write(sql.change_source(d, tls_ca=tls_ca(inv)))
    elif x.kind is Kind.KICK:
        n.write(sql.stop_replica(d, "IO_THREAD"))
    n.write(sql.start_replica(d))


def _gtid_slave_pos(n: Node, source: Node, fpos: tuple[str, int]) -> None:
    """MariaDB: the replica's GTID position = the source's binlog (file, pos) in GTIDs."""
    if not n.d.mariadb:
        return  # MySQL's auto-position reads gtid_executed itself
    pos = source.q(sql.binlog_gtid_pos(), fpos)[0]["g"]
    if pos is None:
        raise StepFailed(f"{source.name}: no GTID position for {fpos[0]}:{fpos[1]}")
    n.write(sql.set_global("gtid_slave_pos",
                           facts.with_own_domains(str(pos), facts.executed_gtids(n))))


def ensure_repl_user(n: Node, peer: Host, user: str, pw: str, tls: bool = False) -> bool:
    """The replication user on `n`, for its peer's address only; True if (re)created or
    its password changed (the peer's replica must then log in anew)."""
    rows = n.q("SELECT COUNT(*) c FROM mysql.user WHERE User=%s AND Host=%s",
               (user, peer.address))
    if rows[0]["c"]:
        if not n.d.mariadb:
            return False
        if n.q("SELECT authentication_string = PASSWORD(%s) AS same FROM mysql.user "
               "WHERE User=%s AND Host=%s", (pw, user, peer.address))[0]["same"]:
            return False
    unlogged(n, sql.replication_user_sql(n.d, user, peer.address, pw, tls))
    return True


def ensure_repl_tls(n: Node, peer: Host, user: str, tls: bool) -> bool:
    """The replication user logs in over TLS only (REQUIRE SSL) when tls is on. The
    replica's open session is not cut: it moves to TLS with its CHANGE (Kind.TLS)."""
    rows = n.q("SELECT ssl_type FROM mysql.user WHERE User=%s AND Host=%s",
               (user, peer.address))
    if not rows or all(ssl_required(x["ssl_type"]) == tls for x in rows):
        return False
    unlogged(n, [sql.require_ssl(user, peer.address, tls)])
    return True


def unlogged(n: Node, stmts: list[str]) -> None:
    """Statements for this node only (kept out of the binlog)."""
    n.write("SET SESSION sql_log_bin = 0")
    for stmt in stmts:
        n.write(stmt)
    n.write("SET SESSION sql_log_bin = 1")


def ensure_semi_sync(n: Node, inv: Inventory) -> bool:
    names = sql.semi_sync_names(n.d)
    if inv.db["semi_sync"]:
        want = sql.semi_sync_settings(n.d, inv.db["semi_sync_timeout_ms"])
    else:
        want = {names["source_enabled"]: "OFF", names["replica_enabled"]: "OFF"}
    changed = False
    if inv.db["semi_sync"]:
        have = {x["PLUGIN_NAME"] for x in n.q(
            "SELECT PLUGIN_NAME FROM information_schema.PLUGINS WHERE PLUGIN_NAME LIKE "
            "'rpl_semi_sync%%'")}
        for name, lib in sql.semi_sync_plugins(n.d):
            if name not in have:
                n.write(sql.install_plugin(name, lib))
                changed = True
    cur = {x["Variable_name"].lower(): str(x["Value"]).upper() for x in n.q(
        "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%%'")}
    for k, v in want.items():
        if cur.get(k) != v.upper():
            n.write(sql.set_global(k, v))
            changed = True
            if (k == names["replica_enabled"] and n.facts is not None
                    and n.facts.replica.io_running == "Yes"):
                n.write(sql.stop_replica(n.d, "IO_THREAD"))  # applies on reconnect
                n.write(sql.start_replica(n.d, "IO_THREAD"))
    return changed
