"""Namespace `db`: MySQL/MariaDB install, hardening, master-master replication, users, status.

Queries go through pymysql over an SSH channel (no local port, no password in argv):
the admin account `k3sha_admin`@127.0.0.1/localhost (password: secret db_admin_password)
is created once per node by root over the local socket with the SQL on stdin. The SQL
itself comes from tasks/sql.py for the detected flavor and version.
"""
from __future__ import annotations

import re
import select
import shlex
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
from fabric import Connection
from invoke import Context

from ..core import render
from . import sql
from ..core.errors import InputError, K3sHaError, Refused, StepFailed
from ..core.inventory import Host, Inventory
from ..core.run import CHANGED, FAILED, OK, Run, run_session
from ..core.cli import k3s_task, say, table
from ..core.ops import ensure_dir, ensure_file, ensure_packages, ensure_service
from ..core.ssh import is_dry, os_family, put_private, read_file, sh
from ..core.secrets import get_secret
from ..facts.haproxy import ServerStat, show_stat

H_DRY = "show what would change, change nothing"
H_YES = "never prompt (secrets from env or the secrets file)"
HEALTH_BIN = "/usr/local/bin/k3s-ha-db-health"
HEALTH_UNIT = "/etc/systemd/system/k3s-ha-db-health.service"


# ------------------------------------------------------------------ SQL over SSH
def channel_socket(conn: Connection, host: str, port: int) -> socket.socket:
    """A real socket whose bytes go to host:port as seen from `conn`'s machine (direct-tcpip).

    A socketpair bridged to the SSH channel: pymysql (and its TLS) get a genuine socket and
    no local port is opened.
    """
    transport = conn.client.get_transport()
    if transport is None:
        conn.open()
        transport = conn.client.get_transport()
    chan = transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=10)
    ours, theirs = socket.socketpair()

    def pump() -> None:
        try:
            while True:
                ready, _, _ = select.select([chan, theirs], [], [], 5)
                for src, dst in ((chan, theirs), (theirs, chan)):
                    if src in ready:
                        data = src.recv(65536)
                        if not data:
                            return
                        dst.sendall(data)
        except (OSError, EOFError):
            return
        finally:
            for end in (chan, theirs):
                try:
                    end.close()
                except (OSError, EOFError):
                    pass

    threading.Thread(target=pump, daemon=True).start()
    return ours


def mysql_connect(conn: Connection, *, user: str, password: str, host: str = "127.0.0.1",
                  port: int = 3306, tls: bool = False, database: str | None = None
                  ) -> pymysql.connections.Connection:
    """pymysql session through `conn`; raises pymysql errors as they come."""
    db = pymysql.connect(host=host, port=port, user=user, password=password, database=database,
                         autocommit=True, defer_connect=True, connect_timeout=10,
                         read_timeout=60, write_timeout=60,
                         cursorclass=pymysql.cursors.DictCursor,
                         ssl={"check_hostname": False} if tls else None)
    db.connect(sock=channel_socket(conn, host, port))
    return db


def q(db: pymysql.connections.Connection, stmt: str, args: Any = None) -> list[dict[str, Any]]:
    with db.cursor() as cur:
        cur.execute(stmt, args)
        return list(cur.fetchall() or [])


@dataclass
class Node:
    host: Host
    conn: Connection
    d: sql.Dialect
    db: Any = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.host.name

    def q(self, stmt: str, args: Any = None) -> list[dict[str, Any]]:
        try:
            return q(self.db, stmt, args)
        except pymysql.MySQLError as e:
            shown = stmt.split(" IDENTIFIED")[0].split("PASSWORD=")[0]
            raise StepFailed(f"{self.name}: SQL failed ({shown[:120]}): {e.args[-1]}") from None

    def write(self, stmt: str, args: Any = None) -> None:
        if is_dry(self.conn):
            shown = stmt.split(" IDENTIFIED")[0].split("PASSWORD=")[0]
            say(f"[{self.name}] would run SQL: {shown}")
            return
        self.q(stmt, args)


