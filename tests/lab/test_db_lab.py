"""db namespace on real MariaDB 10.11 in the lab (a lab of this run's own: khd_inventory).

`bare` builds the lab from tests/lab/khd_inventory.py in a temp folder and always tears it
down; `lab` is that lab with the pair deployed (the guide's mode: file/position replication,
mysql-check, no TLS), whichever test asks first. The pair then moves forward through two
modes it cannot leave, each a fixture that runs once and records what it saw: `gtid`
(file/position -> GTID) and `secure` (TLS + PROXY protocol). Each test is marked with the
mode it needs (stage 0, 1, 2; tests/lab/conftest.py runs them by stage) and leaves the pair
as it found it, so within a stage any order works and any test runs alone.
"""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest

from tasks.core import inventory, ssh
from tasks.db import session as dbsession
from tasks.lab import labnet
from tests.lab import labdb
from tests.lab.labdb import secret
from tests.lab.khd_inventory import DB1, DB2, SUBNET, write_inventory

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
TIMINGS: dict[str, float] = {}
PLAIN = {"tls": False, "proxy_protocol": False}  # today's behaviour, until the TLS section
SECURE = {"tls": True, "proxy_protocol": True}


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    path = write_inventory(tmp_path_factory.mktemp("khd"), **PLAIN)
    inv = inventory.load(path)
    try:
        t0 = time.monotonic()
        labnet.up(inv, log=lambda m: None)
        TIMINGS["lab up"] = time.monotonic() - t0
        yield inv
    finally:
        labnet.down(inv, log=lambda m: None)
        print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f}s" for k, v in TIMINGS.items()))


DEPLOYED: dict[str, subprocess.CompletedProcess] = {}
DB_TASKS = ("db.install", "db.secure", "db.configure", "db.replicate", "db.users")


@pytest.fixture(scope="module")
def lab(bare):
    """The pair deployed once, from bare hosts; each task's first run kept in DEPLOYED."""
    for task in DB_TASKS:
        if task not in DEPLOYED:
            DEPLOYED[task] = fab(bare, task)
            assert DEPLOYED[task].returncode == 0, \
                f"{task}:\n{DEPLOYED[task].stdout}\n{DEPLOYED[task].stderr}"
    return bare


def fab(inv, *args, env=None, timeout=600):
    e = {k: v for k, v in os.environ.items() if not k.startswith("K3S_HA_")}
    e["K3S_HA_INVENTORY"] = str(inv.path)
    e.update(env or {})
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "fabric", *args], cwd=ROOT, env=e, text=True,
                       capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    TIMINGS.setdefault(" ".join(args), time.monotonic() - t0)
    return p


def make_labtable(inv):
    """labcheck.t on both nodes with at least one row (created on db-01 if missing, seen on
    db-02): a node with an empty table counts as empty, and is seeded, not compared [a
    shuffled run where the divergence test came first found it]."""
    a, b = admin(inv, DB1), admin(inv, DB2)
    try:
        a("CREATE DATABASE IF NOT EXISTS labcheck")
        a("CREATE TABLE IF NOT EXISTS labcheck.t (id INT AUTO_INCREMENT PRIMARY KEY, "
          "v VARCHAR(40))")
        if not a("SELECT id FROM labcheck.t LIMIT 1"):
            a("INSERT INTO labcheck.t (v) VALUES ('first row')")
        assert wait_for(lambda: b("SELECT COUNT(*) c FROM information_schema.TABLES WHERE "
                                  "TABLE_SCHEMA='labcheck' AND TABLE_NAME='t'")[0]["c"]
                        and b("SELECT id FROM labcheck.t LIMIT 1"))
    finally:
        a.close(), b.close()


@pytest.fixture
def labtable(lab):
    """The table the tests below write to, made here rather than left behind by an
    earlier test."""
    make_labtable(lab)
    return "labcheck.t"


MOVES: dict[str, dict[str, subprocess.CompletedProcess]] = {}


