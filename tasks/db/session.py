"""A database session: pymysql through an SSH channel, and the node it belongs to.

Queries go through pymysql over an SSH direct-tcpip channel (no local port, no password in
argv): the admin account `k3sha_admin`@127.0.0.1/localhost (password: secret
db_admin_password) is created once per node by root over the local socket, with the SQL
on stdin. A prompted admin password is saved only after a login with it succeeded.
"""
from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass
from typing import Any

import pymysql
from fabric import Connection

from ..core import secrets
from ..core.cli import say
from ..core.errors import InputError, StepFailed
from ..core.inventory import Host
from ..core.run import CHANGED, Run
from ..core.ssh import is_dry, sh
from ..facts import mysql as facts
from . import sql

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
                  port: int = 3306, tls: bool = False, database: str | None = None,
                  ssl: dict[str, str] | None = None) -> pymysql.connections.Connection:
    """pymysql session through `conn`; raises pymysql errors as they come. tls: encrypted,
    unverified (MySQL's admin login over loopback); ssl: pymysql's ssl= as given (a
    {"ca": path} verifies the server's certificate under `host`)."""
    db = pymysql.connect(host=host, port=port, user=user, password=password, database=database,
                         autocommit=True, defer_connect=True, connect_timeout=10,
                         read_timeout=60, write_timeout=60,
                         cursorclass=pymysql.cursors.DictCursor,
                         ssl=ssl or ({"check_hostname": False} if tls else None))
    db.connect(sock=channel_socket(conn, host, port))
    return db


def q(db: pymysql.connections.Connection, stmt: str, args: Any = None) -> list[dict[str, Any]]:
    with db.cursor() as cur:
        cur.execute(stmt, args)
        return list(cur.fetchall() or [])


@dataclass(frozen=True)
class Facts:
    """What db.replicate's plan reads from one node."""
    replica: facts.ReplicaStatus
    binlog: tuple[str, int] | None
    data: dict[str, int]        # table -> checksum
    has_data: bool              # any table holds a row
    gtid: str = ""              # executed GTIDs (MariaDB gtid_binlog_pos / MySQL gtid_executed)
    source_tls: str = ""        # the replica's TLS to its source (see replica_tls)


@dataclass
class Node:
    """One database host and its admin session (db None: dry run before the admin exists)."""
    host: Host
    conn: Connection
    d: sql.Dialect
    db: Any = None
    facts: Facts | None = None

    @property
    def name(self) -> str:
        return self.host.name

    def q(self, stmt: str, args: Any = None) -> list[dict[str, Any]]:
        try:
            return q(self.db, stmt, args)
        except pymysql.MySQLError as e:
            raise StepFailed(f"{self.name}: SQL failed ({shown(stmt)[:120]}): "
                             f"{e.args[-1]}") from None

    def write(self, stmt: str, args: Any = None) -> None:
        if is_dry(self.conn):
            say(f"[{self.name}] would run SQL: {shown(stmt)}")
            return
        self.q(stmt, args)

    def read_facts(self) -> Facts:
        data = facts.table_checksums(self)
        self.facts = Facts(replica=facts.replica_status(self),
                           binlog=facts.binlog_position(self), data=data,
                           has_data=facts.has_rows(self, list(data)),
                           gtid=facts.executed_gtids(self),
                           source_tls=replica_tls(self.q(sql.show_replica_status(self.d))))
        return self.facts


def replica_tls(rows: list[dict[str, Any]]) -> str:
    """The replica's TLS to its source (pure): the CA file when on and verifying the
    source's certificate, "unverified" when on without, "" when off or no replica."""
    row = rows[0] if rows else {}

    def get(k: str) -> str:
        return str(row.get(f"Master_{k}", row.get(f"Source_{k}", "")) or "")
    if get("SSL_Allowed") != "Yes":
        return ""
    return get("SSL_CA_File") if get("SSL_Verify_Server_Cert") == "Yes" else "unverified"


def ssl_required(ssl_type: str | bytes | None) -> bool:
    """mysql.user.ssl_type: '' none, ANY (REQUIRE SSL), X509, SPECIFIED."""
    v = ssl_type.decode() if isinstance(ssl_type, bytes) else (ssl_type or "")
    return v.upper() not in ("", "NONE")


def shown(stmt: str) -> str:
    """A statement as it may be shown: anything from a password on is cut."""
    return stmt.split(" IDENTIFIED")[0].split("PASSWORD=")[0]