def detect(conn: Connection, host: Host) -> sql.Dialect:
    res = sh(conn, "mysql -NBe 'SELECT VERSION()'", warn=True, write=False)
    if res.exited != 0:
        raise StepFailed(f"{host.name}: mysqld does not answer on its local socket "
                         f"({(res.stderr or res.stdout).strip()[:200] or 'no output'}). "
                         "Fix: fab db.install, then check `systemctl status mariadb`/`mysql`")
    return sql.parse_version(res.stdout.strip())


def _admin_exists(conn: Connection) -> bool:
    res = sh(conn, "mysql -NBe \"SELECT COUNT(*) FROM mysql.user WHERE User='"
             + sql.ADMIN_USER + "'\"", write=False)
    return res.stdout.strip() == str(len(sql.ADMIN_HOSTS))


def open_node(r: Run, conn: Connection, host: Host, *, create_admin: bool = True) -> Node:
    """Detect the dialect and log in as the admin (created by root over the socket if missing).

    In dry run on a node without the admin account, returns a Node without a session.
    """
    d = detect(conn, host)
    pw = get_secret("db_admin_password", r.inv, yes=r.yes)
    node = Node(host, conn, d)
    if create_admin and not _admin_exists(conn):
        if r.dry:
            say(f"[{host.name}] would create {sql.ADMIN_USER}@127.0.0.1/localhost")
            return node
        sh(conn, "mysql", stdin=";\n".join(sql.admin_user_sql(d, pw)) + ";\n")
        r.record(host, "admin account", CHANGED)
    try:
        node.db = mysql_connect(conn, user=sql.ADMIN_USER, password=pw,
                                port=r.inv.db["port"], tls=not d.mariadb)
    except pymysql.MySQLError as e:
        code = e.args[0] if e.args else 0
        if code == 1045:
            raise InputError(
                f"{host.name}: {d} refused {sql.ADMIN_USER}'s password (1045 access denied): "
                "the db_admin_password given differs from the one this node was set up with, "
                "or the account is missing. Fix: give the right one (K3S_HA_DB_ADMIN_PASSWORD "
                "or the secrets file), or set it anew with fab db.secure --reset-admin"
            ) from None
        raise StepFailed(f"{host.name}: cannot log in to {d} over SSH: {e.args[-1]}") from None
    return node


def db_hosts(inv: Inventory) -> list[Host]:
    return inv.with_role("db")


def peer_of(inv: Inventory, host: Host) -> Host:
    return next(h for h in db_hosts(inv) if h.name != host.name)


def package_and_service(inv: Inventory, conn: Connection) -> tuple[str, str, str]:
    """(flavor, package, service) for this host: inventory flavor, else by OS."""
    flavor = inv.db["flavor"]
    if flavor == "auto":
        osr = (read_file(conn, "/etc/os-release") or b"").decode()
        flavor = "mysql" if "ID=ubuntu" in osr else "mariadb"
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
                say(f"  {h.name:<22} {detect(conn, h)}")

        r.each(db_hosts(r.inv), one)


@k3s_task(help={"dry": H_DRY, "yes": H_YES,
                "reset_admin": "set k3sha_admin's password to the current db_admin_password"})
def secure(c: Context, dry: bool = False, yes: bool = False, reset_admin: bool = False) -> None:
    """mysql_secure_installation as idempotent SQL; root keeps its socket login."""
    with run_session(c, "db.secure", dry=dry, yes=yes) as r:
        def one(conn: Connection, h: Host) -> None:
            if reset_admin:
                d = detect(conn, h)
                pw = get_secret("db_admin_password", r.inv, yes=r.yes)
                stmts = ["SET SESSION sql_log_bin = 0"] + [
                    sql.alter_password(d, sql.ADMIN_USER, a, pw) for a in sql.ADMIN_HOSTS]
                if not r.dry:
                    sh(conn, "mysql", stdin=";\n".join(stmts) + ";\n")
                r.record(h, "admin password", CHANGED)
            n = open_node(r, conn, h)
            if n.db is None:
                r.record(h, "secure installation", CHANGED, "after the admin account")
                return
            users = [(x["User"], x["Host"]) for x in n.q(sql.SECURE_FIND)]
            test = int(list(n.q(sql.SECURE_TEST_DB)[0].values())[0])

            def apply() -> bool:
                if not users and not test:
                    return False
                for stmt in sql.secure_sql(users, bool(test)):
                    n.write(stmt)
                return True

            r.step(h, "secure installation", apply)

        r.each(db_hosts(r.inv), one)