def move(inv, name, row, tasks, *args, **knobs):
    """A forward-only move of the pair, made once: the inventory rewritten with `knobs`, a
    row `row` written on db-01 first, then `tasks` until one fails; their runs kept in
    MOVES[name] for the test that checks the move."""
    if name not in MOVES:
        make_labtable(inv)
        write_inventory(inv.path.parent, **knobs)
        a = admin(inv, DB1)
        a("INSERT INTO labcheck.t (v) VALUES (%s)", (row,))
        a.close()
        MOVES[name] = {}
        for task in tasks:
            MOVES[name][task] = p = fab(inv, task, *args)
            if p.returncode != 0:
                break
    return MOVES[name]


def succeeded(runs):
    for task, p in runs.items():
        assert p.returncode == 0, f"{task}:\n{p.stdout}\n{p.stderr}"


def both_replicas_moved(runs, to):
    """The move's tasks succeeded and db.replicate moved each replica `to` (e.g. "to TLS")
    at the position it had."""
    succeeded(runs)
    out = runs["db.replicate"].stdout
    assert sum(f"({to}, same position) changed" in ln for ln in out.splitlines()) == 2, out


@pytest.fixture(scope="module")
def gtid(lab):
    """Stage 1: the file/position pair moved to GTID (gtid = true)."""
    return move(lab, "gtid", "before gtid", ("db.configure", "db.replicate"), gtid=True,
                **PLAIN)


@pytest.fixture(scope="module")
def secure(lab, gtid):
    """Stage 2: the GTID pair moved to TLS + PROXY protocol."""
    succeeded(gtid)
    return move(lab, "secure", "before tls", ("db.configure", "db.replicate", "db.users",
                                              "balancers.deploy"), "--yes", gtid=True, **SECURE)


def crosses(lab, value: str, src: str = DB2, dst: str = DB1) -> None:
    """A row written on `src` is read on `dst` (replication works, really)."""
    b = admin(lab, src)
    b("INSERT INTO labcheck.t (v) VALUES (%s)", (value,))
    b.close()
    a = admin(lab, dst)
    try:
        assert wait_for(lambda: a("SELECT v FROM labcheck.t WHERE v=%s", (value,))), value
    finally:
        a.close()


class Sql:
    """pymysql through SSH from `via` (an inventory host) to `target`:3306."""

    def __init__(self, inv, via, user, password, target="127.0.0.1", database=None):
        self.conn = ssh.connect(inv, inv.host(via))
        ssh.open_checked(self.conn)
        self.db = dbsession.mysql_connect(self.conn, user=user, password=password, host=target,
                                          database=database)

    def __call__(self, stmt, args=None):
        return dbsession.q(self.db, stmt, args)

    def close(self):
        self.db.close()
        self.conn.close()


def admin(inv, host, wait=60.0):
    """Admin session on `host`, waiting for mysqld (a host just powered on is still booting)."""
    end = time.monotonic() + wait
    while True:
        try:
            return Sql(inv, host, "k3sha_admin", secret(inv, "db_admin_password"))
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(1)


def wait_for(fn, timeout=30.0, every=0.3):
    end = time.monotonic() + timeout
    while True:
        val = fn()
        if val or time.monotonic() > end:
            return val
        time.sleep(every)


def positions(inv):
    out = {}
    for h in (DB1, DB2):
        s = admin(inv, h)
        st = s("SHOW SLAVE STATUS")[0]
        out[h] = (s("SHOW MASTER STATUS")[0]["Position"], st["Read_Master_Log_Pos"],
                  st["Master_Host"])
        s.close()
    return out


# ------------------------------------------------------------------ deploy
def recap_changed(stdout, host):
    """The number of changed steps the recap reports for `host`."""
    line = next(ln for ln in stdout.split("RECAP", 1)[1].splitlines() if ln.startswith(host))
    return int(re.search(r"changed=(\d+)", line).group(1))


def test_deploy_from_scratch(lab):
    for task in DB_TASKS:  # the first runs, made by the `lab` fixture
        p = DEPLOYED[task]
        assert p.returncode == 0, f"{task}:\n{p.stdout}\n{p.stderr}"
        for h in (DB1, DB2) if task != "db.install" else ():  # the image may hold it
            # a first run changes something on each node, and says so
            assert recap_changed(p.stdout, h) > 0, f"{task} on {h}:\n{p.stdout}"


