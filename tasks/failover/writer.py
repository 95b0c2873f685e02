"""The datastore writer probe and the drill's own table, database and user.

`k3sha_drill.writes` (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY as kine's, seq BIGINT
UNIQUE, payload, ts) lives in its own database with its own user `k3sha_drill`, granted
on the db-balancers' addresses only (HAProxy makes every client look like the balancer),
created on each node through the admin session with sql_log_bin=0 like db.users' accounts.
The password is a generated secret kept in the secrets file under `drill_db_password`.

The writer connects straight to the datastore VIP and inserts one numbered row per
statement (autocommit), recording each as acknowledged (with its id), failed (refused, or
an error the server answered) or indeterminate (a timeout or a connection lost after
sending). `read_back` reads every node's rows, checksums and replication after the drill.
"""
from __future__ import annotations

import secrets as pysecrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pymysql
from fabric import Connection

from ..core import secrets
from ..core.errors import InputError, StepFailed
from ..core.inventory import Host, Inventory
from ..core.ssh import sh
from ..db import sql
from ..db.session import mysql_connect, q
from ..facts.mysql import parse_replica_status
from .accounting import Table, Write, WriteOutcome
from .timeline import Outcome

DATABASE, TABLE, USER, SECRET = "k3sha_drill", "writes", "k3sha_drill", "drill_db_password"
FQ = f"{sql.ident(DATABASE)}.{sql.ident(TABLE)}"
CREATE_TABLE = (f"CREATE TABLE IF NOT EXISTS {FQ} (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT "
                "PRIMARY KEY, seq BIGINT NOT NULL, payload VARCHAR(64) NOT NULL, "
                "ts DATETIME(6) NOT NULL, UNIQUE KEY seq (seq)) ENGINE=InnoDB")
INSERT = f"INSERT INTO {FQ} (seq, payload, ts) VALUES (%s, %s, NOW(6))"
# pymysql's client-side codes: lost during a query / gone away / timed out
INDETERMINATE_CODES = {2013, 2006, 2014, 2055}


def drill_password(inv: Inventory, yes: bool) -> str:
    """The writer's password: env / secrets file, else generated and saved there (0600)."""
    try:
        return secrets.get_secret(SECRET, inv, yes=True)
    except InputError:
        path = secrets.secrets_path(inv)
        if path is None:
            raise InputError(f"the drill needs {SECRET} and there is no secrets file to keep a "
                             f"generated one. Fix: set [secrets] file, or K3S_HA_"
                             f"{SECRET.upper()}") from None
        value = pysecrets.token_urlsafe(24)
        secrets.write_secret(path, SECRET, value)
        return value


@dataclass
class Admin:
    """An admin session on one database host (through SSH, as the db tasks do)."""
    host: Host
    db: Any
    d: sql.Dialect

    @property
    def mariadb(self) -> bool:
        return self.d.mariadb

    def q(self, stmt: str, args: Any = None) -> list[dict[str, Any]]:
        return q(self.db, stmt, args)

    def close(self) -> None:
        try:
            self.db.close()
        except Exception:  # noqa: BLE001
            pass


def admin(inv: Inventory, conn: Connection, host: Host, yes: bool = True) -> Admin:
    res = sh(conn, "mysql -NBe 'SELECT VERSION()'", warn=True, write=False, timeout=10)
    if res.exited != 0:
        raise StepFailed(f"{host.name}: mysqld does not answer on its local socket")
    d = sql.parse_version(res.stdout.strip())
    pw = secrets.get_secret("db_admin_password", inv, yes=yes)
    try:
        db = mysql_connect(conn, user=sql.ADMIN_USER, password=pw, port=inv.db["port"],
                           tls=not d.mariadb)
    except pymysql.MySQLError as e:
        raise StepFailed(f"{host.name}: admin login failed: {e.args[-1]}. Fix: fab db.secure "
                         "(the drill logs in as the db tasks' admin)") from None
    return Admin(host, db, d)


def ensure_drill_schema(a: Admin, allowed: list[str], password: str) -> None:
    """Database, table and user on this node only (sql_log_bin=0), idempotent."""
    a.q("SET SESSION sql_log_bin = 0")
    a.q(f"CREATE DATABASE IF NOT EXISTS {sql.ident(DATABASE)}")
    a.q(CREATE_TABLE)
    for h in allowed:
        for stmt in (sql.create_user(a.d, USER, h, password),
                     sql.alter_password(a.d, USER, h, password),
                     sql.grant("INSERT, SELECT", f"{sql.ident(DATABASE)}.*", USER, h)):
            a.q(stmt)
    a.q("SET SESSION sql_log_bin = 1")