@k3s_task(help={"dry": H_DRY, "yes": H_YES})
def configure(c: Context, dry: bool = False, yes: bool = False) -> None:
    """my.cnf drop-in (server_id, binlog, relay log, ROW, semi-sync ...); restart only if changed."""
    with run_session(c, "db.configure", dry=dry, yes=yes) as r:
        inv = r.inv

        def one(conn: Connection, h: Host) -> None:
            d = detect(conn, h)
            _, _, svc = package_and_service(inv, conn)
            vals = sql.server_config(
                d, server_id=h.server_id, bind_address="0.0.0.0", port=inv.db["port"],
                semi_sync=inv.db["semi_sync"], timeout_ms=inv.db["semi_sync_timeout_ms"],
                gtid=inv.db["gtid"], health_check=inv.db["health_check"],
                auto_increment_increment=inv.db["auto_increment_increment"],
                auto_increment_offset=inv.db["auto_increment_offset"])
            text = render.render("db-k3s-ha.cnf.j2", **vals)
            r.step(h, "log dir /var/log/mysql", lambda: ensure_dir(
                conn, "/var/log/mysql", mode="2750", owner="mysql", group="adm"))
            changed = r.step(h, "my.cnf drop-in", lambda: ensure_file(
                conn, config_path(d, os_family(conn)), text, mode="0644"))
            r.step(h, f"service {svc}", lambda: ensure_service(
                conn, svc, changed_inputs=changed))

        r.each(db_hosts(inv), one)


# ------------------------------------------------------------------ replication
def gather(n: Node, inv: Inventory) -> None:
    """Facts the replication plan needs (read-only)."""
    n.facts["replica"] = sql.parse_replica_status(n.q(sql.show_replica_status(n.d)))
    n.facts["binlog"] = sql.parse_binlog_status(n.q(sql.show_binlog_status(n.d)))
    n.facts["data"] = table_checksums(n)
    n.facts["has_data"] = any(
        n.q(f"SELECT EXISTS(SELECT 1 FROM {t}) AS x")[0]["x"] for t in n.facts["data"])


def table_checksums(n: Node) -> dict[str, int]:
    rows = n.q("SELECT TABLE_SCHEMA s, TABLE_NAME t FROM information_schema.TABLES WHERE "
               "TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN %s ORDER BY 1, 2",
               (sql.SYSTEM_SCHEMAS,))
    names = [f"{sql.ident(x['s'])}.{sql.ident(x['t'])}" for x in rows]
    if not names:
        return {}
    out = n.q("CHECKSUM TABLE " + ", ".join(names))
    return {name: int(row["Checksum"] or 0) for name, row in zip(names, out)}


def direction_state(rep: sql.ReplicaStatus, peer: Host, user: str) -> str:
    """ok | missing | repair | kick | start | refuse:<why> for one replica -> source direction."""
    if not rep.configured:
        return "missing"
    if rep.source_host != peer.address:
        return (f"refuse:it replicates from {rep.source_host}, not from its peer {peer.name} "
                f"({peer.address}); k3s-ha does not re-point a configured replica")
    if rep.last_sql_errno or rep.sql_running not in ("Yes", "No"):
        return (f"refuse:replica in error ({rep.describe()}); k3s-ha never resets or skips "
                "events. Fix: compare the rows named in the error on both nodes (fab "
                "db.checksum), repair by hand, START REPLICA, then run db.replicate again")
    if rep.source_user != user or rep.last_io_errno in (1045, 1044):
        return "repair"
    if rep.last_io_errno or rep.io_running == "Connecting":
        return "kick"
    if rep.io_running != "Yes" or rep.sql_running != "Yes":
        return "start"
    return "ok"