def test_row_written_on_each_node_is_read_on_the_other(lab, labtable):
    a, b = admin(lab, DB1), admin(lab, DB2)
    a("CREATE TABLE labcheck.ids (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40))")
    try:
        a("INSERT INTO labcheck.ids (v) VALUES ('from db-01')")
        assert wait_for(lambda: b("SELECT v FROM labcheck.ids WHERE v='from db-01'"))
        b("INSERT INTO labcheck.ids (v) VALUES ('from db-02')")
        assert wait_for(lambda: a("SELECT v FROM labcheck.ids WHERE v='from db-02'"))
        ids = [r["id"] for r in a("SELECT id FROM labcheck.ids ORDER BY id")]
        assert ids == [1, 2], "auto_increment must step by 1 (kine)"
        crosses(lab, "from db-02 to db-01")
        crosses(lab, "from db-01 to db-02", src=DB1, dst=DB2)
    finally:
        a("DROP TABLE labcheck.ids")
        a.close(), b.close()


def test_second_replicate_changes_nothing(lab):
    before = positions(lab)
    p = fab(lab, "db.replicate")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "no changes" in p.stdout and "changed" not in p.stdout.split("RECAP")[0]
    assert positions(lab) == before


def test_users_rerun_changes_nothing_and_checksum_equal(lab, labtable):
    p = fab(lab, "db.users")
    assert p.returncode == 0 and "no changes" in p.stdout, p.stdout + p.stderr
    p = fab(lab, "db.checksum")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "`labcheck`.`t`" in p.stdout and "DIFFERS" not in p.stdout


def test_status_table(lab):
    """Both nodes replicate, acked by semi-sync, GTID domain 0, read_only OFF. A test before
    this one may have power-cycled a node: the table is read until it converges (60 s)."""
    def healthy(line):
        return ("MariaDB 10.11" in line and " Yes " in line and "active (1 acks)" in line
                and re.search(r" 0-[12]-\d+ ", line) and line.rstrip().endswith("OFF"))

    end = time.monotonic() + 60
    while True:
        p = fab(lab, "db.status")
        lines = {h: next((ln for ln in p.stdout.splitlines() if ln.startswith(h)), "")
                 for h in (DB1, DB2)}
        done = p.returncode == 0 and all(healthy(ln) for ln in lines.values())
        if done or time.monotonic() > end:
            break
        time.sleep(2)
    assert p.returncode == 0, p.stdout + p.stderr
    for h, line in lines.items():
        assert healthy(line), f"{h}:\n{p.stdout}"


def test_check_user_logs_in_and_can_do_nothing_else(lab, labtable):
    s = Sql(lab, "k3s-db-balancer-01", "haproxy-check", "", target=lab.host(DB1).address)
    assert s("SELECT 1 AS one") == [{"one": 1}]
    assert {r["Database"] for r in s("SHOW DATABASES")} == {"information_schema"}
    for stmt, code in (("CREATE DATABASE nope", 1044), ("SELECT * FROM labcheck.t", 1142),
                       ("SELECT * FROM mysql.user", 1142)):
        with pytest.raises(pymysql.MySQLError) as ei:
            s(stmt)
        assert ei.value.args[0] == code, stmt
    s.close()


def test_k3s_user_allowed_from_balancer_refused_elsewhere(lab):
    pw = secret(lab, "k3s_db_password")
    ok = Sql(lab, "k3s-db-balancer-02", "k3s", pw, target=lab.host(DB2).address, database="k3s")
    ok("CREATE TABLE IF NOT EXISTS probe (id INT PRIMARY KEY)")
    ok.close()
    with pytest.raises(pymysql.MySQLError) as ei:
        Sql(lab, "k3s-server-01", "k3s", pw, target=lab.host(DB1).address, database="k3s")
    assert ei.value.args[0] in (1045, 1130), ei.value


