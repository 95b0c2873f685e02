"""Namespace `db`: the guide's step 2, in its order: install, secure, configure, replicate,
users; then status, checksum and the replication-aware health endpoint.

Each task reads the state, changes only what differs and records a step line per host.
The secrets a task needs are resolved once, before it fans out over the db hosts.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from fabric import Connection
from invoke import Context

from ..core import render, secrets
from ..core.cli import H_DRY, H_YES, k3s_task, say, table
from ..core.errors import InputError, K3sHaError, Refused, StepFailed
from ..core.inventory import Host, Inventory
from ..core.ops import ensure_dir, ensure_file, ensure_packages, ensure_service, looked
from ..core.run import CHANGED, FAILED, OK, Run, run_session
from ..core.ssh import os_family, os_release
from ..facts import datastore
from ..facts import mysql as facts
from . import accounts, replication, sql, tls
from .health import HEALTH_SERVICE, ensure_health
from .seed import seed
from .session import Node, admin_password, open_node, require_session, reset_admin


def db_hosts(inv: Inventory) -> list[Host]:
    return inv.with_role("db")


LOG_DIR = "/var/log/mysql"

def package_and_service(inv: Inventory, conn: Connection) -> tuple[str, str, str]:
    """(flavor, package, service) for this host: inventory flavor, else by OS."""
    flavor = inv.db["flavor"]
    if flavor == "auto":
        flavor = "mysql" if os_release(conn).get("ID") == "ubuntu" else "mariadb"
    if flavor == "mysql":
        return flavor, "mysql-server", "mysql"
    return flavor, "mariadb-server", "mariadb"


def config_path(d: sql.Dialect, family: str) -> str:
    if family != "debian":
        return "/etc/my.cnf.d/zz-k3s-ha.cnf"
    if d.mariadb:
        return "/etc/mysql/mariadb.conf.d/60-k3s-ha.cnf"
    return "/etc/mysql/mysql.conf.d/zz-k3s-ha.cnf"  # after mysqld.cnf's bind-address


# ------------------------------------------------------------------ install / secure / configure
@k3s_task(help={"dry": H_DRY, "yes": H_YES})
def install(c: Context, dry: bool = False, yes: bool = False) -> None:
    """Install the database server (mariadb-server on Debian, mysql-server on Ubuntu), running."""
    with run_session(c, "db.install", dry=dry, yes=yes) as r:
        def one(conn: Connection, h: Host) -> None:
            _, pkg, svc = package_and_service(r.inv, conn)
            r.step(h, f"package {pkg}", lambda: ensure_packages(conn, [pkg]))
            r.step(h, f"service {svc}", lambda: ensure_service(conn, svc))
            if not r.dry:
                say(f"  {h.name:<22} {facts.server_version(conn, h.name)}")

        r.each(db_hosts(r.inv), one)


@k3s_task(help={"dry": H_DRY, "yes": H_YES,
                "reset_admin": "set k3sha_admin's password to the current db_admin_password"})
def secure(c: Context, dry: bool = False, yes: bool = False, reset_admin: bool = False) -> None:
    """mysql_secure_installation as idempotent SQL; root keeps its socket login."""
    with run_session(c, "db.secure", dry=dry, yes=yes) as r:
        hosts = db_hosts(r.inv)
        pw = (secrets.get_secret("db_admin_password", r.inv, yes=r.yes, new=True)
              if reset_admin else admin_password(r, hosts))

        def one(conn: Connection, h: Host) -> None:
            if reset_admin:
                if not r.dry:
                    _reset_admin(conn, h, pw)
                r.record(h, "admin password", CHANGED)
            n = open_node(r, conn, h, pw)
            if n.db is None:
                r.record(h, "secure installation", CHANGED, "after the admin account")
                return
            r.step(h, "secure installation", lambda: accounts.secure(n))

        r.each(hosts, one)


def _reset_admin(conn: Connection, h: Host, pw: str) -> None:
    reset_admin(conn, facts.server_version(conn, h.name), pw)


@k3s_task(help={"dry": H_DRY, "yes": H_YES})
def configure(c: Context, dry: bool = False, yes: bool = False) -> None:
    """my.cnf drop-in (server_id, binlog, ROW, semi-sync, TLS, PROXY protocol ...) and the
    TLS certificates; restart only if the drop-in changed, reload TLS if only they did."""
    with run_session(c, "db.configure", dry=dry, yes=yes) as r:
        inv = r.inv
        ca = None
        if inv.db["tls"]:
            ca, made = tls.ensure_ca(inv, r.dry)
            if made:
                say(f"  datastore CA {'would be ' if r.dry else ''}made in {tls.ca_dir(inv)}")
        one_at_a_time = threading.Lock()  # restarts: the other node serves meanwhile

        def one(conn: Connection, h: Host) -> None:
            d = facts.server_version(conn, h.name)
            _, _, svc = package_and_service(inv, conn)
            text = render.render("db-k3s-ha.cnf.j2", **cnf_values(inv, h, d))
            cnf = config_path(d, os_family(conn))
            with looked(conn, files=[cnf, *tls.REMOTE_FILES], stats=[LOG_DIR, tls.REMOTE_DIR],
                        units=[svc]):
                r.step(h, f"log dir {LOG_DIR}", lambda: ensure_dir(
                    conn, LOG_DIR, mode="2750", owner="mysql", group="adm"))
                certs = ca is not None and r.step(
                    h, "TLS certificate", lambda: tls.ensure_server_tls(conn, inv, h, ca))
                changed = r.step(h, "my.cnf drop-in", lambda: ensure_file(
                    conn, cnf, text, mode="0644"))
                with one_at_a_time if changed else contextlib.nullcontext():
                    r.step(h, f"service {svc}", lambda: ensure_service(
                        conn, svc, changed_inputs=changed))
            if certs and not changed and not r.dry:
                r.step(h, "TLS reloaded", lambda: tls.reload_tls(conn, d.mariadb) or True)

        r.each(db_hosts(inv), one)


def proxy_protocol(inv: Inventory) -> bool:
    """PROXY protocol between the db balancers and the databases (MariaDB only)."""
    return bool(inv.db["proxy_protocol"]) and inv.db["flavor"] != "mysql"


def cnf_values(inv: Inventory, h: Host, d: sql.Dialect) -> dict[str, Any]:
    """The drop-in's values for host `h` running `d` (pure)."""
    nets = tuple(x.address for x in inv.with_role("db-balancer")) \
        if proxy_protocol(inv) else ()
    return sql.server_config(
        d, server_id=h.server_id, bind_address="0.0.0.0", port=inv.db["port"],
        semi_sync=inv.db["semi_sync"], timeout_ms=inv.db["semi_sync_timeout_ms"],
        gtid=inv.db["gtid"], health_check=inv.db["health_check"],
        auto_increment_increment=inv.db["auto_increment_increment"],
        auto_increment_offset=inv.db["auto_increment_offset"],
        tls_files=(tls.REMOTE_CA, tls.REMOTE_CERT, tls.REMOTE_KEY) if inv.db["tls"] else None,
        proxy_networks=nets)