def plan(a: Node, b: Node, user: str) -> list[tuple[str, Node, Node]]:
    """Actions (what, replica, source) to reach healthy master-master; raises Refused."""
    actions: list[tuple[str, Node, Node]] = []
    states = {}
    for x, y in ((a, b), (b, a)):
        st = direction_state(x.facts["replica"], y.host, user)
        if st.startswith("refuse:"):
            raise Refused(f"{x.name}: {st[7:]}")
        states[x.name] = st
    missing = [x for x in (a, b) if states[x.name] == "missing"]
    if missing and a.facts["data"] != b.facts["data"]:
        # the seed source: the only node with rows, else the only node with tables
        full = ([x for x in (a, b) if x.facts["has_data"]]
                or [x for x in (a, b) if x.facts["data"]])
        if len(missing) == 2 and len(full) == 1:
            empty = b if full[0] is a else a
            actions.append(("seed", empty, full[0]))
        else:
            diff = sorted(t for t in set(a.facts["data"]) | set(b.facts["data"])
                          if a.facts["data"].get(t) != b.facts["data"].get(t))
            raise Refused(
                f"{a.name} and {b.name} hold different data ({', '.join(diff[:8])}) and "
                "replication is not set up both ways: joining them would lose or duplicate "
                "rows. Fix: decide which node is right, empty the other one's databases "
                "(keep a dump), then run db.replicate again to seed it from the right one")
    for x, y in ((a, b), (b, a)):
        if states[x.name] != "ok":
            actions.append((states[x.name], x, y))
    return actions


def ensure_repl_user(n: Node, peer: Host, user: str, pw: str) -> bool:
    rows = n.q("SELECT COUNT(*) c FROM mysql.user WHERE User=%s AND Host=%s", (user, peer.address))
    if rows[0]["c"]:
        if not n.d.mariadb:
            return False
        same = n.q("SELECT authentication_string = PASSWORD(%s) AS same FROM mysql.user "
                   "WHERE User=%s AND Host=%s", (pw, user, peer.address))[0]["same"]
        if same:
            return False
    n.write("SET SESSION sql_log_bin = 0")
    for stmt in sql.replication_user_sql(n.d, user, peer.address, pw):
        n.write(stmt)
    n.write("SET SESSION sql_log_bin = 1")
    return True


def ensure_semi_sync(n: Node, inv: Inventory) -> bool:
    if inv.db["semi_sync"]:
        want = sql.semi_sync_settings(n.d, inv.db["semi_sync_timeout_ms"])
    else:
        names = sql.semi_sync_names(n.d)
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
    replica_var = sql.semi_sync_names(n.d)["replica_enabled"]
    for k, v in want.items():
        if cur.get(k) != v.upper():
            n.write(sql.set_global(k, v))
            changed = True
            if k == replica_var and n.facts["replica"].io_running == "Yes":
                n.write(sql.stop_replica(n.d, "IO_THREAD"))  # semi-sync applies on reconnect
                n.write(sql.start_replica(n.d, "IO_THREAD"))
    return changed


def seed(empty: Node, full: Node) -> tuple[str, int]:
    """Consistent dump of `full`'s databases loaded into `empty`; returns full's coordinates."""
    dbs = sorted({t.split(".")[0].strip("`") for t in full.facts["data"]})
    say(f"  seeding {empty.name} from {full.name}: {', '.join(dbs)}")
    remote = f"/tmp/.k3sha-seed-{uuid.uuid4().hex}.sql"  # 0600, the login user's (sftp)
    qr = shlex.quote(remote)
    try:
        sh(full.conn, f"umask 077 && {sql.dump_command(full.d, dbs, False)} > {qr} && "
                      f"chown {shlex.quote(full.conn.user)} {qr}", timeout=1800)
        head = sh(full.conn, f"head -c 8192 {qr}", write=False).stdout
        coords = sql.parse_dump_coords(head)
        if coords is None:
            raise StepFailed(f"{full.name}: the dump carries no binlog coordinates (is log_bin "
                             "on? fab db.configure)")
        with tempfile.TemporaryDirectory() as tmp:
            local = str(Path(tmp) / "seed.sql")
            full.conn.get(remote, local)
            put_private(empty.conn, local, remote)
        sh(empty.conn, f"chmod 600 {qr} && {{ echo 'SET SESSION sql_log_bin = 0;'; cat {qr}; }}"
                       " | mysql", timeout=1800)
    finally:
        sh(full.conn, f"rm -f {qr}", warn=True)
        sh(empty.conn, f"rm -f {qr}", warn=True)
    return coords


