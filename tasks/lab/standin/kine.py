"""The datastore: MySQL/MariaDB in kine's table layout and revision semantics.

As kine (k3s-io/kine, pkg/drivers/mysql + pkg/logstructured/sqllog): one table `kine`;
every write (create, update, delete) is an INSERT whose auto-increment id is the new
revision; the latest row of a name is its current value (deleted=1 means gone);
UNIQUE (name, prev_revision) makes a write against a stale revision fail with 1062, which
is surfaced as KeyExists and never retried. A reader that sees a gap in the ids waits
(FILL_WAIT) and then inserts a filler row `gap-<id>`. The pure functions (write_row,
poll_step, range_end) hold that logic; the Kine class only runs SQL.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS kine (
        id BIGINT UNSIGNED AUTO_INCREMENT,
        name VARCHAR(630) CHARACTER SET ascii,
        created INTEGER,
        deleted INTEGER,
        create_revision BIGINT UNSIGNED,
        prev_revision BIGINT UNSIGNED,
        lease INTEGER,
        value MEDIUMBLOB,
        old_value MEDIUMBLOB,
        PRIMARY KEY (id))""",
    "CREATE INDEX kine_name_index ON kine (name)",
    "CREATE INDEX kine_name_id_index ON kine (name,id)",
    "CREATE INDEX kine_id_deleted_index ON kine (id,deleted)",
    "CREATE INDEX kine_prev_revision_index ON kine (prev_revision)",
    "CREATE UNIQUE INDEX kine_name_prev_revision_uindex ON kine (name, prev_revision)",
]
COLUMNS = "id, name, created, deleted, create_revision, prev_revision, lease, value"
INSERT = ("INSERT INTO kine(name, created, deleted, create_revision, prev_revision, lease, "
          "value, old_value) SELECT %s, %s, %s, %s, %s, %s, %s, "
          "(SELECT value FROM kine WHERE id = %s) AS old_value")
FILL = ("INSERT INTO kine(id, name, created, deleted, create_revision, prev_revision, lease, "
        "value, old_value) VALUES(%s, %s, 0, 1, 0, 0, 0, NULL, NULL)")
GET = f"SELECT {COLUMNS} FROM kine WHERE id = (SELECT MAX(id) FROM kine WHERE name = %s)"
LIST = (f"SELECT {COLUMNS} FROM kine JOIN (SELECT MAX(id) AS id FROM kine "
        "WHERE name >= %s AND name < %s GROUP BY name) AS mkv USING (id) "
        "WHERE deleted = 0 ORDER BY name")
AFTER = "SELECT id, name FROM kine WHERE id > %s ORDER BY id ASC LIMIT %s"
COMPACT = """DELETE kv FROM kine AS kv INNER JOIN (
    SELECT kp.prev_revision AS id FROM kine AS kp
    WHERE kp.name != 'compact_rev_key' AND kp.prev_revision != 0 AND kp.id <= %s
    UNION SELECT kd.id AS id FROM kine AS kd WHERE kd.deleted != 0 AND kd.id <= %s
) AS ks ON kv.id = ks.id"""
FILL_WAIT = 1.0
DUPLICATE_KEY = 1062


class DatastoreError(Exception):
    """The datastore did not answer or refused a query."""


class KeyExists(DatastoreError):
    """MySQL 1062 on kine's unique index: a create of an existing key or a stale update."""


@dataclass(frozen=True)
class Row:
    id: int
    name: str
    created: int
    deleted: int
    create_revision: int
    prev_revision: int
    lease: int
    value: bytes | None

    @property
    def revision(self) -> int:
        return self.id

    @property
    def create_rev(self) -> int:
        """kine stores 0 in create_revision for a create; the row's own id is it."""
        return self.id if self.created else self.create_revision


