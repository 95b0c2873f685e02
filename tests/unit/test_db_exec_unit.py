"""Executing the replication plan, the grants and the admin account: which SQL goes to
which node, recorded by fake sessions (no database, no SSH)."""
import pytest

from tasks.core.inventory import Host
from tasks.db import replication, session, sql
from tasks.db.replication import Action, Kind
from tasks.db.session import Facts
from tasks.facts import mysql as facts

A = Host("k3s-db-01", "10.77.0.31", ("db",), server_id=1)
B = Host("k3s-db-02", "10.77.0.32", ("db",), server_id=2)
USER, RPW = "repl", "Repl-Pw-1"
D = sql.parse_version("10.11.6-MariaDB-0+deb12u1-log")


class FakeInv:
    db = {"port": 3306, "gtid": False, "semi_sync": True, "semi_sync_timeout_ms": 3000,
          "tls": False}


class FakeNode:
    """A node whose session records every statement written and answers queries from
    `answers` (first matching prefix)."""

    def __init__(self, host, binlog=("mysql-bin.000007", 1234), answers=None):
        self.host, self.name, self.d = host, host.name, D
        self.written: list[str] = []
        self.answers = {sql.show_binlog_status(D): [{"File": binlog[0],
                                                      "Position": binlog[1]}],
                        **(answers or {})}
        self.facts = Facts(replica=facts.ReplicaStatus(configured=False), binlog=binlog,
                           data={}, has_data=False)

    def q(self, stmt, args=None):
        for prefix, rows in self.answers.items():
            if stmt.startswith(prefix):
                return rows
        raise AssertionError(f"unexpected query on {self.name}: {stmt}")

    def write(self, stmt, args=None):
        self.written.append(stmt)


class FakeRun:
    dry = False

    def __init__(self):
        self.steps = []

    def step(self, host, step, fn):
        res = fn()
        self.steps.append((host.name, step, bool(res)))
        return res


def run(actions, seed=None):
    r = FakeRun()
    replication.execute(r, actions, FakeInv(), USER, RPW, seed or (lambda e, f: 1 / 0))
    return r


def test_first_run_points_each_replica_at_its_peer_and_starts_it():
    a, b = FakeNode(A, ("a-bin.000003", 11)), FakeNode(B, ("b-bin.000005", 22))
    r = run([Action(Kind.CONFIGURE, a, b), Action(Kind.CONFIGURE, b, a)])
    for n, peer, pos in ((a, B, ("b-bin.000005", 22)), (b, A, ("a-bin.000003", 11))):
        assert n.written == [
            sql.change_source(D, host=peer.address, port=3306, user=USER, password=RPW,
                              log_file=pos[0], log_pos=pos[1]),
            sql.start_replica(D)], n.name
        assert f"MASTER_HOST='{n.host.address}'" not in n.written[0]   # never itself
    assert [s[:2] for s in r.steps] == [("k3s-db-01", "replica of k3s-db-02"),
                                        ("k3s-db-02", "replica of k3s-db-01")]


def test_seeded_replica_starts_from_the_dump_coordinates():
    empty, full = FakeNode(A), FakeNode(B, ("b-bin.000009", 99))
    seeded = []

    def seed(e, f):
        seeded.append((e.name, f.name))
        return ("b-bin.000009", 4242)

    r = run([Action(Kind.SEED, empty, full), Action(Kind.CONFIGURE, empty, full),
             Action(Kind.CONFIGURE, full, empty)], seed)
    assert seeded == [("k3s-db-01", "k3s-db-02")]
    assert "MASTER_LOG_FILE='b-bin.000009', MASTER_LOG_POS=4242" in empty.written[0]
    assert empty.written[-1] == sql.start_replica(D)
    assert r.steps[0] == ("k3s-db-01", "seed from k3s-db-02", True)


def test_repair_sets_new_credentials_keeping_the_position():
    a, b = FakeNode(A), FakeNode(B)
    run([Action(Kind.REPAIR, a, b)])
    assert a.written == [sql.stop_replica(D), sql.change_source(D, user=USER, password=RPW),
                         sql.start_replica(D)]
    assert "MASTER_HOST" not in a.written[1] and "LOG_POS" not in a.written[1]
    assert b.written == []


@pytest.mark.parametrize("kind,expected", [
    (Kind.KICK, [sql.stop_replica(D, "IO_THREAD"), sql.start_replica(D)]),
    (Kind.START, [sql.start_replica(D)]),
])
def test_kick_and_start(kind, expected):
    a, b = FakeNode(A), FakeNode(B)
    run([Action(kind, a, b)])
    assert a.written == expected and b.written == []