def wait_healthy(n: Node, timeout: float = 30) -> sql.ReplicaStatus:
    end = time.monotonic() + timeout
    while True:
        rep = sql.parse_replica_status(n.q(sql.show_replica_status(n.d)))
        if rep.healthy and rep.io_running == "Yes" or time.monotonic() > end:
            return rep
        time.sleep(0.5)


@k3s_task(help={"dry": H_DRY, "yes": H_YES})
def replicate(c: Context, dry: bool = False, yes: bool = False) -> None:
    """Master-master replication between the two db hosts, semi-sync AFTER_SYNC; idempotent."""
    with run_session(c, "db.replicate", dry=dry, yes=yes) as r:
        inv = r.inv
        user = inv.db["replication_user"]
        rpw = get_secret("replication_password", inv, yes=r.yes)

        def read(conn: Connection, h: Host) -> Node:
            n = open_node(r, conn, h)
            if n.db is None:
                raise StepFailed(f"{h.name}: no admin account yet. Fix: fab db.secure first")
            gather(n, inv)
            if n.facts["binlog"] is None:
                raise StepFailed(f"{h.name}: binary log is off. Fix: fab db.configure")
            r.record(h, "read state", OK, n.facts["replica"].describe())
            return n

        nodes = r.each(db_hosts(inv), read)  # both reachable and readable, or nothing changes
        a, b = (nodes[h.name] for h in db_hosts(inv))
        try:
            actions = plan(a, b, user)
        except Refused:
            for n in (a, b):
                r.record(n.host, "plan", FAILED)
            raise
        for n, peer in ((a, b), (b, a)):
            if r.step(n.host, "replication user",
                      lambda: ensure_repl_user(n, peer.host, user, rpw)):
                # a new password on n: the peer's replica must log in anew with it
                kinds = [w for w, x, _ in actions if x is peer]
                if not kinds:
                    actions.append(("repair", peer, n))
                elif kinds[0] in ("kick", "start"):
                    actions = [("repair" if x is peer and w in ("kick", "start") else w, x, y)
                               for w, x, y in actions]
            r.step(n.host, "semi-sync", lambda: ensure_semi_sync(n, inv))
        coords: dict[str, tuple[str, int]] = {}
        for what, x, y in actions:
            if what == "seed":
                coords[x.name] = r.step(x.host, f"seed from {y.name}", lambda: seed(x, y)) \
                    if not r.dry else ("", 4)
        for what, x, y in actions:
            step = f"replica of {y.name}"
            if what == "missing":
                fpos = coords.get(x.name) or sql.parse_binlog_status(
                    y.q(sql.show_binlog_status(y.d)))
                assert fpos is not None

                def configure_direction(x: Node = x, y: Node = y,
                                        fpos: tuple[str, int] = fpos) -> bool:
                    x.write(sql.change_source(x.d, host=y.host.address, port=inv.db["port"],
                                              user=user, password=rpw, log_file=fpos[0],
                                              log_pos=fpos[1], gtid=inv.db["gtid"]))
                    x.write(sql.start_replica(x.d))
                    return True

                r.step(x.host, step, configure_direction)
            elif what == "repair":
                def repair(x: Node = x) -> bool:
                    x.write(sql.stop_replica(x.d))
                    x.write(sql.change_source(x.d, user=user, password=rpw))
                    x.write(sql.start_replica(x.d))
                    return True

                r.step(x.host, step + " (credentials)", repair)
            elif what in ("kick", "start"):
                def restart(x: Node = x, what: str = what) -> bool:
                    if what == "kick":
                        x.write(sql.stop_replica(x.d, "IO_THREAD"))
                    x.write(sql.start_replica(x.d))
                    return True

                r.step(x.host, step + f" ({'reconnect' if what == 'kick' else 'start'})",
                       restart)
            elif what != "seed":  # pragma: no cover
                raise StepFailed(f"{x.name}: unknown action {what}")
        if r.dry:
            return
        for n, peer in ((a, b), (b, a)):
            rep = wait_healthy(n, 30 if actions else 0)
            if not rep.healthy:
                r.record(n.host, "verify", FAILED, rep.describe())
                raise StepFailed(f"{n.name}: replica of {peer.name} is not healthy after "
                                 f"db.replicate: {rep.state or '-'}; {rep.describe()}")
            r.record(n.host, "verify", OK, f"replicating from {peer.name}")