# ------------------------------------------------------------------ bad input
def test_prompted_admin_password_is_saved_only_after_a_login_with_it(lab, monkeypatch):
    """A password the database refuses (1045) is not written to the secrets file and is
    asked again; the one it accepts is saved. Asked as a login: no confirmation."""
    from fabric import Config
    from invoke import Context

    from tasks.core import secrets
    from tasks.core.errors import InputError
    from tasks.core.run import Run
    from tasks.db.session import admin_password, open_node

    for k in [k for k in os.environ if k.startswith("K3S_HA_")]:
        monkeypatch.delenv(k)
    inv = inventory.load(write_inventory(lab.path.parent, name="prompted.toml",
                                         secrets_file="prompted-secrets.toml",
                                         save_prompted=True, **PLAIN))
    store = inv.resolve_path(inv.secrets["file"])
    answers, asked = ["wrong-Pw-1", secret(lab, "db_admin_password")], []
    monkeypatch.setattr(secrets, "interactive", lambda yes=False: not yes)
    monkeypatch.setattr(secrets, "ask_password", lambda m: asked.append(m) or answers.pop(0))
    secrets.forget()
    r = Run(Context(config=Config()), "prompt test", inv=inv)
    h = inv.host(DB1)
    try:
        pw = admin_password(r, [h])
        with pytest.raises(InputError, match="1045"):
            open_node(r, r.conn(h), h, pw, create=False)
        assert not store.exists(), store.read_text().replace(pw, "***")
        n = open_node(r, r.conn(h), h, admin_password(r, [h]), create=False)
        n.db.close()
    finally:
        r.close()
        secrets.forget()
    assert len(asked) == 2 and not any("confirm" in m.lower() for m in asked), asked
    assert secrets.read_secrets_file(store) == {
        "db_admin_password": secret(lab, "db_admin_password")}


def test_wrong_admin_password_is_a_clear_error(lab):
    p = fab(lab, "db.status", env={"K3S_HA_DB_ADMIN_PASSWORD": "wrong"})
    assert p.returncode == 2, p.stdout + p.stderr  # bad input on every node: exit 2
    err = p.stderr
    assert DB1 in err and DB2 in err and "1045" in err and "db_admin_password" in err
    assert "wrong" not in err and "Traceback" not in err


def test_replica_in_error_is_refused_naming_node_and_state(lab, labtable):
    a, b = admin(lab, DB1), admin(lab, DB2)
    b("SET SESSION sql_log_bin = 0")
    b("INSERT INTO labcheck.t (id, v) VALUES (50, 'only on db-02')")
    a("INSERT INTO labcheck.t (id, v) VALUES (50, 'from db-01')")
    assert wait_for(lambda: b("SHOW SLAVE STATUS")[0]["Last_SQL_Errno"] == 1062)
    p = fab(lab, "db.replicate")
    assert p.returncode == 2, p.stdout + p.stderr
    assert DB2 in p.stderr and "1062" in p.stderr and "SQL=No" in p.stderr
    assert "changed" not in p.stdout.split("RECAP")[0]
    # repaired by hand as the message says, then replicate converges
    b("DELETE FROM labcheck.t WHERE id = 50")
    b("START SLAVE")
    p = fab(lab, "db.replicate")
    assert p.returncode == 0, p.stdout + p.stderr
    assert wait_for(lambda: b("SELECT v FROM labcheck.t WHERE id = 50") == [{"v": "from db-01"}])
    a.close(), b.close()


def test_replication_password_rotation_converges(lab):
    p = fab(lab, "db.replicate", env={"K3S_HA_REPLICATION_PASSWORD": "rotated-Pw-1"})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "replication user" in p.stdout and "(credentials)" in p.stdout
    b = admin(lab, DB2)
    b("STOP SLAVE IO_THREAD"), b("START SLAVE IO_THREAD")  # forces a fresh login
    assert wait_for(lambda: b("SHOW SLAVE STATUS")[0]["Slave_IO_Running"] == "Yes")
    b.close()
    p = fab(lab, "db.replicate", env={"K3S_HA_REPLICATION_PASSWORD": "rotated-Pw-1"})
    assert p.returncode == 0 and "no changes" in p.stdout, p.stdout + p.stderr
    p = fab(lab, "db.replicate")  # and back to the secrets file's password
    assert p.returncode == 0 and "(credentials)" in p.stdout, p.stdout + p.stderr