def test_a_new_password_on_the_source_makes_its_replica_log_in_anew():
    a, b = FakeNode(A), FakeNode(B)
    assert replication.relogin([], b, a) == [Action(Kind.REPAIR, b, a)]
    assert replication.relogin([Action(Kind.START, b, a)], b, a) == [Action(Kind.REPAIR, b, a)]
    keep = [Action(Kind.CONFIGURE, b, a), Action(Kind.START, a, b)]
    assert replication.relogin(keep, b, a) == keep


def test_replication_user_is_granted_to_the_peer_only():
    n = FakeNode(A, answers={"SELECT COUNT(*) c FROM mysql.user": [{"c": 0}]})
    assert replication.ensure_repl_user(n, B, USER, RPW) is True
    accounts = [s for s in n.written if "'repl'@" in s]
    assert accounts and all(f"'repl'@'{B.address}'" in s for s in accounts), accounts
    assert not any("'%'" in s for s in n.written)
    assert any(s.startswith("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'10.77.0.32'")
               for s in n.written)
    assert n.written[0] == "SET SESSION sql_log_bin = 0"      # this node only


def test_replication_user_with_the_same_password_is_left_alone():
    n = FakeNode(A, answers={"SELECT COUNT(*) c FROM mysql.user": [{"c": 1}],
                             "SELECT authentication_string": [{"same": 1}]})
    assert replication.ensure_repl_user(n, B, USER, RPW) is False and n.written == []


def test_admin_password_goes_on_stdin_never_in_the_command(monkeypatch):
    calls = []
    monkeypatch.setattr(session, "sh", lambda conn, cmd, **kw: calls.append((cmd, kw)))
    pw = "Adm1n-S3cret"
    session.create_admin(object(), D, pw)
    session.reset_admin(object(), D, pw)
    assert len(calls) == 2
    for cmd, kw in calls:
        assert pw not in cmd and pw in kw["stdin"], cmd


def test_admin_password_is_a_login_when_a_node_has_the_account(monkeypatch):
    asked = []
    monkeypatch.setattr(session.secrets, "known", lambda name, inv: None)  # not at hand
    monkeypatch.setattr(session.secrets, "get_secret",
                        lambda name, inv, yes=False, new=False: asked.append((name, new)) or "x")

    class R:
        inv, yes = None, False

        def __init__(self, have):
            self.have = have

        def each(self, hosts, fn):
            return self.have

    session.admin_password(R({"a": True, "b": False}), [])
    session.admin_password(R({"a": False, "b": False}), [])
    assert asked == [("db_admin_password", False), ("db_admin_password", True)]


class TlsInv:
    db = {**FakeInv.db, "tls": True}


def test_tls_move_keeps_the_position_and_new_replicas_verify_the_source():
    """A working replica moved to TLS: stopped, CHANGE with the TLS options only (no host,
    no coordinates: the applied position and GTID stay), started. A new one verifies."""
    a, b = FakeNode(A), FakeNode(B)
    r = FakeRun()
    replication.execute(r, [Action(Kind.TLS, a, b), Action(Kind.CONFIGURE, b, a)], TlsInv(),
                        USER, RPW, lambda e, f: 1 / 0)
    ca = "MASTER_SSL=1, MASTER_SSL_CA='/etc/k3s-ha/db-tls/ca.crt', MASTER_SSL_VERIFY_SERVER_CERT=1"
    assert a.written == ["STOP REPLICA", f"CHANGE MASTER TO {ca}", "START REPLICA"]
    assert b.written[0].endswith(ca) and "MASTER_HOST='10.77.0.31'" in b.written[0]
    assert ("k3s-db-01", "replica of k3s-db-02 (to TLS, same position)", True) in r.steps


def test_tls_state_is_judged_from_the_replica():
    rep = facts.ReplicaStatus(configured=True, source_host=B.address, source_user=USER,
                              io_running="Yes", sql_running="Yes")
    ca = "/etc/k3s-ha/db-tls/ca.crt"
    st = replication.direction_state
    assert st(rep, B, USER, tls=("", ca)).state is replication.State.TLS
    assert st(rep, B, USER, tls=("unverified", ca)).state is replication.State.TLS
    assert st(rep, B, USER, tls=(ca, ca)).state is replication.State.OK
    assert st(rep, B, USER, tls=(ca, "")).state is replication.State.TLS  # tls turned off
    assert st(rep, B, USER, tls=("", "")).state is replication.State.OK
    # a GTID move carries the TLS options itself
    assert st(rep, B, USER, gtid=True, tls=("", ca)).state is replication.State.GTID