# ------------------------------------------------------------------ pure logic
def write_row(op: str, key: str, value: bytes | None, prev: Row | None,
              lease: int = 0) -> tuple[Any, ...]:
    """INSERT arguments for a kine create/update/delete, given the key's latest row.

    Raises KeyExists for a create over a live key and LookupError for an update or
    delete of a missing key, as kine's logstructured layer does before appending.
    """
    live = prev is not None and not prev.deleted
    prev_rev = prev.id if prev is not None else 0
    if op == "create":
        if live:
            raise KeyExists(f"key exists: {key}")
        return (key, 1, 0, 0, prev_rev, lease, value, prev_rev)
    if not live:
        raise LookupError(key)
    assert prev is not None
    if op == "update":
        return (key, 0, 0, prev.create_rev, prev.id, lease, value, prev.id)
    if op == "delete":
        return (key, 0, 1, prev.create_rev, prev.id, 0, None, prev.id)
    raise ValueError(op)


@dataclass(frozen=True)
class Gap:
    revision: int  # the missing id
    since: float  # when it was first seen


def poll_step(last: int, ids: list[int], gap: Gap | None, now: float,
              wait: float = FILL_WAIT) -> tuple[int, int | None, Gap | None]:
    """One poll of the rows after `last` (their ids, ascending).

    Returns (new last revision, id to fill or None, gap being waited for). Revisions are
    taken strictly in sequence; a missing id stops the poll; once the same id has been
    missing for `wait` seconds it is returned to be filled.
    """
    for i in ids:
        want = last + 1
        if i != want:
            if gap is None or gap.revision != want:
                return last, None, Gap(want, now)
            if now - gap.since >= wait:
                return last, want, gap
            return last, None, gap
        last = i
    return last, None, None


