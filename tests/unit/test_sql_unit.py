"""Per-dialect SQL against golden files, and the status parsers on both spellings.

Goldens: tests/golden/sql/<dialect>.sql. After a deliberate change, regenerate with
`pytest tests/unit --update-golden` and review the diff against the vendors' documented
syntax (an environment variable can no longer rewrite them behind a run's back).
"""
from pathlib import Path

import pytest

from tasks.core import render
from tasks.db import sql
from tasks.facts import mysql as facts
from tasks.core.errors import InputError

GOLDEN = Path(__file__).parent.parent / "golden" / "sql"
DIALECTS = {
    "mysql-8.0.20": "8.0.20",
    "mysql-8.0.30": "8.0.30-0ubuntu0.20.04.2",
    "mysql-8.4": "8.4.3",
    "mariadb-10.11": "10.11.6-MariaDB-0+deb12u1",
}


def script(d: sql.Dialect) -> str:
    """Every statement kind the db tasks send, for one dialect."""
    out = [f"-- {d}",
           "-- replica, first run from coordinates",
           sql.change_source(d, host="10.0.0.32", port=3306, user="repl", password="pw'x",
                             log_file="mysql-bin.000002", log_pos=869),
           "-- replica with GTID",
           sql.change_source(d, host="10.0.0.32", port=3306, user="repl", password="pw",
                             gtid=True),
           "-- a working file/position replica moved to GTID (same point, no reset)",
           sql.change_source(d, gtid=True),
           "-- GTID: executed set, (MariaDB) position of file:pos",
           f"SELECT {sql.gtid_executed_var(d)}", sql.binlog_gtid_pos(),
           "-- replica with TLS verifying the source; a working replica moved to TLS; off",
           sql.change_source(d, host="10.0.0.32", port=3306, user="repl", password="pw",
                             gtid=True, tls_ca="/etc/k3s-ha/db-tls/ca.crt"),
           sql.change_source(d, tls_ca="/etc/k3s-ha/db-tls/ca.crt"),
           sql.change_source(d, tls_ca=""),
           "-- credentials repair (keeps coordinates)",
           sql.change_source(d, user="repl", password="pw"),
           sql.start_replica(d), sql.stop_replica(d), sql.stop_replica(d, "IO_THREAD"),
           sql.show_replica_status(d), sql.show_binlog_status(d),
           "-- semi-sync"]
    out += [sql.install_plugin(n, lib) for n, lib in sql.semi_sync_plugins(d)]
    out += [sql.set_global(k, v) for k, v in sql.semi_sync_settings(d, 10000).items()]
    out += ["-- semi-sync config lines"] + sql.semi_sync_config_lines(d, 10000)
    out += ["-- users"] + sql.admin_user_sql(d, "adm")
    out += sql.replication_user_sql(d, "repl", "10.0.0.32", "pw")
    out += ["-- TLS only"] + sql.replication_user_sql(d, "repl", "10.0.0.32", "pw", tls=True)
    try:
        out += sql.check_user_sql(d, "haproxy-check", ["10.0.0.21", "10.0.0.22"])
    except InputError as e:
        out.append(f"-- check user refused: {e}")
    out.append(f"-- caveat: {sql.check_user_caveat(d)}")
    out += sql.app_user_sql(d, "k3s", "k3s", ["10.0.0.21"], "k3spw")
    out += ["-- TLS only"] + sql.app_user_sql(d, "k3s", "k3s", ["10.0.0.41"], "k3spw", tls=True)
    out += [sql.flush_hosts(d), "-- secure"]
    out += sql.secure_sql([("", "localhost"), ("root", "%")], True)
    out += ["-- seed", sql.dump_command(d, ["k3s", "app"])]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_sql_matches_golden(name, request):
    d = sql.parse_version(DIALECTS[name])
    got = script(d)
    path = GOLDEN / f"{name}.sql"
    if request.config.getoption("--update-golden"):
        path.write_text(got)
    assert got == path.read_text(), f"{name}: generated SQL differs from {path}"


TLS_FILES = ("/etc/k3s-ha/db-tls/ca.crt", "/etc/k3s-ha/db-tls/server.crt",
             "/etc/k3s-ha/db-tls/server.key")


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_config_matches_golden(name, request):
    """With TLS (every flavour) and PROXY protocol (MariaDB: MySQL has none)."""
    d = sql.parse_version(DIALECTS[name])
    vals = sql.server_config(d, server_id=2, bind_address="0.0.0.0", port=3306,
                             semi_sync=True, timeout_ms=10000, gtid=True, tls_files=TLS_FILES,
                             proxy_networks=("10.0.0.21", "10.0.0.22") if d.mariadb else ())
    got = render.render("db-k3s-ha.cnf.j2", **vals)
    path = GOLDEN / f"{name}.cnf"
    if request.config.getoption("--update-golden"):
        path.write_text(got)
    assert got == path.read_text()


