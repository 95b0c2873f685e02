"""SQL per dialect (MySQL 8.0 / 8.4 / 9, MariaDB 10.x / 11). Pure: no I/O.

Every statement the `db` namespace sends is built here from a `Dialect` (flavor + version),
so the syntax differences are in one place and unit-tested against golden files:
CHANGE MASTER TO vs CHANGE REPLICATION SOURCE TO (MySQL 8.0.23+), START SLAVE vs START
REPLICA, SHOW MASTER STATUS vs SHOW BINARY LOG STATUS (MySQL 8.2+), semi-sync plugin and
variable names (MySQL 8.0.26 renamed them; MariaDB has them built in), FLUSH HOSTS vs
TRUNCATE performance_schema.host_cache, and the mysql_native_password rules for the HAProxy
check user. The parsers of what these statements return are in tasks/facts/mysql.py.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from ..core.errors import InputError

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
ADMIN_USER = "k3sha_admin"
ADMIN_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Dialect:
    flavor: str  # "mysql" | "mariadb"
    version: tuple[int, int, int]

    @property
    def mariadb(self) -> bool:
        return self.flavor == "mariadb"

    def mysql_at_least(self, *v: int) -> bool:
        return not self.mariadb and self.version >= v

    @property
    def source_syntax(self) -> bool:
        """CHANGE REPLICATION SOURCE TO / SOURCE_* options (MySQL 8.0.23+)."""
        return self.mysql_at_least(8, 0, 23)

    @property
    def replica_word(self) -> str:
        """START/STOP/SHOW ... REPLICA (MySQL 8.0.22+, MariaDB 10.5.1+) or SLAVE."""
        if self.mariadb:
            return "REPLICA" if self.version >= (10, 5, 1) else "SLAVE"
        return "REPLICA" if self.version >= (8, 0, 22) else "SLAVE"

    @property
    def semi_sync_new_names(self) -> bool:
        """rpl_semi_sync_source/replica (MySQL 8.0.26+) instead of master/slave."""
        return self.mysql_at_least(8, 0, 26)

    def __str__(self) -> str:
        return f"{'MariaDB' if self.mariadb else 'MySQL'} {'.'.join(map(str, self.version))}"


def parse_version(text: str) -> Dialect:
    """Dialect from `SELECT VERSION()`, e.g. '10.11.6-MariaDB-0+deb12u1' or '8.0.36-0ubuntu0'."""
    m = re.match(r"^\s*(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise InputError(f"cannot read a server version from {text!r}")
    ver = (int(m[1]), int(m[2]), int(m[3]))
    return Dialect("mariadb" if "mariadb" in text.lower() else "mysql", ver)


# ------------------------------------------------------------------ quoting
def lit(value: str | int) -> str:
    """An SQL string literal (default sql_mode: backslash escapes on)."""
    if isinstance(value, int):
        return str(value)
    out = value.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0")
    return "'" + out.replace("\n", "\\n").replace("\r", "\\r").replace("\x1a", "\\Z") + "'"


def ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def account(user: str, host: str) -> str:
    return f"{lit(user)}@{lit(host)}"


# ------------------------------------------------------------------ replication
def change_source(d: Dialect, *, own_domain: int = 0, host: str | None = None,
                  port: int | None = None,
                  user: str | None = None, password: str | None = None,
                  log_file: str | None = None, log_pos: int | None = None,
                  gtid: bool = False, tls_ca: str | None = None) -> str:
    """CHANGE MASTER TO / CHANGE REPLICATION SOURCE TO with only the options given.

    Giving host or port makes the server forget its old coordinates, so a re-run that
    only repairs credentials passes user/password alone. tls_ca: None leaves TLS as it
    is, "" turns it off, a path turns it on verifying the source's certificate.
    """
    src = d.source_syntax
    p = "SOURCE_" if src else "MASTER_"
    opts: list[str] = []
    if host is not None:
        opts.append(f"{p}HOST={lit(host)}")
    if port is not None:
        opts.append(f"{p}PORT={int(port)}")
    if user is not None:
        opts.append(f"{p}USER={lit(user)}")
    if password is not None:
        opts.append(f"{p}PASSWORD={lit(password)}")
    if gtid:
        opts.append("MASTER_USE_GTID=slave_pos" if d.mariadb else f"{p}AUTO_POSITION=1")
        if d.mariadb and own_domain:
            # a node never needs its own domain back from its peer; asking for it made an
            # old writer's IO thread stop on 1236 after a partition ([lab] dbfailover)
            opts.append(f"IGNORE_DOMAIN_IDS=({int(own_domain)})")
    elif log_file is not None:
        opts.append(f"{p}LOG_FILE={lit(log_file)}")
        opts.append(f"{p}LOG_POS={int(log_pos or 4)}")
    if host is not None or gtid:
        # notice a dead or returning source in seconds, not the 60 s defaults
        opts += [f"{p}CONNECT_RETRY=1", f"{p}HEARTBEAT_PERIOD=1"]
    if tls_ca is not None:
        opts += source_tls_options(d, tls_ca)
    if host is not None and not d.mariadb:
        # caching_sha2_password without TLS needs the source's RSA key (MySQL only)
        opts.append("GET_SOURCE_PUBLIC_KEY=1" if src else "GET_MASTER_PUBLIC_KEY=1")
    verb = "CHANGE REPLICATION SOURCE TO" if src else "CHANGE MASTER TO"
    return f"{verb} " + ", ".join(opts)


def source_tls_options(d: Dialect, ca: str) -> list[str]:
    """The replica's TLS options: on with the CA and a verified source certificate, or off."""
    p = "SOURCE_" if d.source_syntax else "MASTER_"
    if not ca:
        return [f"{p}SSL=0"]
    return [f"{p}SSL=1", f"{p}SSL_CA={lit(ca)}", f"{p}SSL_VERIFY_SERVER_CERT=1"]