# ------------------------------------------------------------------ replication
@k3s_task(help={"dry": H_DRY, "yes": H_YES})
def replicate(c: Context, dry: bool = False, yes: bool = False) -> None:
    """Master-master replication between the two db hosts, semi-sync AFTER_SYNC; idempotent."""
    with run_session(c, "db.replicate", dry=dry, yes=yes) as r:
        inv = r.inv
        user = inv.db["replication_user"]
        pw = admin_password(r, db_hosts(inv))
        rpw = secrets.get_secret("replication_password", inv, yes=r.yes, new=True)
        want_tls = bool(inv.db["tls"])

        def read(conn: Connection, h: Host) -> Node:
            n = require_session(open_node(r, conn, h, pw))
            if n.read_facts().binlog is None:
                raise StepFailed(f"{h.name}: binary log is off. Fix: fab db.configure")
            if want_tls and not r.dry and not tls_serving(n):
                raise StepFailed(f"{h.name}: the server does not offer TLS ([db] tls is on). "
                                 "Fix: fab db.configure")
            r.record(h, "read state", OK, n.facts.replica.describe() if n.facts else "")
            return n

        nodes = r.each(db_hosts(inv), read)  # both reachable and readable, or nothing changes
        a, b = (nodes[h.name] for h in db_hosts(inv))
        try:
            actions = replication.plan(a, b, user, inv.db["gtid"], replication.tls_ca(inv))
        except Refused:
            for n in (a, b):
                r.record(n.host, "plan", FAILED)
            raise
        for n, peer in ((a, b), (b, a)):
            if r.step(n.host, "replication user",
                      lambda: replication.ensure_repl_user(n, peer.host, user, rpw, want_tls)):
                actions = replication.relogin(actions, peer, n)  # peer logs in anew
            r.step(n.host, f"replication user {'requires' if want_tls else 'without'} TLS",
                   lambda: replication.ensure_repl_tls(n, peer.host, user, want_tls))
            r.step(n.host, "semi-sync", lambda: replication.ensure_semi_sync(n, inv))
        replication.execute(r, actions, inv, user, rpw, seed)
        if not r.dry:
            _verify(r, a, b, 30 if actions else 0)
            secrets.accepted("replication_password", inv)