def range_end(prefix: str) -> str:
    """etcd-style end of a prefix range: the prefix with its last character + 1."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


# ------------------------------------------------------------------ SQL
def _row(r: tuple) -> Row:
    return Row(int(r[0]), r[1], int(r[2] or 0), int(r[3] or 0), int(r[4] or 0),
               int(r[5] or 0), int(r[6] or 0), r[7])


def client_tls(files: dict[str, str] | None) -> dict[str, Any] | None:
    """pymysql's ssl= from --datastore-cafile/-certfile/-keyfile, as kine builds its TLS
    config (pkg/tls, registered with go-sql-driver as "kine"): the server certificate is
    verified against the CA under the endpoint's host name; a client certificate is sent
    when given. None: no TLS (kine registers none when no file is given)."""
    if not files:
        return None
    out: dict[str, Any] = {"check_hostname": "ca" in files}
    out.update({k: v for k, v in files.items() if k in ("ca", "cert", "key")})
    return out


def tls_connection() -> Any:
    """pymysql's Connection refusing, before authenticating, a server that offers no TLS
    when TLS was asked for (go-sql-driver: "TLS requested but server does not support
    TLS"); plain pymysql would carry on in clear."""
    import pymysql
    from pymysql.constants import CLIENT

    class TlsRequired(pymysql.connections.Connection):  # type: ignore[misc]
        def _request_authentication(self) -> None:
            if self.ssl and not self.server_capabilities & CLIENT.SSL:
                raise pymysql.err.OperationalError(
                    2026, "TLS requested but server does not support TLS")
            super()._request_authentication()
    return TlsRequired


class Kine:
    """One MySQL connection behind a lock (the stand-in's load is a few queries a second).

    Any failure closes the connection (the next call reconnects) and raises
    DatastoreError; 1062 raises KeyExists. Timeouts are short so that a dead datastore
    is seen within seconds.
    """

    def __init__(self, dsn: Any, ssl: dict[str, str] | None = None, timeout: int = 2):
        self.dsn, self.ssl, self.timeout = dsn, ssl, timeout
        self._conn: Any = None
        self._lock = threading.Lock()

    def _connect(self, database: str | None) -> Any:
        d, ssl = self.dsn, client_tls(self.ssl)
        # no CA/cert given: plain, as kine registers no TLS config then (recent pymysql
        # would otherwise try TLS on its own, and the check below refuse a plain server)
        return tls_connection()(
            host=d.host, port=d.port, user=d.user, password=d.password, database=database,
            unix_socket=d.unix_socket, ssl=ssl, ssl_disabled=ssl is None, autocommit=True,
            connect_timeout=self.timeout, read_timeout=self.timeout,
            write_timeout=self.timeout, charset="utf8mb4")

    def _run(self, fn: Any) -> Any:
        import pymysql

        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect(self.dsn.database)
                with self._conn.cursor() as cur:
                    return fn(cur)
            except pymysql.err.IntegrityError as e:
                if e.args and e.args[0] == DUPLICATE_KEY:
                    raise KeyExists(f"key exists ({e.args[1]})") from None
                self._drop()
                raise DatastoreError(str(e)) from None
            except (pymysql.err.Error, OSError) as e:
                self._drop()
                raise DatastoreError(f"{type(e).__name__}: {e}") from None

    def _drop(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:  # noqa: BLE001,S110 - a broken connection may fail to close
            pass
        self._conn = None

    def setup(self) -> None:
        """Create the database if missing, then the table and its indexes (as kine)."""
        import pymysql

        try:
            conn = self._connect(None)
            with conn.cursor() as cur:
                name = self.dsn.database.replace("`", "")
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")
            conn.close()
        except (pymysql.err.Error, OSError) as e:
            raise DatastoreError(f"{type(e).__name__}: {e}") from None

        def create(cur: Any) -> None:
            cur.execute("SELECT 1 FROM information_schema.TABLES WHERE table_schema = DATABASE() "
                        "AND table_name = 'kine'")
            if cur.fetchone():
                return
            for stmt in SCHEMA:
                try:
                    cur.execute(stmt)
                except pymysql.err.OperationalError as e:
                    if e.args[0] != 1061:  # duplicate index name: already there
                        raise
        self._run(create)

    def get(self, key: str) -> Row | None:
        """The key's latest row (deleted rows included: callers look at .deleted)."""
        def q(cur: Any) -> Row | None:
            cur.execute(GET, (key,))
            r = cur.fetchone()
            return _row(r) if r else None
        return self._run(q)

    def list(self, prefix: str) -> list[Row]:
        def q(cur: Any) -> list[Row]:
            cur.execute(LIST, (prefix, range_end(prefix)))
            return [_row(r) for r in cur.fetchall()]
        return self._run(q)

    def write(self, op: str, key: str, value: bytes | None, prev: Row | None,
              lease: int = 0) -> int:
        """Append a create/update/delete; returns the new revision (the insert id)."""
        args = write_row(op, key, value, prev, lease)

        def q(cur: Any) -> int:
            cur.execute(INSERT, args)
            return int(cur.lastrowid)
        return self._run(q)

    def put(self, key: str, value: bytes) -> int:
        """Create or update from the latest row (a stale read surfaces as KeyExists)."""
        prev = self.get(key)
        op = "update" if prev is not None and not prev.deleted else "create"
        return self.write(op, key, value, prev)

    def delete(self, key: str) -> bool:
        prev = self.get(key)
        if prev is None or prev.deleted:
            return False
        self.write("delete", key, None, prev)
        return True

    def after(self, revision: int, limit: int = 500) -> list[int]:
        def q(cur: Any) -> list[int]:
            cur.execute(AFTER, (revision, limit))
            return [int(r[0]) for r in cur.fetchall()]
        return self._run(q)

    def current_revision(self) -> int:
        def q(cur: Any) -> int:
            cur.execute("SELECT MAX(id) FROM kine")
            r = cur.fetchone()
            return int(r[0] or 0)
        return self._run(q)

    def fill(self, revision: int) -> None:
        self._run(lambda cur: cur.execute(FILL, (revision, f"gap-{revision}")))

    def compact(self, revision: int) -> int:
        return self._run(lambda cur: cur.execute(COMPACT, (revision, revision)))


class Poller:
    """kine's poll loop, reduced: follow the revisions, fill gaps, record success times."""

    def __init__(self, kine: Kine, log: Any):
        self.kine, self.log = kine, log
        self.last = 0
        self.gap: Gap | None = None
        self.last_ok = time.monotonic()

    def start(self) -> None:
        self.last = self.kine.current_revision()
        self.last_ok = time.monotonic()

    def step(self) -> None:
        ids = self.kine.after(self.last)
        self.last_ok = time.monotonic()
        self.last, fill, self.gap = poll_step(self.last, ids, self.gap, time.time())
        if fill is not None:
            try:
                self.kine.fill(fill)
                self.log.info("filled revision gap %d", fill)
            except KeyExists:
                pass  # the row showed up meanwhile