def gtid_executed_var(d: Dialect) -> str:
    """The server's executed GTIDs: MariaDB's binlog position per domain, MySQL's set."""
    return "@@GLOBAL.gtid_binlog_pos" if d.mariadb else "@@GLOBAL.gtid_executed"


def binlog_gtid_pos() -> str:
    """MariaDB: the GTID position of (file, pos) in this server's binlog."""
    return "SELECT BINLOG_GTID_POS(%s, %s) AS g"


def start_replica(d: Dialect, thread: str = "") -> str:
    return f"START {d.replica_word}{' ' + thread if thread else ''}"


def stop_replica(d: Dialect, thread: str = "") -> str:
    return f"STOP {d.replica_word}{' ' + thread if thread else ''}"


def show_replica_status(d: Dialect) -> str:
    return f"SHOW {d.replica_word} STATUS"


def show_binlog_status(d: Dialect) -> str:
    if d.mariadb:
        return "SHOW MASTER STATUS"  # [lab] SHOW BINARY LOG STATUS is a syntax error
    return "SHOW BINARY LOG STATUS" if d.version >= (8, 2, 0) else "SHOW MASTER STATUS"


def dump_command(d: Dialect, databases: list[str], gtid: bool = False) -> str:
    """A consistent dump of `databases` with the source coordinates as a comment."""
    if d.mariadb:
        tool = "mariadb-dump" if d.version >= (10, 5, 0) else "mysqldump"
        coords = "--master-data=2" + (" --gtid" if gtid else "")
    else:
        tool = "mysqldump"
        coords = "--source-data=2" if d.mysql_at_least(8, 0, 26) else "--master-data=2"
    dbs = " ".join(shlex.quote(x) for x in databases)
    return (f"{tool} --single-transaction {coords} --routines --events --triggers "
            f"--databases {dbs}")