# ------------------------------------------------------------------ users
@k3s_task(help={"dry": H_DRY, "yes": H_YES})
def users(c: Context, dry: bool = False, yes: bool = False) -> None:
    """HAProxy check user and the k3s database/user, limited to the db-balancers' addresses."""
    with run_session(c, "db.users", dry=dry, yes=yes) as r:
        inv = r.inv
        allowed = [h.address for h in inv.with_role("db-balancer")]
        if not allowed:
            raise InputError("no host has role db-balancer: the k3s and check users are "
                             "limited to the datastore balancers' addresses. Fix: add them")
        kpw = get_secret("k3s_db_password", inv, yes=r.yes)

        def one(conn: Connection, h: Host) -> None:
            n = open_node(r, conn, h)
            if n.db is None:
                raise StepFailed(f"{h.name}: no admin account yet. Fix: fab db.secure first")
            if inv.db["health_check"] == "mysql-check":
                caveat = sql.check_user_caveat(n.d)
                if caveat:
                    say(f"  {h.name}: note: {caveat}")
                r.step(h, f"user {inv.db['check_user']}", lambda: ensure_account(
                    n, inv.db["check_user"], allowed, sql.check_user_sql(
                        n.d, inv.db["check_user"], allowed), None))
            r.step(h, f"database + user {inv.db['user']}", lambda: ensure_account(
                n, inv.db["user"], allowed, sql.app_user_sql(
                    n.d, inv.db["database"], inv.db["user"], allowed, kpw), kpw,
                database=inv.db["database"]))
            n.write(sql.flush_hosts(n.d))
            r.record(h, "flush host cache", OK)

        r.each(db_hosts(inv), one)


def ensure_account(n: Node, user: str, hosts: list[str], stmts: list[str],
                   password: str | None, database: str | None = None) -> bool:
    """Exactly `hosts` for `user` (extra hosts dropped), created by `stmts`; this node only."""
    have = {x["Host"] for x in n.q("SELECT Host FROM mysql.user WHERE User=%s", (user,))}
    stale = sorted(have - set(hosts))
    ok = not stale and have == set(hosts)
    if ok and database is not None:
        ok = bool(n.q("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s",
                      (database,)))
    if ok and password is not None and n.d.mariadb:
        ok = all(x["same"] for x in n.q(
            "SELECT authentication_string = PASSWORD(%s) AS same FROM mysql.user WHERE User=%s",
            (password, user)))
    if ok:
        return False
    n.write("SET SESSION sql_log_bin = 0")
    for host in stale:
        n.write(sql.drop_user(user, host))
    for stmt in stmts:
        n.write(stmt)
    n.write("SET SESSION sql_log_bin = 1")
    return True


# ------------------------------------------------------------------ status / checksum
def vip_writes(r: Run) -> tuple[str, str]:
    """(db host HAProxy sends writes to, via which balancer), from the VIP holder's runtime API.

    The first value is a db host name, "none (all DOWN)" or "unknown" (then the second says why).
    """
    servers, via = vip_servers(r)
    if servers is None:
        return "unknown", via
    return writer(servers, {h.name for h in db_hosts(r.inv)}), via