# ------------------------------------------------------------------ the admin account
def admin_exists(conn: Connection) -> bool:
    res = sh(conn, "mysql -NBe \"SELECT COUNT(*) FROM mysql.user WHERE User='"
             + sql.ADMIN_USER + "'\"", write=False)
    return res.stdout.strip() == str(len(sql.ADMIN_HOSTS))


def create_admin(conn: Connection, d: sql.Dialect, password: str) -> None:
    """As root over the local socket; the password travels on stdin, never in argv."""
    sh(conn, "mysql", stdin=";\n".join(sql.admin_user_sql(d, password)) + ";\n")


def reset_admin(conn: Connection, d: sql.Dialect, password: str) -> None:
    stmts = ["SET SESSION sql_log_bin = 0"] + [
        sql.alter_password(d, sql.ADMIN_USER, a, password) for a in sql.ADMIN_HOSTS]
    sh(conn, "mysql", stdin=";\n".join(stmts) + ";\n")


def admin_password(r: Run, hosts: list[Host]) -> str:
    """db_admin_password, asked (once, before any fan-out) as a login when some node already
    has the admin account, as a new value to confirm when none has. Known already (env,
    secrets file, asked before in this run): no node is asked anything."""
    r.each(hosts, lambda conn, h: facts.server_version(conn, h.name))
    known = secrets.known("db_admin_password", r.inv)
    if known is not None:
        return known
    have = r.each(hosts, lambda conn, h: admin_exists(conn))
    return secrets.get_secret("db_admin_password", r.inv, yes=r.yes,
                              new=not any(have.values()))


def open_node(r: Run, conn: Connection, host: Host, password: str, *,
              create: bool = True) -> Node:
    """Detect the dialect and log in as the admin (created by root over the socket when the
    login is refused for want of it: a node set up already costs no extra round trip). In
    dry run on a node without the admin account, a Node without a session."""
    node = Node(host, conn, facts.server_version(conn, host.name))
    try:
        node.db = _admin_login(r, conn, node, password)
    except pymysql.MySQLError as e:
        # how a server refuses a missing account varies (1045; MariaDB 1130 when no account
        # matches 127.0.0.1, 1698 when the host resolves to localhost): whether it exists
        # is asked of root over the socket, whatever the refusal said
        if not (create and not admin_exists(conn)):
            raise _login_error(r, host, node, e) from None
        if r.dry:
            say(f"[{host.name}] would create {sql.ADMIN_USER}@127.0.0.1/localhost")
            return node
        create_admin(conn, node.d, password)
        r.record(host, "admin account", CHANGED)
        try:
            node.db = _admin_login(r, conn, node, password)
        except pymysql.MySQLError as e2:
            raise _login_error(r, host, node, e2) from None
    if create and node.q("SELECT COUNT(*) AS n FROM mysql.user WHERE User = %s",
                         (sql.ADMIN_USER,))[0]["n"] != len(sql.ADMIN_HOSTS):
        if r.dry:  # one of its two hosts (127.0.0.1, localhost) missing
            say(f"[{host.name}] would complete {sql.ADMIN_USER}@127.0.0.1/localhost")
        else:
            create_admin(conn, node.d, password)
            r.record(host, "admin account", CHANGED)
    secrets.accepted("db_admin_password", r.inv)
    return node


def _admin_login(r: Run, conn: Connection, node: Node, password: str
                 ) -> pymysql.connections.Connection:
    return mysql_connect(conn, user=sql.ADMIN_USER, password=password,
                         port=r.inv.db["port"], tls=not node.d.mariadb)


def _login_error(r: Run, host: Host, node: Node, e: pymysql.MySQLError) -> Exception:
    if (e.args[0] if e.args else 0) == 1045:
        secrets.refused("db_admin_password", r.inv)
        return InputError(
            f"{host.name}: {node.d} refused {sql.ADMIN_USER}'s password (1045 access "
            "denied): the db_admin_password given differs from the one this node was set "
            "up with, or the account is missing. Fix: give the right one "
            "(K3S_HA_DB_ADMIN_PASSWORD or the secrets file), or set it anew with fab "
            "db.secure --reset-admin")
    return StepFailed(f"{host.name}: cannot log in to {node.d} over SSH: {e.args[-1]}")


def require_session(n: Node) -> Node:
    if n.db is None:
        raise StepFailed(f"{n.name}: no admin account yet. Fix: fab db.secure first")
    return n
