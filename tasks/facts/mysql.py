"""MySQL/MariaDB as the server itself reports it: read-only probes and pure parsers.

Replication status (either column spelling: Slave_*/Master_* and Replica_*/Source_*),
binlog position, semi-sync state, read_only, version and table checksums. Used by
`db.status`, by db.replicate's plan and waits, and by the failover drill. Probes take a
session with `.q(sql, args)` and `.d` (its Dialect), e.g. tasks.db.session.Node.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping, Protocol

from fabric import Connection

from ..core.errors import StepFailed
from ..core.run import poll
from ..core.ssh import sh
from ..db import sql


class Queryable(Protocol):
    d: sql.Dialect

    def q(self, stmt: str, args: Any = None) -> list[dict[str, Any]]: ...


# ------------------------------------------------------------------ pure parsers
@dataclass(frozen=True)
class ReplicaStatus:
    configured: bool
    source_host: str = ""
    source_port: int = 0
    source_user: str = ""
    io_running: str = ""  # Yes | No | Connecting
    sql_running: str = ""
    lag: int | None = None
    last_io_errno: int = 0
    last_io_error: str = ""
    last_sql_errno: int = 0
    last_sql_error: str = ""
    source_log_file: str = ""
    read_pos: int = 0
    exec_pos: int = 0
    relay_source_log_file: str = ""
    gtid_pos: str = ""
    state: str = ""
    using_gtid: bool = False  # MariaDB Using_Gtid Slave_Pos/Current_Pos, MySQL Auto_Position 1

    @property
    def healthy(self) -> bool:
        return (self.configured and self.io_running == "Yes" and self.sql_running == "Yes"
                and not self.last_io_errno and not self.last_sql_errno)

    @property
    def drained(self) -> bool:
        """Everything received has been applied."""
        return (self.relay_source_log_file == self.source_log_file
                and self.exec_pos == self.read_pos)

    def describe(self) -> str:
        s = f"IO={self.io_running or '-'} SQL={self.sql_running or '-'}"
        if self.last_io_errno:
            s += f", IO error {self.last_io_errno}: {self.last_io_error}"
        if self.last_sql_errno:
            s += f", SQL error {self.last_sql_errno}: {self.last_sql_error}"
        return s


def _pick(row: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if n in row:
            return row[n]
    return None


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def parse_replica_status(rows: list[Mapping[str, Any]]) -> ReplicaStatus:
    """SHOW SLAVE/REPLICA STATUS (first channel), either spelling; no rows = not configured."""
    if not rows:
        return ReplicaStatus(configured=False)
    r = rows[0]

    def g(suffix: str, legacy: str, new: str) -> Any:
        return _pick(r, legacy + suffix, new + suffix)

    lag = g("", "Seconds_Behind_Master", "Seconds_Behind_Source")
    host = str(g("_Host", "Master", "Source") or "")
    return ReplicaStatus(
        configured=bool(host),
        source_host=host,
        source_port=_int(g("_Port", "Master", "Source")),
        source_user=str(g("_User", "Master", "Source") or ""),
        io_running=str(g("_IO_Running", "Slave", "Replica") or ""),
        sql_running=str(g("_SQL_Running", "Slave", "Replica") or ""),
        lag=None if lag in (None, "", "NULL") else int(lag),
        last_io_errno=_int(r.get("Last_IO_Errno")),
        last_io_error=str(r.get("Last_IO_Error") or ""),
        last_sql_errno=_int(r.get("Last_SQL_Errno")),
        last_sql_error=str(r.get("Last_SQL_Error") or ""),
        source_log_file=str(g("_Log_File", "Master", "Source") or ""),
        read_pos=_int(g("_Log_Pos", "Read_Master", "Read_Source")),
        exec_pos=_int(g("_Log_Pos", "Exec_Master", "Exec_Source")),
        relay_source_log_file=str(g("_Log_File", "Relay_Master", "Relay_Source") or ""),
        gtid_pos=str(_pick(r, "Gtid_IO_Pos", "Executed_Gtid_Set") or ""),
        state=str(g("_State", "Slave_IO", "Replica_IO") or ""),
        using_gtid=str(_pick(r, "Using_Gtid", "Auto_Position") or "No") not in ("No", "0"),
    )


def parse_binlog_status(rows: list[Mapping[str, Any]]) -> tuple[str, int] | None:
    """(File, Position) from SHOW MASTER STATUS / SHOW BINARY LOG STATUS; None = binlog off."""
    if not rows or not rows[0].get("File"):
        return None
    return str(rows[0]["File"]), int(rows[0]["Position"])


def parse_text_status(text: str) -> list[dict[str, str]]:
    """The `\\G` (vertical) or batch (tab-separated, header line) output of the mysql client."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    if lines[0].lstrip().startswith("*" * 5):
        rows: list[dict[str, str]] = []
        for ln in lines:
            if ln.lstrip().startswith("*" * 5):
                rows.append({})
            elif ":" in ln and rows:
                k, _, v = ln.partition(":")
                rows[-1][k.strip()] = v.strip()
        return rows
    head = lines[0].split("\t")
    return [dict(zip(head, ln.split("\t"))) for ln in lines[1:]]