# ------------------------------------------------------------------ the writer
@dataclass
class DrillWriter:
    """Inserts numbered rows through the VIP; `writes` is the accounting's input."""
    address: str
    port: int
    password: str
    base: int = field(default_factory=lambda: time.time_ns() // 1000)
    timeout: float = 2.0
    writes: list[Write] = field(default_factory=list)
    n: int = 0
    db: Any = None

    def _connect(self) -> Any:
        return pymysql.connect(host=self.address, port=self.port, user=USER,
                               password=self.password, database=DATABASE, autocommit=True,
                               connect_timeout=self.timeout, read_timeout=self.timeout,
                               write_timeout=self.timeout)

    def attempt_at(self, clock: Callable[[], float]) -> Callable[[], tuple[Outcome, str]]:
        def attempt() -> tuple[Outcome, str]:
            self.n += 1
            seq, t = self.base + self.n, clock()
            w, detail = self.insert(seq, t)
            self.writes.append(w)
            return {WriteOutcome.ACK: Outcome.OK, WriteOutcome.FAIL: Outcome.FAIL,
                    WriteOutcome.INDETERMINATE: Outcome.INDETERMINATE}[w.outcome], detail
        return attempt

    def insert(self, seq: int, t: float) -> tuple[Write, str]:
        if self.db is None:
            try:
                self.db = self._connect()
            except pymysql.MySQLError as e:
                return Write(seq, WriteOutcome.FAIL, None, t), f"connect: {e.args[-1]}"[:160]
        try:
            with self.db.cursor() as cur:
                cur.execute(INSERT, (seq, f"drill {seq}"))
                return Write(seq, WriteOutcome.ACK, int(cur.lastrowid), t), f"id {cur.lastrowid}"
        except pymysql.MySQLError as e:
            code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
            self.close()
            out = WriteOutcome.INDETERMINATE if code in INDETERMINATE_CODES or code == 0 \
                else WriteOutcome.FAIL
            return Write(seq, out, None, t), f"{code}: {e.args[-1]}"[:160]
        except OSError as e:
            self.close()
            return Write(seq, WriteOutcome.INDETERMINATE, None, t), str(e)[:160]

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except Exception:  # noqa: BLE001
                pass
        self.db = None

    @property
    def seq_range(self) -> tuple[int, int]:
        return self.base + 1, self.base + self.n


# ------------------------------------------------------------------ after the drill
def drill_rows(a: Admin, seqs: tuple[int, int], ids: tuple[int, int]) -> Table:
    rows = a.q(f"SELECT id, seq FROM {FQ} WHERE seq BETWEEN %s AND %s OR id BETWEEN %s AND %s",
               (*seqs, *ids))
    return {int(r["id"]): int(r["seq"]) for r in rows}


def has_kine(a: Admin, database: str) -> bool:
    return bool(a.q("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND "
                    "TABLE_NAME='kine'", (database,)))


def kine_rows(a: Admin, database: str) -> dict[int, str] | None:
    """kine id -> digest of the row; None when the k3s database has no kine table."""
    if not has_kine(a, database):
        return None
    rows = a.q(f"SELECT id, MD5(CONCAT_WS('|', CAST(name AS BINARY), created, deleted, create_revision, "
               f"prev_revision, lease, MD5(value))) AS d FROM {sql.ident(database)}.kine")
    return {int(r["id"]): str(r["d"]) for r in rows}


def checksums(a: Admin, tables: list[str]) -> dict[str, int]:
    out = a.q("CHECKSUM TABLE " + ", ".join(tables))
    return {str(r["Table"]): int(r["Checksum"] or 0) for r in out}


def replication_problem(a: Admin) -> str:
    """'' when both replication threads run without error, else what is wrong."""
    rows = a.q("SHOW SLAVE STATUS" if a.mariadb else "SHOW REPLICA STATUS")
    rep = parse_replica_status(rows)
    return "" if rep.healthy else (rep.describe() if rep.configured else "not configured")