def test_peer_unreachable_changes_nothing_then_writes_catch_up(lab, labtable):
    labnet.power_off(lab, DB1)
    try:
        p = fab(lab, "db.replicate")
        assert p.returncode == 3, p.stdout + p.stderr
        assert DB1 in p.stderr and "unreachable" in p.stderr
        assert "changed" not in p.stdout.split("RECAP")[0]
        b = admin(lab, DB2)
        t0 = time.monotonic()
        b("INSERT INTO labcheck.t (v) VALUES ('while db-01 is off')")
        TIMINGS["write with peer off (semi-sync timeout)"] = time.monotonic() - t0
        st = {r["Variable_name"]: r["Value"]
              for r in b("SHOW STATUS LIKE 'Rpl_semi_sync_master_%'")}
        # no replica acknowledging: the dead peer's connection gone, or the timeout hit
        assert st["Rpl_semi_sync_master_clients"] == "0" or \
            st["Rpl_semi_sync_master_status"] == "OFF", st
        s = fab(lab, "db.status")
        assert "NO REPLICA ACKING" in s.stdout and s.returncode == 1, s.stdout
        b.close()
    finally:
        labnet.power_on(lab, DB1)
    a = admin(lab, DB1)
    assert wait_for(lambda: a("SELECT v FROM labcheck.t WHERE v='while db-01 is off'"), 90)
    a.close()
    p = fab(lab, "db.replicate")  # kicks db-02's IO thread if it is still waiting to retry
    assert p.returncode == 0, p.stdout + p.stderr
    p = fab(lab, "db.checksum")
    assert p.returncode == 0, p.stdout + p.stderr


# ------------------------------------------------------------------ seeding and divergence
def _unreplicate(inv):
    for h in (DB1, DB2):
        s = admin(inv, h)
        s("STOP SLAVE"), s("RESET SLAVE ALL")
        s.close()


def test_empty_node_is_seeded_from_the_one_with_data(lab, labtable):
    _unreplicate(lab)
    b = admin(lab, DB2)
    b("SET SESSION sql_log_bin = 0")
    # db-02 emptied of every database: other tests leave theirs (k3s.failover ...) [a
    # shuffled run, where this test came after one, found it]
    for r in b("SELECT schema_name AS d FROM information_schema.schemata WHERE schema_name "
               "NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')"):
        b(f"DROP DATABASE `{r['d']}`")
    b.close()
    p = fab(lab, "db.replicate")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "seed from k3s-db-01" in p.stdout
    p = fab(lab, "db.checksum")
    assert p.returncode == 0 and "`labcheck`.`t`" in p.stdout, p.stdout + p.stderr
    a, b = admin(lab, DB1), admin(lab, DB2)
    b("INSERT INTO labcheck.t (v) VALUES ('after seeding')")
    assert wait_for(lambda: a("SELECT v FROM labcheck.t WHERE v='after seeding'"))
    a.close(), b.close()


def test_diverging_data_is_refused(lab, labtable):
    _unreplicate(lab)
    b = admin(lab, DB2)
    b("SET SESSION sql_log_bin = 0")
    b("INSERT INTO labcheck.t (v) VALUES ('diverged')")
    p = fab(lab, "db.replicate")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "`labcheck`.`t`" in p.stderr and "different data" in p.stderr
    b("DELETE FROM labcheck.t WHERE v = 'diverged'")
    b.close()
    p = fab(lab, "db.replicate")
    assert p.returncode == 0, p.stdout + p.stderr


# ------------------------------------------------------------------ through the datastore VIP
def test_failover_through_datastore_vip(lab):
    p = fab(lab, "balancers.deploy", "--yes")
    assert p.returncode == 0, p.stdout + p.stderr
    pw = secret(lab, "k3s_db_password")
    labnet.power_off(lab, DB1)
    try:
        def write():
            try:
                s = Sql(lab, "k3s-db-balancer-01", "k3s", pw, target=lab.vips["db"].address,
                        database="k3s")
                s("CREATE TABLE IF NOT EXISTS failover (id INT AUTO_INCREMENT PRIMARY KEY)")
                s("INSERT INTO failover VALUES ()")
                s.close()
                return True
            except pymysql.MySQLError:
                return False
        assert wait_for(write, 60, 1)
        b = admin(lab, DB2)
        assert b("SELECT COUNT(*) c FROM k3s.failover")[0]["c"] >= 1
        b.close()
        st = fab(lab, "db.status")  # db-01 is off: exit 1, but the table shows who writes
        assert st.returncode == 1 and "UNREACHABLE" in st.stdout, st.stdout + st.stderr
        row = next(ln for ln in st.stdout.splitlines() if ln.startswith(DB2))
        assert "yes (via k3s-db-balancer-0" in row, st.stdout
    finally:
        labnet.power_on(lab, DB1)
    a = admin(lab, DB1)
    assert wait_for(lambda: a("SELECT COUNT(*) c FROM information_schema.TABLES WHERE "
                              "TABLE_NAME='failover'")[0]["c"], 90)
    a.close()