def tls_serving(n: Node) -> bool:
    """The server offers TLS to its clients (have_ssl, or a certificate where it is gone)."""
    rows = {x["Variable_name"]: str(x["Value"]) for x in n.q(
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('have_ssl', 'ssl_cert')")}
    if "have_ssl" in rows:
        return rows["have_ssl"] == "YES"
    return bool(rows.get("ssl_cert"))


def _verify(r: Run, a: Node, b: Node, timeout: float) -> None:
    for n, peer in ((a, b), (b, a)):
        rep = facts.wait_replica_healthy(n, timeout)
        if not rep.healthy:
            r.record(n.host, "verify", FAILED, rep.describe())
            raise StepFailed(f"{n.name}: replica of {peer.name} is not healthy after "
                             f"db.replicate: {rep.state or '-'}; {rep.describe()}")
        r.record(n.host, "verify", OK, f"replicating from {peer.name}")


# ------------------------------------------------------------------ users
def k3s_user_hosts(inv: Inventory) -> list[str]:
    """Where the k3s user may log in from: the k3s servers' addresses when the balancers
    pass the client's address on (PROXY protocol), else the db balancers' (HAProxy makes
    every client look like the balancer)."""
    if proxy_protocol(inv):
        servers = [h.address for h in inv.with_role("k3s-server")]
        if not servers:
            raise InputError("no host has role k3s-server: with [db] proxy_protocol on, the "
                             "k3s user is granted to the k3s servers' addresses. Fix: add "
                             "them, or set [db] proxy_protocol = false")
        return servers
    return [h.address for h in inv.with_role("db-balancer")]


@k3s_task(help={"dry": H_DRY, "yes": H_YES})
def users(c: Context, dry: bool = False, yes: bool = False) -> None:
    """The k3s database/user (TLS only with [db] tls; from the k3s servers with PROXY
    protocol, else the db balancers), the HAProxy check user with mysql-check (the
    balancers' addresses), else none: the password-less check user is dropped."""
    with run_session(c, "db.users", dry=dry, yes=yes) as r:
        inv = r.inv
        allowed = [h.address for h in inv.with_role("db-balancer")]
        if not allowed:
            raise InputError("no host has role db-balancer: the k3s and check users are "
                             "limited to the datastore balancers' addresses. Fix: add them")
        k3s_from = k3s_user_hosts(inv)
        pw = admin_password(r, db_hosts(inv))
        kpw = secrets.get_secret("k3s_db_password", inv, yes=r.yes, new=True)

        def one(conn: Connection, h: Host) -> None:
            n = require_session(open_node(r, conn, h, pw))
            check = inv.db["check_user"]
            if inv.db["health_check"] == "mysql-check":
                caveat = sql.check_user_caveat(n.d)
                if caveat:
                    say(f"  {h.name}: note: {caveat}")
                r.step(h, f"user {check}", lambda: accounts.ensure_account(
                    n, check, allowed, sql.check_user_sql(n.d, check, allowed), None))
            else:  # the http check needs no login: nobody may log in without a password
                r.step(h, f"no password-less user {check}", lambda: accounts.ensure_account(
                    n, check, [], [], None))
            t = bool(inv.db["tls"])
            r.step(h, f"database + user {inv.db['user']}", lambda: accounts.ensure_account(
                n, inv.db["user"], k3s_from, sql.app_user_sql(
                    n.d, inv.db["database"], inv.db["user"], k3s_from, kpw, t), kpw,
                database=inv.db["database"], tls=t))
            replication.unlogged(n, [sql.flush_hosts(n.d)])  # this node's cache only
            r.record(h, "flush host cache", OK)

        r.each(db_hosts(inv), one)
        if not r.dry:
            secrets.accepted("k3s_db_password", inv)


# ------------------------------------------------------------------ status / checksum
@k3s_task(help={"yes": H_YES})
def status(c: Context, yes: bool = False) -> None:
    """Per node: version, VIP write target, IO/SQL threads, lag, errors, GTIDs (ERRANT when a
    node holds transactions its peer lacks), semi-sync; exits 1 when replication is broken."""
    with run_session(c, "db.status", yes=yes) as r:
        pw = secrets.get_secret("db_admin_password", r.inv, yes=r.yes)

        def one(_: Any, h: Host) -> dict[str, Any]:
            try:
                return node_status(open_node(r, r.conn(h), h, pw, create=False),
                                   r.inv.db["semi_sync"])
            except K3sHaError as e:
                r.record(h, "status", FAILED)
                return {"node": h.name, "version": "UNREACHABLE", "errors": str(e)[:100],
                        "full_error": str(e), "bad_input": isinstance(e, InputError)}

        rows = r.each(db_hosts(r.inv), one, connect_first=False)
        w = datastore.find_writer(r)
        for row in rows.values():
            up = row["version"] != "UNREACHABLE"
            row["writes"] = f"yes (via {w.via})" if up and row["node"] == w.host else "-"
        mark_errant(list(rows.values()), w.host,
                    {h.name: h.server_id or 0 for h in r.inv.with_role("db")})
        say("\n" + table(list(rows.values()), ["node", "version", "writes", "IO", "SQL", "lag",
                                               "errors", "gtid", "semi-sync", "read_only"]))
        _say_writer(r, w)
        _fail_if_broken(r, rows)


def _say_writer(r: Run, w: datastore.Writer) -> None:
    d = r.inv.db
    if not w.known:
        say(f"datastore VIP write target unknown: {w.reason}")
    elif w.host is None:
        say(f"datastore VIP: HAProxy on {w.via} has no server UP for writes ({w.reason}); "
            f"a returning server needs {d['rise']} good checks {d['check_inter_ms']} ms "
            f"apart, about {d['rise'] * d['check_inter_ms'] / 1000:g} s (see fab "
            "balancers.status)")


def _fail_if_broken(r: Run, rows: dict[str, dict[str, Any]]) -> None:
    down = [x for x in rows.values() if x["version"] == "UNREACHABLE"]
    if down:  # a wrong admin password on every node is bad input (exit 2), not a failure
        raise (InputError if all(x["bad_input"] for x in down) else StepFailed)(
            "no status from " + "; ".join(x["full_error"] for x in down))
    broken = [f"{x['node']}: {x['broken']}" for x in rows.values() if x.get("broken")]
    for x in rows.values():
        if x.get("broken"):
            r.record(r.inv.host(x["node"]), "replication", FAILED)
    if broken:
        raise StepFailed("replication is broken: " + "; ".join(broken))


def mark_errant(rows: list[dict[str, Any]], writer: str | None,
                domains: dict[str, int] | None = None) -> None:
    """Mark ERRANT a node holding transactions the writer lacks. With the writer known:
    the other node holding GTIDs of any domain but the writer's own (`domains`: node ->
    its gtid_domain_id; the writer's own GTIDs on the standby can only have come from the
    writer, read a moment later), [lab] a cut-off writer's late commits once it caught up
    with the new writer again. Unknown writer: both nodes when they diverged."""
    live = [x for x in rows if x.get("executed") is not None]
    if len(live) != 2:
        return
    a, b = live
    names = {a["node"], b["node"]}
    if writer in names and domains:
        w, x = (a, b) if a["node"] == writer else (b, a)
        mine, theirs = facts.parse_gtid_pos(x["executed"]), facts.parse_gtid_pos(w["executed"])
        extra = ",".join(f"{d}-{s}" for d, s in sorted(mine.items())
                         if s > theirs.get(d, 0) and d != domains.get(writer))
        if extra:
            _errant(x, w, extra)
        return
    if facts.divergence(a["executed"], b["executed"]) is not facts.Divergence.DIVERGED:
        return
    for x, y in ((a, b), (b, a)):
        if x["node"] != writer:
            _errant(x, y, facts.gtids_lacking(x["executed"], y["executed"]))


def _errant(x: dict[str, Any], y: dict[str, Any], extra: str) -> None:
    x["gtid"] = f"ERRANT {extra}"
    x["broken"] = (f"holds transactions {extra} that {y['node']} lacks. Fix: fab "
                   f"db.rejoin --host {x['node']}")


def node_status(n: Node, semi_sync_wanted: bool) -> dict[str, Any]:
    """One row of db.status, read from the node itself ("broken": why it is not healthy)."""
    rep, semi = facts.replica_status(n), facts.semi_sync(n)
    executed = facts.executed_gtids(n)
    errors = [e for e in (
        rep.last_io_errno and f"IO {rep.last_io_errno}: {rep.last_io_error[:60]}",
        rep.last_sql_errno and f"SQL {rep.last_sql_errno}: {rep.last_sql_error[:60]}") if e]
    acking = semi.source_on and semi.clients not in ("0", "?")
    ro = facts.read_only(n)
    return {
        "node": n.name, "version": str(n.d), "IO": rep.io_running or "-",
        "SQL": rep.sql_running or "-", "lag": "-" if rep.lag is None else rep.lag,
        "errors": "; ".join(errors) or "-", "executed": executed, "gtid": executed or "-",
        "semi-sync": ("active" if acking else "NO REPLICA ACKING (async)"
                      if semi_sync_wanted else "off") + f" ({semi.clients} acks)",
        "read_only": "ON" if ro else "OFF",
        "broken": replica_broken(rep, standby=ro),
    }


def replica_broken(rep: facts.ReplicaStatus, standby: bool = False) -> str:
    """Why a node's replica of its peer is broken ('' when it is not): a thread stopped
    on an error or the SQL thread stopped. On the writer a stopped IO thread alone is the
    fence's guard; on a standby (read-only) it means the standby receives nothing."""
    if not rep.configured:
        return "no replica of its peer configured. Fix: fab db.replicate"
    if rep.last_sql_errno or rep.sql_running != "Yes":
        return f"replica SQL thread stopped ({rep.describe()})"
    if rep.last_io_errno and rep.io_running != "Yes":
        return f"replica IO thread in error ({rep.describe()})"
    if standby and rep.io_running == "No":
        return ("replica IO thread stopped on the standby: it receives none of the writer's "
                f"commits. Fix: journalctl -u {HEALTH_SERVICE} (its daemon restarts a thread "
                "its guard stopped), else fab db.replicate")
    return ""


@k3s_task(help={"yes": H_YES, "retries": "re-compare this many times (lag) before failing"})
def checksum(c: Context, yes: bool = False, retries: int = 5) -> None:
    """Compare every replicated table across the two nodes (CHECKSUM TABLE); name the differing."""
    with run_session(c, "db.checksum", yes=yes) as r:
        pw = secrets.get_secret("db_admin_password", r.inv, yes=r.yes)
        nodes = r.each(db_hosts(r.inv), lambda conn, h: open_node(r, conn, h, pw,
                                                                  create=False))
        a, b = nodes.values()
        for _ in range(retries + 1):
            ca, cb = facts.table_checksums(a), facts.table_checksums(b)
            diff = sorted(t for t in set(ca) | set(cb) if ca.get(t) != cb.get(t))
            if not diff:
                break
            time.sleep(1)
        rows = [{"table": t, a.name: ca.get(t, "missing"), b.name: cb.get(t, "missing"),
                 "": "DIFFERS" if t in diff else "equal"} for t in sorted(set(ca) | set(cb))]
        say(table(rows, ["table", a.name, b.name, ""]))
        status = FAILED if diff else OK
        for n in (a, b):
            r.record(n.host, "checksum", status, "" if diff else f"{len(ca)} tables equal")
        if diff:
            raise StepFailed(f"{len(diff)} table(s) differ between {a.name} and {b.name}: "
                             + ", ".join(diff))


# ------------------------------------------------------------------ health endpoint
@k3s_task(help={"dry": H_DRY, "yes": H_YES})
def health(c: Context, dry: bool = False, yes: bool = False) -> None:
    """Replication-aware HTTP check (port db.health_port) on each db host for HAProxy httpchk."""
    with run_session(c, "db.health", dry=dry, yes=yes) as r:
        r.each(db_hosts(r.inv), lambda conn, h: ensure_health(r, conn, h))