@dataclass(frozen=True)
class SemiSync:
    source_on: bool       # the source side is waiting for acks (not fallen back to async)
    clients: str          # replicas acknowledging, "?" when not reported


def parse_semi_sync(rows: list[Mapping[str, Any]], d: sql.Dialect) -> SemiSync:
    """SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%' rows, either naming."""
    names = sql.semi_sync_names(d)
    st = {str(x["Variable_name"]): str(x["Value"]) for x in rows}
    return SemiSync(source_on=st.get(names["source_status"]) == "ON",
                    clients=st.get(names["clients"], "?"))


def parse_gtid_pos(text: str) -> dict[int, int]:
    """MariaDB gtid_binlog_pos '0-1-5,1-1-9,2-2-3' -> {domain: last seq} (pure)."""
    out: dict[int, int] = {}
    for g in (text or "").replace("\n", "").split(","):
        parts = g.strip().split("-")
        if len(parts) == 3 and all(x.isdigit() for x in parts):
            out[int(parts[0])] = max(out.get(int(parts[0]), 0), int(parts[2]))
    return out


def gtids_lacking(mine: str, theirs: str) -> str:
    """The GTIDs ('domain-seq', per domain the last) `mine` holds that `theirs` lacks;
    '' when `mine` is a subset (pure, MariaDB's per-domain positions)."""
    a, b = parse_gtid_pos(mine), parse_gtid_pos(theirs)
    return ",".join(f"{d}-{s}" for d, s in sorted(a.items()) if s > b.get(d, 0))


def with_own_domains(pos: str, own: str) -> str:
    """MariaDB: a replica's gtid_slave_pos `pos` (from its source's binlog) completed with
    the domains only its own binlog holds (pure). MariaDB refuses a slave position that
    names no value for a domain in the node's binlog ([lab] adopting a guide pair: db-01
    restarted with its own domain and wrote while db-02 had not replicated it yet). The
    replica ignores its own domain, so its own last GTID there is the right value."""
    have = {g.strip().split("-")[0] for g in pos.split(",") if g.strip()}
    extra = [g.strip() for g in own.replace("\n", "").split(",")
             if g.strip() and g.strip().split("-")[0] not in have]
    return ",".join([g.strip() for g in pos.split(",") if g.strip()] + extra)


class Divergence(Enum):
    SAME = "same"
    A_AHEAD = "a ahead"      # b lacks some of a's: lag, or b is behind
    B_AHEAD = "b ahead"
    DIVERGED = "diverged"    # each holds GTIDs the other lacks: errant transactions