def vip_servers(r: Run) -> tuple[list[ServerStat] | None, str]:
    """The datastore backend's servers as seen by the VIP holder's HAProxy, and its name
    (or None and why they could not be read)."""
    vip = r.inv.vip_for_role("db-balancer")
    for b in r.inv.with_role("db-balancer"):
        try:
            conn = r.conn(b)
            holds = vip is not None and sh(conn, f"ip -o addr show | grep -qw {shlex.quote(vip.address)}",
                                           warn=True, write=False).exited == 0
            if not holds:
                continue
            servers = show_stat(conn)
            if servers is None:
                return None, f"{b.name}: no HAProxy admin socket"
            return servers, b.name
        except Exception as e:  # noqa: BLE001 - status reports, never fails on this
            return None, f"{b.name}: {e}"
    return None, "no balancer holds the datastore VIP"


def _order(servers: list[ServerStat], db_names: set[str]) -> list[ServerStat]:
    """Datastore servers in HAProxy's order of preference: primaries, then backups."""
    mine = [x for x in servers if x.server in db_names]
    return [x for x in mine if not x.backup] + [x for x in mine if x.backup]


def writer(servers: list[ServerStat], db_names: set[str]) -> str:
    """The server HAProxy's `balance first` + `backup` sends writes to: the first UP primary,
    else the first UP backup."""
    for x in _order(servers, db_names):
        if x.status.startswith("UP"):
            return x.server
    return "none (all DOWN)"


def rising_ahead(servers: list[ServerStat], db_names: set[str]) -> str | None:
    """A server HAProxy prefers to the current writer that is passing checks on its way up
    ("DOWN 6/30"): once up it takes the writes over (on-marked-up). None if there is none."""
    for x in _order(servers, db_names):
        if x.status.startswith("UP"):
            return None
        m = re.fullmatch(r"DOWN (\d+)/\d+", x.status)
        if m and int(m.group(1)) > 0:
            return x.server
    return None


def wait_writer(r: Run, timeout: float) -> tuple[str, str]:
    """Poll the VIP holder until HAProxy admits a writer (a returning server needs `rise`
    checks) and no server it prefers is still rising, so the writer named is the one that
    stays."""
    names = {h.name for h in db_hosts(r.inv)}
    end = time.monotonic() + timeout
    while True:
        servers, via = vip_servers(r)
        who = "unknown" if servers is None else writer(servers, names)
        settled = servers is not None and who in names and not rising_ahead(servers, names)
        if settled or time.monotonic() > end:
            return who, via
        time.sleep(2)


@k3s_task(help={"yes": H_YES})
def status(c: Context, yes: bool = False) -> None:
    """Per node: version, VIP write target, IO/SQL threads, lag, errors, binlog, semi-sync."""
    with run_session(c, "db.status", yes=yes) as r:
        inv = r.inv

        def one(_: Any, h: Host) -> dict[str, Any]:
            try:
                return node_status(r.conn(h), h)
            except K3sHaError as e:
                r.record(h, "status", FAILED)
                return {"node": h.name, "version": "UNREACHABLE", "errors": str(e)[:100],
                        "full_error": str(e)}

        def node_status(conn: Connection, h: Host) -> dict[str, Any]:
            n = open_node(r, conn, h, create_admin=False)
            rep = sql.parse_replica_status(n.q(sql.show_replica_status(n.d)))
            pos = sql.parse_binlog_status(n.q(sql.show_binlog_status(n.d)))
            names = sql.semi_sync_names(n.d)
            st = {x["Variable_name"]: x["Value"] for x in n.q(
                "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%%'")}
            ro = n.q("SELECT @@GLOBAL.read_only AS ro")[0]["ro"]
            src = st.get(names["source_status"], "-")
            return {
                "node": h.name, "version": str(n.d), "IO": rep.io_running or "-",
                "SQL": rep.sql_running or "-",
                "lag": "-" if rep.lag is None else rep.lag,
                "errors": "; ".join(x for x in (
                    rep.last_io_errno and f"IO {rep.last_io_errno}: {rep.last_io_error[:60]}",
                    rep.last_sql_errno and f"SQL {rep.last_sql_errno}: {rep.last_sql_error[:60]}")
                    if x) or "-",
                "binlog": f"{pos[0]}:{pos[1]}" if pos else "off",
                "gtid": rep.gtid_pos or "-",
                "semi-sync": ("active" if src == "ON" else "FALLEN BACK (async)"
                              if inv.db["semi_sync"] else "off")
                + f" ({st.get(names['clients'], '?')} acks)",
                "read_only": "ON" if ro else "OFF",
            }

        rows = r.each(db_hosts(inv), one, connect_first=False)
        target, via = vip_writes(r)
        for row in rows.values():
            row["writes"] = f"yes (via {via})" if row["node"] == target else "-"
        say("\n" + table(list(rows.values()), ["node", "version", "writes", "IO", "SQL", "lag",
                                               "errors", "binlog", "gtid", "semi-sync",
                                               "read_only"]))
        if target == "unknown":
            say(f"datastore VIP write target unknown: {via}")
        elif target not in rows:
            say(f"datastore VIP: HAProxy on {via} has no server UP for writes ({target}); a "
                f"returning server needs {inv.db['rise']} good checks (see fab balancers.status)")
        down = [x["full_error"] for x in rows.values()
                if x["version"] == "UNREACHABLE"]
        if down:
            raise StepFailed("no status from " + "; ".join(down))