def test_documented_syntax_per_version():
    m8020, m8030, m84, maria = (sql.parse_version(DIALECTS[k]) for k in
                                ("mysql-8.0.20", "mysql-8.0.30", "mysql-8.4", "mariadb-10.11"))
    assert maria.mariadb and maria.version == (10, 11, 6) and not m84.mariadb
    assert sql.change_source(m8020, host="h").startswith("CHANGE MASTER TO MASTER_HOST")
    assert "GET_MASTER_PUBLIC_KEY=1" in sql.change_source(m8020, host="h")
    assert sql.change_source(m8030, host="h").startswith("CHANGE REPLICATION SOURCE TO SOURCE_HOST")
    assert "GET_SOURCE_PUBLIC_KEY=1" in sql.change_source(m84, host="h")
    assert "PUBLIC_KEY" not in sql.change_source(maria, host="h")  # [lab] syntax error
    assert sql.change_source(maria, host="h").startswith("CHANGE MASTER TO")
    assert sql.start_replica(m8020) == "START SLAVE"
    assert sql.start_replica(m84) == sql.start_replica(maria) == "START REPLICA"
    assert sql.show_binlog_status(m8030) == "SHOW MASTER STATUS"
    assert sql.show_binlog_status(m84) == "SHOW BINARY LOG STATUS"
    assert sql.show_binlog_status(maria) == "SHOW MASTER STATUS"
    assert sql.semi_sync_plugins(maria) == []
    assert sql.semi_sync_plugins(m8020)[0] == ("rpl_semi_sync_master", "semisync_master.so")
    assert sql.semi_sync_plugins(m8030)[0] == ("rpl_semi_sync_source", "semisync_source.so")
    assert sql.flush_hosts(maria) == "FLUSH LOCAL HOSTS"  # never binlogged
    assert sql.flush_hosts(m84).startswith("TRUNCATE")
    assert sql.check_user_caveat(m84) and not sql.check_user_caveat(m8030)
    with pytest.raises(InputError, match="health_check"):
        sql.check_user_plugin(sql.parse_version("9.1.0"))


def test_literal_quoting_cannot_break_out():
    assert sql.lit("a'b\\c") == "'a\\'b\\\\c'"
    assert sql.ident("we`ird") == "`we``ird`"
    assert sql.account("haproxy-check", "10.0.0.1") == "'haproxy-check'@'10.0.0.1'"


def test_auto_increment_other_than_one_refused():
    d = sql.parse_version("10.11.6-MariaDB")
    with pytest.raises(InputError, match="kine"):
        sql.server_config(d, server_id=1, bind_address="0.0.0.0", port=3306, semi_sync=False,
                          timeout_ms=1, gtid=False, auto_increment_increment=2)


# ------------------------------------------------------------------ parsers
LEGACY = {  # MariaDB 10.11 SHOW REPLICA STATUS keeps these names [lab]
    "Slave_IO_State": "Waiting for master to send event", "Master_Host": "10.80.0.32",
    "Master_User": "repl", "Master_Port": 3306, "Master_Log_File": "mysql-bin.000003",
    "Read_Master_Log_Pos": 1234, "Relay_Master_Log_File": "mysql-bin.000003",
    "Exec_Master_Log_Pos": 1234, "Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes",
    "Seconds_Behind_Master": 0, "Last_IO_Errno": 0, "Last_IO_Error": "",
    "Last_SQL_Errno": 0, "Last_SQL_Error": "", "Using_Gtid": "No", "Gtid_IO_Pos": "",
}
NEW = {  # MySQL 8.0.22+ SHOW REPLICA STATUS
    "Replica_IO_State": "Waiting for source to send event", "Source_Host": "10.80.0.32",
    "Source_User": "repl", "Source_Port": 3306, "Source_Log_File": "binlog.000003",
    "Read_Source_Log_Pos": 1500, "Relay_Source_Log_File": "binlog.000003",
    "Exec_Source_Log_Pos": 1400, "Replica_IO_Running": "Yes", "Replica_SQL_Running": "No",
    "Seconds_Behind_Source": None, "Last_IO_Errno": 0, "Last_IO_Error": "",
    "Last_SQL_Errno": 1062, "Last_SQL_Error": "Duplicate entry '7' for key 'PRIMARY'",
    "Executed_Gtid_Set": "",
}


def test_parser_legacy_spelling_healthy():
    s = facts.parse_replica_status([LEGACY])
    assert s.configured and s.healthy and s.drained
    assert (s.source_host, s.source_user, s.source_port, s.lag) == ("10.80.0.32", "repl", 3306, 0)
    assert s.state.startswith("Waiting")


def test_parser_new_spelling_in_error():
    s = facts.parse_replica_status([NEW])
    assert s.configured and not s.healthy and not s.drained
    assert s.sql_running == "No" and s.last_sql_errno == 1062 and s.lag is None
    assert (s.read_pos, s.exec_pos, s.source_log_file) == (1500, 1400, "binlog.000003")
    assert "SQL error 1062" in s.describe()