def test_replica_tls_read_from_show_replica_status():
    on = {"Master_SSL_Allowed": "Yes", "Master_SSL_CA_File": "/ca",
          "Master_SSL_Verify_Server_Cert": "Yes"}
    assert session.replica_tls([on]) == "/ca"
    assert session.replica_tls([{**on, "Master_SSL_Verify_Server_Cert": "No"}]) == "unverified"
    assert session.replica_tls([{**on, "Master_SSL_Allowed": "No"}]) == ""
    assert session.replica_tls([]) == ""
    assert session.replica_tls([{"Source_SSL_Allowed": "Yes", "Source_SSL_CA_File": "/c",
                                 "Source_SSL_Verify_Server_Cert": "Yes"}]) == "/c"  # MySQL


class LoginRun:
    dry, yes = False, True

    def __init__(self):
        self.inv = type("Inv", (), {"db": {"port": 3306}, "path": None, "secrets": {}})()
        self.records = []

    def record(self, host, step, status, note=""):
        self.records.append((host.name, step))


class AdminDb:
    """A logged-in admin session: mysql.user holds `rows` admin accounts."""

    def __init__(self, rows):
        self.rows = rows

    def cursor(self):
        db = self

        class Cur:
            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False

            def execute(self, stmt, args=None):
                assert stmt.startswith("SELECT COUNT(*) AS n FROM mysql.user"), stmt

            def fetchall(self):
                return [{"n": db.rows}]
        return Cur()


MISSING = [(1130, "Host '127.0.0.1' is not allowed to connect to this MariaDB server"),
           (1698, "Access denied for user 'k3sha_admin'@'localhost'"),
           (1045, "Access denied for user 'k3sha_admin'@'127.0.0.1' (using password: YES)")]


def login_world(monkeypatch, *, account: int, password_ok: bool = True, missing=MISSING[0]):
    """open_node against a node with `account` admin rows (0 missing, 2 complete); what it
    asked and did is returned."""
    seen = {"exists": 0, "created": 0, "logins": 0}
    state = {"rows": account}

    def connect(conn, *, user, password, **kw):
        seen["logins"] += 1
        if state["rows"] == 0:  # what MariaDB says with no account for the client's host
            raise session.pymysql.err.OperationalError(*missing)
        if not password_ok:
            raise session.pymysql.err.OperationalError(1045, "Access denied")
        return AdminDb(state["rows"])

    def exists(conn):
        seen["exists"] += 1
        return state["rows"] == len(sql.ADMIN_HOSTS)

    def create(conn, d, pw):
        seen["created"] += 1
        state["rows"] = len(sql.ADMIN_HOSTS)

    monkeypatch.setattr(session, "mysql_connect", connect)
    monkeypatch.setattr(session, "admin_exists", exists)
    monkeypatch.setattr(session, "create_admin", create)
    monkeypatch.setattr(session.facts, "server_version", lambda conn, name: D)
    monkeypatch.setattr(session.secrets, "accepted", lambda *a: None)
    monkeypatch.setattr(session.secrets, "refused", lambda *a: None)
    return seen


def test_set_up_node_logs_in_without_asking_whether_the_account_exists(monkeypatch):
    seen = login_world(monkeypatch, account=2)
    r = LoginRun()
    node = session.open_node(r, object(), A, "pw")
    assert node.db is not None
    assert seen == {"exists": 0, "created": 0, "logins": 1} and r.records == []


@pytest.mark.parametrize("missing", MISSING)
def test_missing_account_is_created_after_the_refused_login(monkeypatch, missing):
    seen = login_world(monkeypatch, account=0, missing=missing)
    r = LoginRun()
    assert session.open_node(r, object(), A, "pw").db is not None
    assert seen == {"exists": 1, "created": 1, "logins": 2}
    assert r.records == [("k3s-db-01", "admin account")]


def test_wrong_password_for_an_existing_account_creates_nothing(monkeypatch):
    seen = login_world(monkeypatch, account=2, password_ok=False)
    with pytest.raises(session.InputError, match="1045"):
        session.open_node(LoginRun(), object(), A, "wrong")
    assert seen["created"] == 0 and seen["exists"] == 1


def test_half_made_account_is_completed(monkeypatch):
    seen = login_world(monkeypatch, account=1)
    r = LoginRun()
    session.open_node(r, object(), A, "pw")
    assert seen["created"] == 1 and r.records == [("k3s-db-01", "admin account")]


def test_known_admin_password_asks_no_node(monkeypatch):
    monkeypatch.setattr(session.secrets, "known", lambda name, inv: "pw")
    asked = []

    class R:
        inv, yes = None, False

        def each(self, hosts, fn):
            asked.append(fn)
            return {}

    monkeypatch.setattr(session, "admin_exists", lambda conn: 1 / 0)
    assert session.admin_password(R(), []) == "pw"
    assert len(asked) == 1  # the server version only