@k3s_task(help={"yes": H_YES, "retries": "re-compare this many times (lag) before failing"})
def checksum(c: Context, yes: bool = False, retries: int = 5) -> None:
    """Compare every replicated table across the two nodes (CHECKSUM TABLE); name the differing."""
    with run_session(c, "db.checksum", yes=yes) as r:
        nodes = r.each(db_hosts(r.inv), lambda conn, h: open_node(r, conn, h,
                                                                  create_admin=False))
        a, b = nodes.values()
        for attempt in range(retries + 1):
            ca, cb = table_checksums(a), table_checksums(b)
            diff = sorted(t for t in set(ca) | set(cb) if ca.get(t) != cb.get(t))
            if not diff:
                break
            time.sleep(1)
        rows = [{"table": t, a.name: ca.get(t, "missing"), b.name: cb.get(t, "missing"),
                 "": "DIFFERS" if t in diff else "equal"} for t in sorted(set(ca) | set(cb))]
        say(table(rows, ["table", a.name, b.name, ""]))
        if diff:
            for n in (a, b):
                r.record(n.host, "checksum", FAILED)
            raise StepFailed(f"{len(diff)} table(s) differ between {a.name} and {b.name}: "
                             + ", ".join(diff))
        for n in (a, b):
            r.record(n.host, "checksum", OK, f"{len(ca)} tables equal")


# ------------------------------------------------------------------ health endpoint
def health_allowed(inv: Inventory, h: Host) -> list[str]:
    """Addresses the health endpoint on `h` answers: the datastore balancers, `h`, localhost."""
    return sorted({"127.0.0.1", h.address}
                  | {b.address for b in inv.with_role("db-balancer")})


@k3s_task(help={"dry": H_DRY, "yes": H_YES})
def health(c: Context, dry: bool = False, yes: bool = False) -> None:
    """Replication-aware HTTP check (port db.health_port) on each db host for HAProxy httpchk."""
    with run_session(c, "db.health", dry=dry, yes=yes) as r:
        def one(conn: Connection, h: Host) -> None:
            d = detect(conn, h)
            script = render.render("db-health.py.j2", port=r.inv.db["health_port"],
                                   status_sql=sql.show_replica_status(d),
                                   allowed=repr(health_allowed(r.inv, h)))
            unit = render.render("db-health.service")
            ch = r.step(h, "health script", lambda: ensure_file(conn, HEALTH_BIN, script,
                                                                mode="0755"))
            cu = r.step(h, "health unit", lambda: ensure_file(conn, HEALTH_UNIT, unit))
            if cu:
                sh(conn, "systemctl daemon-reload")
            r.step(h, "service k3s-ha-db-health", lambda: ensure_service(
                conn, "k3s-ha-db-health", changed_inputs=ch or cu))

        r.each(db_hosts(r.inv), one)