_DUMP_COORDS = re.compile(
    r"CHANGE (?:MASTER|REPLICATION SOURCE) TO (?:MASTER|SOURCE)_LOG_FILE='([^']+)',\s*"
    r"(?:MASTER|SOURCE)_LOG_POS=(\d+)")


def parse_dump_coords(head: str) -> tuple[str, int] | None:
    """(file, pos) from the commented CHANGE ... TO line a dump with --*-data=2 starts with."""
    m = _DUMP_COORDS.search(head)
    return (m[1], int(m[2])) if m else None


# ------------------------------------------------------------------ semi-sync
def semi_sync_plugins(d: Dialect) -> list[tuple[str, str]]:
    """(plugin name, library) to INSTALL PLUGIN; MariaDB 10.3.3+ has semi-sync built in."""
    if d.mariadb and d.version >= (10, 3, 3):
        return []
    if d.semi_sync_new_names:
        return [("rpl_semi_sync_source", "semisync_source.so"),
                ("rpl_semi_sync_replica", "semisync_replica.so")]
    return [("rpl_semi_sync_master", "semisync_master.so"),
            ("rpl_semi_sync_slave", "semisync_slave.so")]


def install_plugin(name: str, library: str) -> str:
    return f"INSTALL PLUGIN {name} SONAME {lit(library)}"


def semi_sync_names(d: Dialect) -> dict[str, str]:
    """Role -> variable/status name for this dialect."""
    s, r = ("source", "replica") if d.semi_sync_new_names else ("master", "slave")
    return {
        "source_enabled": f"rpl_semi_sync_{s}_enabled",
        "replica_enabled": f"rpl_semi_sync_{r}_enabled",
        "timeout": f"rpl_semi_sync_{s}_timeout",
        "wait_point": f"rpl_semi_sync_{s}_wait_point",
        "source_status": f"Rpl_semi_sync_{s}_status",
        "replica_status": f"Rpl_semi_sync_{r}_status",
        "clients": f"Rpl_semi_sync_{s}_clients",
        "no_tx": f"Rpl_semi_sync_{s}_no_tx",
        "wait_no_replica": f"rpl_semi_sync_{s}_wait_no_{r}",
    }


def semi_sync_settings(d: Dialect, timeout_ms: int) -> dict[str, str]:
    """Variable -> value, both directions on: lossless (AFTER_SYNC)."""
    n = semi_sync_names(d)
    return {n["source_enabled"]: "ON", n["replica_enabled"]: "ON",
            n["timeout"]: str(int(timeout_ms)), n["wait_point"]: "AFTER_SYNC",
            # no replica connected (the peer is gone, its dump thread killed by the health
            # daemon): commit at once instead of waiting out the timeout
            n["wait_no_replica"]: "OFF"}


def set_global(name: str, value: str) -> str:
    v = value if re.fullmatch(r"[A-Z_]+|\d+", value) else lit(value)
    return f"SET GLOBAL {name} = {v}"


def semi_sync_config_lines(d: Dialect, timeout_ms: int) -> list[str]:
    """my.cnf lines that keep semi-sync on across restarts."""
    lines = [f"plugin_load_add = {lib}" for _, lib in semi_sync_plugins(d)]
    pre = "" if d.mariadb else "loose_"  # MySQL: plugin variables before the plugin loads
    lines += [f"{pre}{k} = {v}" for k, v in semi_sync_settings(d, timeout_ms).items()]
    return lines