def test_parser_not_configured_and_text_outputs():
    assert not facts.parse_replica_status([]).configured
    vertical = ("*************************** 1. row ***************************\n"
                "             Slave_IO_State: Connecting to master\n"
                "                Master_Host: 10.80.0.31\n"
                "           Slave_IO_Running: Connecting\n"
                "          Slave_SQL_Running: Yes\n"
                "              Last_IO_Errno: 2003\n"
                "              Last_IO_Error: error connecting to master\n")
    s = facts.parse_replica_status(facts.parse_text_status(vertical))
    assert s.io_running == "Connecting" and s.last_io_errno == 2003 and not s.healthy
    batch = "Replica_IO_Running\tReplica_SQL_Running\tSource_Host\nYes\tYes\th1\n"
    s = facts.parse_replica_status(facts.parse_text_status(batch))
    assert (s.io_running, s.sql_running, s.source_host) == ("Yes", "Yes", "h1")


def test_binlog_and_dump_coords():
    assert facts.parse_binlog_status([{"File": "mysql-bin.000002", "Position": 869}]) == (
        "mysql-bin.000002", 869)
    assert facts.parse_binlog_status([]) is None
    maria = "-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000004', MASTER_LOG_POS=342;\n"
    mysql = "-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000009', SOURCE_LOG_POS=157;"
    assert sql.parse_dump_coords(maria) == ("mysql-bin.000004", 342)
    assert sql.parse_dump_coords(mysql) == ("binlog.000009", 157)
    assert sql.parse_dump_coords("-- nothing") is None


def test_health_script_renders_valid_python_answering_only_the_balancers():
    import ast
    from pathlib import Path

    from tasks.core import inventory
    from tasks.db import health as db
    inv = inventory.load(Path(__file__).resolve().parents[2] / "hosts.toml")
    h = inv.host("k3s-db-01")
    allowed = db.health_allowed(inv, h)
    peer = inv.host("k3s-db-02")
    assert set(allowed) == {"127.0.0.1", h.address, peer.address} | {
        b.address for b in inv.with_role("db-balancer")}
    assert not {x.address for x in inv.with_role("k3s-server")} & set(allowed)
    text = db.health_script(inv, h, sql.parse_version("10.11.6-MariaDB"))
    tree = ast.parse(text)
    consts = {t.targets[0].id: ast.literal_eval(t.value) for t in tree.body
              if isinstance(t, ast.Assign) and isinstance(t.targets[0], ast.Name)
              and t.targets[0].id in ("ALLOWED", "PORT")}
    assert consts == {"ALLOWED": allowed, "PORT": 9200}
    assert "if addr not in ALLOWED" in text


def test_proxy_protocol_refused_on_mysql_and_absent_when_off():
    m84 = sql.parse_version(DIALECTS["mysql-8.4"])
    with pytest.raises(InputError, match="proxy_protocol = false"):
        sql.server_config(m84, server_id=1, bind_address="0.0.0.0", port=3306,
                          semi_sync=False, timeout_ms=1, gtid=False, proxy_networks=("10.0.0.21",))
    maria = sql.parse_version(DIALECTS["mariadb-10.11"])
    vals = sql.server_config(maria, server_id=1, bind_address="0.0.0.0", port=3306,
                             semi_sync=False, timeout_ms=1, gtid=False)
    assert not any("proxy" in x or "ssl" in x for x in vals["extra"])  # tls/proxy off: as before


def test_tls_options_per_dialect():
    m8030, maria = (sql.parse_version(DIALECTS[k]) for k in ("mysql-8.0.30", "mariadb-10.11"))
    assert sql.change_source(m8030, tls_ca="/ca") == (
        "CHANGE REPLICATION SOURCE TO SOURCE_SSL=1, SOURCE_SSL_CA='/ca', "
        "SOURCE_SSL_VERIFY_SERVER_CERT=1")
    assert sql.change_source(maria, tls_ca="") == "CHANGE MASTER TO MASTER_SSL=0"
    assert "SSL" not in sql.change_source(maria, user="u", password="p")  # None: left as is


def test_mysqld_starts_read_only_only_under_the_health_daemon():
    """With the http check the daemon owns read_only: a restarted node comes back
    read-only (never a second writer); with the guide's mysql-check nothing turns it off."""
    for name in ("mariadb-10.11", "mysql-8.4"):
        d = sql.parse_version(DIALECTS[name])
        args = dict(server_id=1, bind_address="0.0.0.0", port=3306, semi_sync=False,
                    timeout_ms=1, gtid=True)
        assert "read_only = ON" in sql.server_config(d, health_check="http", **args)["extra"]
        assert not any("read_only" in x for x in
                       sql.server_config(d, health_check="mysql-check", **args)["extra"])