# ------------------------------------------------------------------ replication-aware health
def ssh_run(inv, host, command):
    return subprocess.run(labnet.ssh_argv(inv, host, [command]), capture_output=True,
                          text=True, timeout=60)


def writable(inv, host):
    """read_only OFF on that db host, as mysqld says (the health daemon sets it)."""
    return ssh_run(inv, host, "mysql -NBe 'SELECT @@GLOBAL.read_only'").stdout.strip() == "0"


def http_health(inv, host, via="k3s-db-balancer-01"):
    """(status, body) of the db.health endpoint on `host` asked from `via` (None: from here),
    (None, why) if it does not answer."""
    import urllib.error
    import urllib.request

    url = f"http://{inv.host(host).address}:{inv.db['health_port']}/"
    if via is not None:
        p = subprocess.run(labnet.ssh_argv(inv, via, [
            f"curl -s -m 3 -w '\\n%{{http_code}}' {url}"]), capture_output=True, text=True,
            timeout=30)
        body, _, code = p.stdout.rpartition("\n")
        return (int(code), body) if code.strip() not in ("", "000") else (None, p.stderr)
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


def test_health_endpoint_answers_200_only_when_caught_up(lab):
    p = fab(lab, "db.health")
    assert p.returncode == 0, p.stdout + p.stderr
    for h in (DB1, DB2):
        assert wait_for(lambda: http_health(lab, h)[0] == 200, 60), http_health(lab, h)
    # only the datastore balancers (and the host itself) are answered
    for via in (None, "k3s-server-01"):
        code, body = http_health(lab, DB1, via=via)
        assert code == 403 and "not a datastore balancer" in body, (via, code, body)
    assert http_health(lab, DB1, via="k3s-db-balancer-02")[0] == 200
    assert http_health(lab, DB1, via=DB1)[0] == 200                 # the host itself
    local = subprocess.run(labnet.ssh_argv(lab, DB1, [
        f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{lab.db['health_port']}/"]),
        capture_output=True, text=True, timeout=30)
    assert local.stdout == "200", (local.stdout, local.stderr)
    b = admin(lab, DB2)
    b("STOP SLAVE SQL_THREAD")
    try:
        code, body = http_health(lab, DB2)
        assert code == 503 and "SQL thread" in body, (code, body)
        assert http_health(lab, DB1)[0] == 200
    finally:
        b("START SLAVE SQL_THREAD")
    assert wait_for(lambda: http_health(lab, DB2)[0] == 200, 30)
    b.close()
    p = fab(lab, "db.health")
    assert p.returncode == 0 and "no changes" in p.stdout, p.stdout + p.stderr


def test_haproxy_http_check_keeps_writes_off_a_lagging_node(lab):
    """With [db] health_check = "http": a standby whose SQL thread is stopped is DOWN in
    HAProxy and never takes the writes, even when the writer's check fails; once caught
    up it takes them (named by HAProxy, the old writer's daemon silent), and the old
    writer, back, does not take them back."""
    folder = lab.path.parent
    write_inventory(folder, health_check="http", **PLAIN)
    pw = secret(lab, "k3s_db_password")
    b = admin(lab, DB2)
    daemon = "k3s-ha-db-health"
    try:
        p = fab(lab, "balancers.deploy", "--yes")
        assert p.returncode == 0, p.stdout + p.stderr

        def writer_id():
            try:
                s = Sql(lab, "k3s-db-balancer-01", "k3s", pw, target=lab.vips["db"].address,
                        database="k3s")
                sid = s("SELECT @@server_id AS s")[0]["s"]
                s.close()
                return sid
            except pymysql.MySQLError:
                return None

        assert wait_for(lambda: writer_id() == 1 and writable(lab, DB1)
                        and not writable(lab, DB2),
                        60), "db-01 should be the writer, db-02 read-only"
        b("STOP SLAVE SQL_THREAD")
        assert wait_for(lambda: http_health(lab, DB2)[0] == 503, 10), http_health(lab, DB2)
        def db2_line():
            return next(ln for ln in fab(lab, "balancers.status").stdout.splitlines()
                        if DB2 in ln and "primary" in ln)
        assert wait_for(lambda: "DOWN" in db2_line(), 15), db2_line()
        ssh_run(lab, DB1, f"systemctl stop {daemon}")   # the writer's check fails now
        time.sleep(3)
        assert writer_id() is None, "writes went to the lagging db-02"
        assert not writable(lab, DB2)
        b("START SLAVE SQL_THREAD")
        assert wait_for(lambda: writer_id() == 2 and writable(lab, DB2), 30), \
            "db-02, caught up and named by HAProxy, should take the writes"
        ssh_run(lab, DB1, f"systemctl start {daemon}")
        assert wait_for(lambda: not writable(lab, DB1), 15), "the old writer stays writable"
        time.sleep(3)
        assert writer_id() == 2, "no failback: db-02 keeps the writes"
    finally:
        ssh_run(lab, DB1, f"systemctl start {daemon}")
        b("START SLAVE SQL_THREAD")
        b.close()
        back_to_the_guides_check(lab)


def back_to_the_guides_check(inv):
    """The guide's mode again after a test that switched the datastore check to http:
    mysql-check on the balancers and both nodes writable. Restarted, the health daemons
    forget the last check that carried the writer entry and keep their hands off
    read_only (else the writer fences itself for a minute, no balancer checking it)."""
    write_inventory(inv.path.parent, **PLAIN)
    p = fab(inv, "balancers.deploy", "--yes")
    assert p.returncode == 0, p.stdout + p.stderr
    for h in (DB1, DB2):
        ssh_run(inv, h, "systemctl restart k3s-ha-db-health")
        ssh_run(inv, h, "mysql -e 'SET GLOBAL read_only = 0'")
    assert wait_for(lambda: writable(inv, DB1) and writable(inv, DB2), 10)


# ------------------------------------------------------------------ file/position -> GTID
@pytest.mark.stage(1)
def test_position_replication_moves_to_gtid_without_reset(lab, gtid, labtable):
    """gtid = true on a working file/position pair: db.configure restarts with a GTID
    domain per node, db.replicate moves each replica to GTID at the point it applied
    (no reset, no row lost or doubled), and a second run changes nothing."""
    both_replicas_moved(gtid, "to GTID")
    for h in (DB1, DB2):
        s = admin(lab, h)
        st = s("SHOW SLAVE STATUS")[0]
        assert st["Using_Gtid"] == "Slave_Pos" and st["Slave_SQL_Running"] == "Yes", st
        s.close()
    crosses(lab, "after gtid")
    a = admin(lab, DB1)
    assert len(a("SELECT v FROM labcheck.t WHERE v='before gtid'")) == 1
    a.close()
    p = fab(lab, "db.replicate")
    assert p.returncode == 0 and "no changes" in p.stdout, p.stdout + p.stderr
    p = fab(lab, "db.checksum")
    assert p.returncode == 0, p.stdout + p.stderr


# ------------------------------------------------------------------ TLS and PROXY protocol
K3S_SERVER = "k3s-server-01"


def one(db, stmt):
    with db.cursor() as c:
        c.execute(stmt)
        return c.fetchone()


def mysqld_pids(inv):
    return {h: subprocess.run(labnet.ssh_argv(inv, h, ["pidof mariadbd || pidof mysqld"]),
                              capture_output=True, text=True, timeout=30).stdout.strip()
            for h in (DB1, DB2)}


@pytest.mark.stage(2)
def test_switching_a_running_pair_to_tls_keeps_replication(lab, secure, labtable):
    """tls + proxy_protocol on a working non-TLS pair: each replica is moved to TLS with
    its threads stopped briefly (same position, no reset), rows neither lost nor doubled."""
    both_replicas_moved(secure, "to TLS")
    for h in (DB1, DB2):
        s = admin(lab, h)
        st = s("SHOW SLAVE STATUS")[0]
        assert (st["Master_SSL_Allowed"], st["Master_SSL_Verify_Server_Cert"]) == ("Yes", "Yes")
        assert st["Master_SSL_CA_File"] == "/etc/k3s-ha/db-tls/ca.crt"
        assert wait_for(lambda: s("SHOW SLAVE STATUS")[0]["Slave_IO_Running"] == "Yes"), st
        assert len(s("SELECT v FROM labcheck.t WHERE v='before tls'")) == 1
        s.close()
    crosses(lab, "over tls")
    p = fab(lab, "db.checksum")
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.stage(2)
def test_client_through_the_vip_verifies_the_certificate_under_the_vip_name(lab, secure):
    from tasks.db import tls
    # the tool's CA, checked under the VIP's name (given here: this module's inventory
    # was written before TLS was switched on, so labdb's default would be no TLS)
    ca = {"ca": str(tls.ca_cert_path(lab))}
    with labdb.login_from(lab, K3S_SERVER, ssl=ca, database="k3s") as db:
        assert one(db, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")[1], "not encrypted"
        # PROXY protocol: the server sees the k3s server's address, not the balancer's
        assert one(db, "SELECT CURRENT_USER()")[0] == f"k3s@{lab.host(K3S_SERVER).address}"
        names = {v for _, v in db._sock.getpeercert()["subjectAltName"]}
        assert {lab.fqdn(lab.vips["db"].name), lab.vips["db"].address} <= names
    other = lab.path.parent / "other-ca.crt"
    other.write_bytes(tls.new_ca().cert_pem)
    with pytest.raises(pymysql.MySQLError) as ei, \
            labdb.login_from(lab, K3S_SERVER, ssl={"ca": str(other)}, database="k3s"):
        pass
    assert "CERTIFICATE_VERIFY_FAILED" in str(ei.value), ei.value


@pytest.mark.stage(2)
def test_k3s_user_without_tls_is_refused(lab, secure):
    with pytest.raises(pymysql.MySQLError) as ei, \
            labdb.login_from(lab, K3S_SERVER, ssl=None, ssl_disabled=True, database="k3s"):
        pass
    assert ei.value.args[0] == 1045, ei.value


@pytest.mark.stage(2)
def test_proxy_protocol_grants_name_the_k3s_servers_not_the_balancers(lab, secure):
    from tasks.db import tls
    with pytest.raises(pymysql.MySQLError) as ei, \
            labdb.login_from(lab, "k3s-db-balancer-01", database="k3s",
                             ssl={"ca": str(tls.ca_cert_path(lab))}):  # from a balancer
        pass
    assert ei.value.args[0] in (1045, 1130), ei.value
    # a client inside proxy_protocol_networks connecting directly (no PROXY header) is
    # still served as itself: the mysql-check user from a balancer logs in
    s = Sql(lab, "k3s-db-balancer-01", "haproxy-check", "", target=lab.host(DB1).address)
    assert s("SELECT CURRENT_USER() AS u")[0]["u"].startswith(f"haproxy-check@{SUBNET}.2")
    s.close()
    st = fab(lab, "balancers.status")  # HAProxy's mysql-check (check-send-proxy) passes
    for h in (DB1, DB2):
        line = next(ln for ln in st.stdout.splitlines() if h in ln)
        assert "UP" in line, st.stdout


@pytest.mark.stage(2)
def test_second_secure_run_changes_nothing_and_restarts_nothing(lab, secure):
    pids = mysqld_pids(lab)
    for task in ("db.configure", "db.replicate", "db.users"):
        p = fab(lab, task)
        assert p.returncode == 0 and "no changes" in p.stdout, f"{task}:\n{p.stdout}\n{p.stderr}"
    assert mysqld_pids(lab) == pids


@pytest.mark.stage(2)
def test_a_new_replica_is_set_up_over_tls(lab, secure):
    _unreplicate(lab)
    p = fab(lab, "db.replicate")
    assert p.returncode == 0, p.stdout + p.stderr
    for h in (DB1, DB2):
        s = admin(lab, h)
        st = s("SHOW SLAVE STATUS")[0]
        assert (st["Master_SSL_Allowed"], st["Master_SSL_Verify_Server_Cert"],
                st["Slave_IO_Running"]) == ("Yes", "Yes", "Yes"), st
        s.close()