# ------------------------------------------------------------------ server config
def server_config(d: Dialect, *, server_id: int, bind_address: str, port: int,
                  semi_sync: bool, timeout_ms: int, gtid: bool,
                  health_check: str = "mysql-check", auto_increment_increment: int = 1,
                  auto_increment_offset: int = 1, tls_files: tuple[str, str, str] | None = None,
                  proxy_networks: tuple[str, ...] = ()) -> dict[str, Any]:
    """Values for files/db-k3s-ha.cnf.j2 (option names per dialect)."""
    if auto_increment_increment != 1 or auto_increment_offset != 1:
        raise InputError("auto_increment_increment and _offset must be 1: kine needs ids "
                         "strictly +1 from a single writer")
    extra: list[str] = []
    if health_check == "mysql-check" and (8, 4, 0) <= d.version < (9, 0, 0) and not d.mariadb:
        extra += ["# HAProxy mysql-check needs it; off by default in 8.4",
                  "mysql_native_password = ON"]
    if gtid:
        extra += ([f"gtid_domain_id = {server_id}", "gtid_strict_mode = ON"] if d.mariadb
                  else ["gtid_mode = ON", "enforce_gtid_consistency = ON"])
    extra += tls_config_lines(tls_files) + proxy_config_lines(d, proxy_networks)
    if health_check == "http":
        extra += ["# writes only where the health daemon (fab db.health) allows them: a node",
                  "# that restarts comes back read-only, never as a second writer",
                  "read_only = ON"]
    net = "replica_net_timeout" if d.mysql_at_least(8, 0, 26) else "slave_net_timeout"
    extra += ["# a replica notices a silent source in seconds (heartbeat 1 s)", f"{net} = 4"]
    return {
        "server_id": server_id, "bind_address": bind_address, "port": port,
        "log_updates": "log_replica_updates" if d.mysql_at_least(8, 0, 26)
        else "log_slave_updates",
        "semi_sync": semi_sync_config_lines(d, timeout_ms) if semi_sync else [],
        "extra": extra, "flavor": str(d),
    }


def tls_config_lines(files: tuple[str, str, str] | None) -> list[str]:
    """(ca, cert, key) paths -> my.cnf lines; clients may use TLS, accounts decide."""
    if files is None:
        return []
    ca, cert, key = files
    return ["# TLS with the k3s-ha CA (fab db.configure issues the certificate)",
            f"ssl_ca                   = {ca}", f"ssl_cert                 = {cert}",
            f"ssl_key                  = {key}"]


def proxy_config_lines(d: Dialect, networks: tuple[str, ...]) -> list[str]:
    """MariaDB: accept a PROXY protocol header (the client's real address) from these."""
    if not networks:
        return []
    if not d.mariadb:
        raise InputError(f"db.proxy_protocol: {d} has no PROXY protocol support. Fix: set "
                         "[db] proxy_protocol = false (the k3s user is then granted to the "
                         "datastore balancers' addresses)")
    return ["# the datastore balancers send the client's address (HAProxy send-proxy-v2)",
            f"proxy_protocol_networks  = {','.join(networks)}"]


# ------------------------------------------------------------------ users
def create_user(d: Dialect, user: str, host: str, password: str | None = None,
                plugin: str | None = None) -> str:
    """CREATE USER IF NOT EXISTS; no password = an empty one (the HAProxy check user)."""
    s = f"CREATE USER IF NOT EXISTS {account(user, host)}"
    if plugin and password is not None:
        return s + f" IDENTIFIED WITH {plugin} BY {lit(password)}"
    if plugin:
        return s + f" IDENTIFIED WITH {plugin}"
    if password is not None:
        return s + f" IDENTIFIED BY {lit(password)}"
    return s


def alter_password(d: Dialect, user: str, host: str, password: str) -> str:
    return f"ALTER USER {account(user, host)} IDENTIFIED BY {lit(password)}"


def require_ssl(user: str, host: str, on: bool) -> str:
    return f"ALTER USER {account(user, host)} REQUIRE {'SSL' if on else 'NONE'}"


def drop_user(user: str, host: str) -> str:
    return f"DROP USER IF EXISTS {account(user, host)}"


def grant(privs: str, on: str, user: str, host: str, grant_option: bool = False) -> str:
    return f"GRANT {privs} ON {on} TO {account(user, host)}" + (
        " WITH GRANT OPTION" if grant_option else "")