def divergence(a: str, b: str) -> Divergence:
    """How two nodes' executed GTIDs relate (pure)."""
    xa, xb = gtids_lacking(a, b), gtids_lacking(b, a)
    if xa and xb:
        return Divergence.DIVERGED
    return Divergence.A_AHEAD if xa else Divergence.B_AHEAD if xb else Divergence.SAME


# ------------------------------------------------------------------ probes
def writable(conn: Connection) -> bool | None:
    """read_only OFF, asked as root over the local socket (None: mysqld did not answer)."""
    res = sh(conn, "mysql -NBe 'SELECT @@GLOBAL.read_only'", warn=True, write=False,
             timeout=10)
    return res.stdout.strip() == "0" if res.exited == 0 else None


def server_version(conn: Connection, name: str) -> sql.Dialect:
    """Flavor and version, asked as root over the local socket; once per connection (every
    db step of a run asks it; a server that did not answer is asked again)."""
    cached = getattr(conn, "k3s_server_version", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    res = sh(conn, "mysql -NBe 'SELECT VERSION()'", warn=True, write=False)
    if res.exited != 0:
        raise StepFailed(f"{name}: mysqld does not answer on its local socket "
                         f"({(res.stderr or res.stdout).strip()[:200] or 'no output'}). "
                         "Fix: fab db.install, then check `systemctl status mariadb`/`mysql`")
    d = sql.parse_version(res.stdout.strip())
    conn.k3s_server_version = d  # type: ignore[attr-defined]
    return d


def replica_status(s: Queryable) -> ReplicaStatus:
    return parse_replica_status(s.q(sql.show_replica_status(s.d)))


def binlog_position(s: Queryable) -> tuple[str, int] | None:
    return parse_binlog_status(s.q(sql.show_binlog_status(s.d)))


def semi_sync(s: Queryable) -> SemiSync:
    return parse_semi_sync(s.q("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%%'"), s.d)


def executed_gtids(s: Queryable) -> str:
    """MariaDB gtid_binlog_pos / MySQL gtid_executed, as the server reports it."""
    return str(s.q(f"SELECT {sql.gtid_executed_var(s.d)} AS g")[0]["g"] or "")


def errant_vs(s: Queryable, mine: str, theirs: str) -> str:
    """GTIDs this node holds that the peer lacks (MySQL: GTID_SUBTRACT on the server)."""
    if s.d.mariadb:
        return gtids_lacking(mine, theirs)
    return str(s.q("SELECT GTID_SUBTRACT(%s, %s) AS g", (mine, theirs))[0]["g"] or "")


def read_only(s: Queryable) -> bool:
    return bool(s.q("SELECT @@GLOBAL.read_only AS ro")[0]["ro"])


def table_checksums(s: Queryable) -> dict[str, int]:
    """CHECKSUM TABLE of every user table, by `schema`.`table`."""
    rows = s.q("SELECT TABLE_SCHEMA s, TABLE_NAME t FROM information_schema.TABLES WHERE "
               "TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN %s ORDER BY 1, 2",
               (sql.SYSTEM_SCHEMAS,))
    names = [f"{sql.ident(x['s'])}.{sql.ident(x['t'])}" for x in rows]
    if not names:
        return {}
    out = s.q("CHECKSUM TABLE " + ", ".join(names))
    return {name: int(row["Checksum"] or 0) for name, row in zip(names, out)}


def has_rows(s: Queryable, tables: list[str]) -> bool:
    return any(s.q(f"SELECT EXISTS(SELECT 1 FROM {t}) AS x")[0]["x"] for t in tables)


def wait_replica_healthy(s: Queryable, timeout: float = 30) -> ReplicaStatus:
    """The replica status once both threads run without error, or the last one seen."""
    _, rep = poll(lambda: replica_status(s), timeout=timeout, interval=0.5,
                  until=lambda rep: rep.healthy and rep.io_running == "Yes")
    return rep