def check_user_plugin(d: Dialect) -> str | None:
    """Auth plugin for the password-less HAProxy `mysql-check` user, or raise when impossible."""
    if d.mariadb:
        return None  # default mysql_native_password; HAProxy's login works [lab]
    if d.version >= (9, 0, 0):
        raise InputError(f"{d} removed mysql_native_password, so HAProxy's mysql-check cannot "
                         "log in. Fix: set db.health_check = \"http\" (replication-aware "
                         "endpoint on each db host)")
    return "mysql_native_password"


def check_user_caveat(d: Dialect) -> str | None:
    if not d.mariadb and d.version >= (8, 4, 0):
        return (f"{d}: mysql_native_password is disabled by default; mysql-check needs "
                "mysql_native_password=ON (db.configure sets it while db.health_check is "
                "mysql-check); db.health_check = \"http\" avoids it")
    return None


def check_user_sql(d: Dialect, user: str, hosts: list[str]) -> list[str]:
    """The HAProxy check user on each balancer address: can log in, nothing else."""
    plugin = check_user_plugin(d)
    return [create_user(d, user, h, plugin=plugin) for h in hosts]


def replication_user_sql(d: Dialect, user: str, peer: str, password: str,
                         tls: bool = False) -> list[str]:
    return [create_user(d, user, peer, password), alter_password(d, user, peer, password),
            require_ssl(user, peer, tls), grant("REPLICATION SLAVE", "*.*", user, peer)]


def app_user_sql(d: Dialect, database: str, user: str, hosts: list[str], password: str,
                 tls: bool = False) -> list[str]:
    out = [f"CREATE DATABASE IF NOT EXISTS {ident(database)}"]
    for h in hosts:
        out += [create_user(d, user, h, password), alter_password(d, user, h, password),
                require_ssl(user, h, tls), grant("ALL PRIVILEGES", f"{ident(database)}.*",
                                                 user, h)]
    return out


def admin_user_sql(d: Dialect, password: str) -> list[str]:
    """Run once per node as root over the local socket, SQL on stdin, not binlogged."""
    out = ["SET SESSION sql_log_bin = 0"]
    for h in ADMIN_HOSTS:
        out += [create_user(d, ADMIN_USER, h, password),
                grant("ALL PRIVILEGES", "*.*", ADMIN_USER, h, grant_option=True)]
    return out


def flush_hosts(d: Dialect) -> str:
    """This node's host cache only: LOCAL keeps it out of the binlog (a binlogged FLUSH
    waits the semi-sync timeout when the peer is down)."""
    if not d.mariadb and d.version >= (8, 0, 23):
        return "TRUNCATE TABLE performance_schema.host_cache"
    return "FLUSH LOCAL HOSTS"


# ------------------------------------------------------------------ secure installation
SECURE_FIND = ("SELECT User, Host FROM mysql.user WHERE User = '' OR (User = 'root' AND Host "
               "NOT IN ('localhost', '127.0.0.1', '::1')) ORDER BY User, Host")
SECURE_TEST_DB = ("SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE "
                  "SCHEMA_NAME = 'test') + (SELECT COUNT(*) FROM mysql.db WHERE Db = 'test' "
                  "OR Db = 'test\\\\_%')")


def secure_sql(users_to_drop: list[tuple[str, str]], drop_test: bool) -> list[str]:
    """What mysql_secure_installation does, for this node only (sql_log_bin=0).

    root@localhost is left alone: the distro's socket login keeps working.
    """
    out = ["SET SESSION sql_log_bin = 0"] + [drop_user(u, h) for u, h in users_to_drop]
    if drop_test:
        out += ["DROP DATABASE IF EXISTS test",
                "DELETE FROM mysql.db WHERE Db = 'test' OR Db = 'test\\\\_%'"]
    return out + ["FLUSH PRIVILEGES"]
