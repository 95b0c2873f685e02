"""The datastore fence: GTID comparisons, the health daemon's state machine (the rendered
program, mysqld and the peer faked), db.status verdicts, the sticky-writer lookup and the
switchover refusals."""
from pathlib import Path

import pytest

from tasks.core import inventory
from tasks.db import health, sql
from tasks.db import tasks as dbtasks
from tasks.db.operate import switch_refusal
from tasks.facts import mysql as facts
from tasks.facts.datastore import parse_stick_table, writer
from tasks.facts.haproxy import ServerStat

ROOT = Path(__file__).resolve().parents[2]
MARIA = sql.parse_version("10.11.6-MariaDB")


# ------------------------------------------------------------------ GTIDs
def test_gtids_lacking_compares_per_domain():
    assert facts.gtids_lacking("0-1-5,1-1-9", "0-1-5,1-1-9,2-2-3") == ""
    assert facts.gtids_lacking("0-1-5,1-1-10", "0-1-5,1-1-9,2-2-3") == "1-10"
    assert facts.gtids_lacking("3-3-1", "") == "3-1"
    assert facts.divergence("1-1-10,2-2-3", "1-1-9,2-2-4") is facts.Divergence.DIVERGED
    assert facts.divergence("1-1-10,2-2-3", "1-1-9,2-2-3") is facts.Divergence.A_AHEAD
    assert facts.divergence("1-1-9", "1-1-9") is facts.Divergence.SAME


# ------------------------------------------------------------------ the daemon
class FakeDb:
    """mysqld as the daemon sees it: executed GTIDs, read_only, the peer's dump threads,
    client sessions; every statement kept in `sent`."""

    def __init__(self):
        self.gtid, self.dumps, self.io = "1-1-5", "", "Yes"
        self.ro, self.clients, self.exec_pos, self.lag = True, ["77"], "9", "0"
        self.read_pos, self.io_errno = "9", "0"
        self.sent: list[str] = []

    def __call__(self, stmt, batch=True, timeout=3):
        self.sent.append(stmt)
        if "WHERE USER" in stmt:
            return [[c] for c in self.clients]
        if stmt.startswith("SELECT"):
            return [[self.gtid, self.dumps, "1" if self.ro else "0"]]
        if stmt.startswith("SHOW"):
            cols = ["Slave_IO_Running", "Slave_SQL_Running", "Last_SQL_Errno",
                    "Relay_Master_Log_File", "Master_Log_File", "Exec_Master_Log_Pos",
                    "Read_Master_Log_Pos", "Seconds_Behind_Master", "Last_IO_Errno"]
            return [cols, [self.io, "Yes", "0", "b.1", "b.1", self.exec_pos, self.read_pos,
                           self.lag, self.io_errno]]
        if stmt.startswith("SET GLOBAL read_only"):
            self.ro = stmt.endswith("ON")
        if "STOP" in stmt:
            self.io = "No"
        if "START" in stmt:
            self.io = "Yes"
        return []


def _daemon(name):
    inv = inventory.load(ROOT / "hosts.toml")
    text = health.health_script(inv, inv.host(name), MARIA)
    ns: dict = {"__name__": "db_health"}
    exec(compile(text, "db-health", "exec"), ns)  # noqa: S102 - our own rendered program
    db = FakeDb()
    peer = {"up": True, "state": {"gtid": "1-1-5", "ro": False}}
    ns["mysql"] = db
    ns["peer_reachable"] = lambda: peer["up"]
    ns["peer_state"] = lambda: dict(peer["state"]) if peer["up"] else None
    return ns, db, peer


@pytest.fixture
def daemon():
    """The daemon of k3s-db-02 (server id 2; its peer k3s-db-01 is id 1)."""
    return _daemon("k3s-db-02")


def ticks(ns, fence, n=3):
    for _ in range(n):
        fence.tick()
    return ns["view"]


def names(ns, writer_id):
    """Both db balancers' checks carry HAProxy's writer entry `writer_id`."""
    for b in ns["BALANCERS"]:
        ns["record"](b, writer_id)


def test_takeover_guards_replication_until_the_old_writer_is_proven_clean(daemon):
    ns, db, peer = daemon
    fence = ns["Fence"]()
    names(ns, 1)
    ticks(ns, fence, 1)
    assert db.ro and "SET GLOBAL read_only = OFF" not in db.sent
    peer["up"] = False                      # the writer db-01 is gone
    names(ns, 2)                            # HAProxy sent a client here: its entry names us
    v = ticks(ns, fence, 1)
    assert db.ro, "promoted before the peer failed two probes"
    v = ticks(ns, fence, 1)
    assert not db.ro and v["role"] == "writer"
    db.gtid = "1-1-5,2-2-1"                 # clients commit here now
    v = ticks(ns, fence)
    assert v["role"] == "writer" and v["code"] == 200 and v["guarded"]
    assert "STOP REPLICA IO_THREAD" in db.sent
    assert any(s.startswith("KILL") for s in db.sent) is False  # no dump threads to kill
    peer.update(up=True, state={"gtid": "1-1-6", "ro": True})  # errant
    v = ticks(ns, fence)
    assert v["guarded"] and "START REPLICA IO_THREAD" not in db.sent
    peer["state"] = {"gtid": "1-1-5,2-2-1", "ro": True}  # rebuilt: clean
    v = ticks(ns, fence)
    assert not v["guarded"] and db.sent[-1] != "STOP REPLICA IO_THREAD"
    assert "START REPLICA IO_THREAD" in db.sent


def test_a_daemon_restarted_while_guarding_reads_the_guard_from_mysqld(daemon):
    """[lab] the guard was kept in the daemon's memory: restarted while guarding (fab
    db.health), it forgot the IO thread it had stopped; the standby the node became
    received nothing from then on and still said 'caught up'."""
    ns, db, peer = daemon
    db.io = "No"                            # stopped by the daemon before its restart
    fence = ns["Fence"]()
    names(ns, 1)                            # this node (db-02) is the standby
    peer["state"] = {"gtid": "1-1-5", "ro": False}
    v = ticks(ns, fence, 1)
    assert v["code"] == 503 and "IO thread stopped" in v["why"]
    assert "START REPLICA IO_THREAD" in db.sent and db.io == "Yes"
    assert ticks(ns, fence, 1)["code"] == 200
    # [lab] stopped by the guard while it was retrying a dead peer, the thread keeps that
    # connect error: still the guard's, restarted; at most once a second
    db.io, db.io_errno, db.sent[:] = "No", "2003", []
    fence.restarted = ns["time"].time()
    ticks(ns, fence, 1)
    assert "START REPLICA IO_THREAD" not in db.sent        # 1 s since the last start
    fence.restarted -= 1.0
    ticks(ns, fence, 1)
    assert db.sent.count("START REPLICA IO_THREAD") == 1 and db.io == "Yes"


def test_writes_start_only_once_the_old_writer_is_read_only_and_fully_applied(daemon):
    """[lab, 5 % packet loss] a writer falsely marked DOWN is still committing: the
    standby HAProxy now names must not take writes before the old writer stopped and all
    its transactions are applied here (else the same ids are handed out twice)."""
    ns, db, peer = daemon
    fence = ns["Fence"]()
    names(ns, 2)
    ticks(ns, fence)
    assert db.ro, "writable while the peer still writes"
    peer["state"] = {"gtid": "1-1-6", "ro": True}   # read-only, one commit not applied here
    ticks(ns, fence)
    assert db.ro, "writable while missing a transaction of the old writer"
    db.gtid = "1-1-6"                               # applied
    v = ticks(ns, fence, 1)
    assert not db.ro and v["role"] == "writer" and v["code"] == 200
    assert db.sent.count("SET GLOBAL read_only = OFF") == 1


def test_the_writer_turns_read_only_and_cuts_its_clients_when_haproxy_names_the_peer(daemon):
    ns, db, peer = daemon
    db.ro = False
    fence = ns["Fence"]()
    names(ns, 2)
    ticks(ns, fence)
    assert not db.ro
    names(ns, 1)
    v = ticks(ns, fence, 1)
    assert db.ro and v["role"] == "standby" and "HAProxy names the peer" in v["fenced"]
    assert db.sent.index("SET GLOBAL read_only = ON") < db.sent.index("KILL CONNECTION 77")


def test_a_writer_no_balancer_checks_fences_itself(daemon):
    ns, db, peer = daemon
    db.ro = False
    fence = ns["Fence"]()
    ticks(ns, fence)
    assert not db.ro, "fenced before FENCE_AFTER had passed since start"
    fence.started -= 10
    for b in ns["BALANCERS"]:               # last heard 5 s ago, naming this node
        ns["heard"][b] = (2, 0.0, ns["time"].time() - 5)
    ns["last_entry"][0] = ns["time"].time() - 5
    v = ticks(ns, fence, 1)
    assert db.ro and "no db balancer checked it" in v["fenced"]


def test_hands_off_read_only_when_haproxy_does_not_check_through_the_daemon(daemon):
    """[lab] with the guide's mysql-check (db.health run by hand) no check ever reaches
    the daemon: it fenced both nodes. It manages read_only only while checks carry the
    writer entry (within the last minute)."""
    ns, db, peer = daemon
    db.ro = False
    fence = ns["Fence"]()
    fence.started -= 10
    ticks(ns, fence)
    assert not db.ro and "SET GLOBAL read_only = ON" not in db.sent
    names(ns, 1)                            # HAProxy reconfigured: the entry names db-01
    ticks(ns, fence, 1)
    assert db.ro
    db.ro = False                           # then no entry-carrying check for 2 minutes
    for b in ns["BALANCERS"]:
        ns["heard"][b] = (1, 0.0, ns["time"].time() - 120)
    ns["last_entry"][0] = ns["time"].time() - 120
    ticks(ns, fence)
    assert not db.ro


def test_a_standby_named_by_haproxy_takes_over_from_a_writer_whose_daemon_died(daemon):
    """mysqld of the old writer answers, its daemon does not: HAProxy marked it DOWN (its
    check fails) and cut its sessions; named, the standby takes over once applied."""
    ns, db, peer = daemon
    fence = ns["Fence"]()
    ns["peer_state"] = lambda: None         # the peer's mysqld answers TCP, no daemon
    names(ns, 1)
    ticks(ns, fence)
    assert db.ro, "took over while HAProxy still names the peer"
    names(ns, 2)
    ticks(ns, fence, 1)
    assert not db.ro


def test_checks_without_the_entry_neither_promote_nor_fence(daemon):
    """HAProxy not yet reconfigured (no header): a writer stays one, a standby stays."""
    ns, db, peer = daemon
    db.ro = False
    fence = ns["Fence"]()
    fence.started -= 10
    names(ns, None)
    ticks(ns, fence)
    assert not db.ro
    peer["state"]["ro"] = True
    db.ro = True
    ticks(ns, fence)
    assert db.ro


def test_with_no_entry_yet_only_the_first_node_is_promoted():
    for name, promoted in (("k3s-db-01", True), ("k3s-db-02", False)):
        ns, db, peer = _daemon(name)
        peer["state"]["ro"] = True          # a fresh pair: both read-only
        fence = ns["Fence"]()
        names(ns, 0)
        ticks(ns, fence)
        assert db.ro is not promoted, name


def test_the_latest_changed_entry_wins_and_a_split_view_decides_nothing(daemon):
    ns, _, _ = daemon
    a, b = ns["BALANCERS"]
    ns["record"](a, 1)
    ns["record"](b, 1)
    now = ns["time"].time()
    assert ns["routed"](now) == (True, 1)
    ns["record"](b, 2)                      # b saw the switch first
    assert ns["routed"](now + 0.1) == (True, 2)
    ns["heard"].clear()
    ns["record"](a, 1)
    ns["record"](b, 2)                      # first sight of each: no order between them
    assert ns["routed"](now) == (True, None)


def test_a_standby_holding_gtids_the_writer_lacks_is_fenced(daemon):
    ns, db, peer = daemon
    fence = ns["Fence"]()
    names(ns, 1)
    db.gtid = "1-1-6"                       # the cut-off writer's late commit
    peer["state"] = {"gtid": "1-1-5,2-2-40", "ro": False}
    v = ticks(ns, fence)
    assert v["role"] == "standby" and v["code"] == 503 and "errant" in v["why"]
    assert v["errant"] == "1-6"
    db.gtid = "1-1-5,2-2-40"                # what db.rejoin leaves
    v = ticks(ns, fence, 4)
    assert v["code"] == 200 and not v["errant"]


def test_a_dead_peers_dump_threads_are_killed(daemon):
    ns, db, peer = daemon
    fence = ns["Fence"]()
    db.dumps = "41,42"
    ticks(ns, fence, 1)
    assert not any(s.startswith("KILL") for s in db.sent)   # peer up: its acks count
    peer["up"] = False
    ticks(ns, fence, 2)
    assert "KILL CONNECTION 41" in db.sent and "KILL CONNECTION 42" in db.sent


def test_a_lagging_standby_is_not_eligible(daemon):
    ns, db, peer = daemon
    fence = ns["Fence"]()
    code, why = ns["replica_verdict"]({"Slave_SQL_Running": "Yes", "Last_SQL_Errno": "0",
                                       "Relay_Master_Log_File": "b.1", "Master_Log_File": "b.1",
                                       "Exec_Master_Log_Pos": "5", "Read_Master_Log_Pos": "9",
                                       "Seconds_Behind_Master": "0"})
    assert code == 503 and "catching up" in why
    assert ticks(ns, fence)["code"] == 200


def test_a_standby_applying_under_load_stays_eligible_but_is_not_promoted_until_drained(daemon):
    """[lab] read at one instant, the relay log of a standby under a steady write load is
    almost never drained: its check flapped. A short apply is no lag; a long one is."""
    ns, db, peer = daemon
    fence = ns["Fence"]()
    names(ns, 1)
    db.exec_pos = "5"                       # read ahead of applied, no lag, stuck
    assert [ticks(ns, fence, 1)["code"] for _ in range(6)] == [200] * 4 + [503] * 2
    db.exec_pos, db.lag = "9", "3"
    assert ticks(ns, fence, 1)["code"] == 503   # a real lag fails at once
    db.lag, db.exec_pos = "0", "5"
    peer["state"]["ro"] = True
    names(ns, 2)                            # HAProxy names it, the old writer is read-only
    ticks(ns, fence, 2)
    assert db.ro, "promoted before applying what it received"
    db.exec_pos = "9"
    ticks(ns, fence, 1)
    assert not db.ro


def test_a_standby_that_keeps_up_under_load_never_fails_its_check(daemon):
    """[lab] under a steady write load a standby read at one instant is rarely drained and
    Seconds_Behind_Master reads 1 across a second boundary: its check failed about one read
    in five, HAProxy marked it DOWN every few seconds, and a db.switchover that met such a
    flap moved the writer back. Applied past what it had received SETTLE ticks ago, lag
    under 2 s: eligible, however long the load lasts; lag 2: not."""
    ns, db, peer = daemon
    fence = ns["Fence"]()
    names(ns, 1)
    codes = []
    for i in range(40):                     # received runs 3 ticks ahead of applied
        db.read_pos, db.exec_pos = str(100 + 10 * i), str(70 + 10 * i)
        db.lag = "1" if i % 3 == 0 else "0"
        codes.append(ticks(ns, fence, 1)["code"])
    assert codes == [200] * 40
    db.read_pos, db.exec_pos, db.lag = "1000", "900", "2"
    assert ticks(ns, fence, 1)["code"] == 503
    # falling behind: applied no longer passes what was received SETTLE ticks ago
    for i in range(6):
        db.read_pos, db.exec_pos, db.lag = str(2000 + 100 * i), str(1000 + 10 * i), "0"
        code = ticks(ns, fence, 1)["code"]
    assert code == 503


# ------------------------------------------------------------------ status, writer, switch
def test_status_marks_the_non_writer_errant_and_broken():
    rows = [{"node": "a", "executed": "1-1-10,2-2-3", "gtid": ""},
            {"node": "b", "executed": "1-1-9,2-2-4", "gtid": ""}]
    dbtasks.mark_errant(rows, "b")
    assert rows[0]["gtid"] == "ERRANT 1-10" and "db.rejoin --host a" in rows[0]["broken"]
    assert "broken" not in rows[1]
    # [lab] the cut-off writer's late commits, after it caught up with the new writer:
    # a superset of the writer, not diverged, still errant
    ahead = [{"node": "a", "executed": "1-1-10,2-2-7", "gtid": ""},
             {"node": "b", "executed": "1-1-10,2-2-5", "gtid": ""}]
    dbtasks.mark_errant(ahead, "b", {"a": 2, "b": 1})
    assert ahead[0]["gtid"] == "ERRANT 2-7" and "broken" not in ahead[1]
    # the standby read a moment after the writer holds more of the writer's own domain
    later = [{"node": "a", "executed": "1-1-12,2-2-5", "gtid": ""},
             {"node": "b", "executed": "1-1-10,2-2-5", "gtid": ""}]
    dbtasks.mark_errant(later, "b", {"a": 2, "b": 1})
    assert "broken" not in later[0] and "broken" not in later[1]
    stopped = facts.ReplicaStatus(configured=True, io_running="Yes", sql_running="No",
                                  last_sql_errno=1062, last_sql_error="Duplicate entry")
    assert "1062" in dbtasks.replica_broken(stopped)
    guarded = facts.ReplicaStatus(configured=True, io_running="No", sql_running="Yes")
    assert dbtasks.replica_broken(guarded) == ""                  # the writer's guard
    assert "receives none" in dbtasks.replica_broken(guarded, standby=True)


def _srv(name, status):
    return ServerStat(proxy="k3s-db", server=name, backup=False, status=status, check="-",
                      since="1s")


def test_the_stuck_server_writes_while_up():
    text = ("# table: k3s-db, type: integer, size:1, used:1\n"
            "0x55d0c0a626b8: key=1 use=1 exp=0 gpt0=2\n")  # [lab] HAProxy 2.6
    assert parse_stick_table(text) == 2 and parse_stick_table("# table: k3s-db\n") is None
    assert parse_stick_table("0x1: key=1 use=0 exp=0 gpt0=0\n") is None
    both = [_srv("k3s-db-01", "UP"), _srv("k3s-db-02", "UP")]
    assert writer(both, {"k3s-db-01", "k3s-db-02"}, "k3s-db-02") == "k3s-db-02"
    one = [_srv("k3s-db-01", "UP"), _srv("k3s-db-02", "DOWN")]
    assert writer(one, {"k3s-db-01", "k3s-db-02"}, "k3s-db-02") == "k3s-db-01"


def test_switchover_refusals():
    assert "already the writer" in switch_refusal("a", "a", "", "")
    assert "no writer" in switch_refusal(None, "b", "", "")
    assert "SQL=No" in switch_refusal("a", "b", "IO=Yes SQL=No", "")
    assert "db.rejoin" in switch_refusal("a", "b", "", "1-7")
    assert switch_refusal("a", "b", "", "") == ""


def test_a_gtid_slave_pos_keeps_the_domains_only_the_replica_holds():
    """[lab, adopt] db-01 restarted with its own domain 1 and wrote; db-02's binlog, read
    at the replica's applied point, has no domain 1: MariaDB refuses that slave position
    for db-01 ("contains no value for replication domain 1")."""
    assert facts.with_own_domains("0-1-40,2-2-3", "0-1-40,1-1-7,2-2-3") == "0-1-40,2-2-3,1-1-7"
    assert facts.with_own_domains("0-1-40", "0-1-38") == "0-1-40"   # the source's wins
    assert facts.with_own_domains("", "1-1-7") == "1-1-7"


def test_the_daemon_reads_mysql_gtid_sets_too():
    """MySQL 8 has no GTID domains: executed GTIDs are server_uuid:ranges; errant
    transactions are the ranges the peer lacks, client commits the own uuid's."""
    inv = inventory.load(ROOT / "hosts.toml")
    text = health.health_script(inv, inv.host("k3s-db-02"),
                                sql.parse_version("8.4.3"))
    assert "@@GLOBAL.gtid_executed" in text and "@@GLOBAL.gtid_binlog_pos" not in text
    ns: dict = {"__name__": "db_health"}
    exec(compile(text, "db-health", "exec"), ns)  # noqa: S102 - our own rendered program
    u1, u2 = "3e11fa47-71ca-11e1-9e33-c80aa9429562", "4f22ab58-82db-22f2-af44-d91bb0530673"
    assert ns["lacking"](f"{u1}:1-10,\n{u2}:1-5", f"{u1}:1-8,{u2}:1-5") == f"{u1}:9-10"
    assert ns["lacking"](f"{u1}:1-5:7-9", f"{u1}:1-3:8") == f"{u1}:4-5:7:9"
    assert ns["lacking"](f"{u1}:1-5", f"{u1}:1-9,{u2}:1-2") == ""
    db, peer = FakeDb(), {"up": True, "state": {"gtid": f"{u1}:1-5", "ro": True}}
    db.gtid = f"{u1}:1-4"                   # one of the old writer's not applied yet
    ns["mysql"] = db
    ns["peer_reachable"] = lambda: peer["up"]
    ns["peer_state"] = lambda: dict(peer["state"])
    fence = ns["Fence"]()
    names(ns, 2)
    ticks(ns, fence)
    assert db.ro
    db.gtid = f"{u1}:1-5"
    ticks(ns, fence, 1)
    assert not db.ro


def test_status_with_a_wrong_admin_password_everywhere_is_bad_input():
    """db.status: every node refusing the admin password is bad input (exit 2, as the
    README's exit codes say); a node down for another reason is a failure (exit 1)."""
    from tasks.core.errors import InputError, StepFailed

    def down(node, bad):
        return {"node": node, "version": "UNREACHABLE", "full_error": f"{node}: 1045",
                "bad_input": bad}
    with pytest.raises(InputError) as e:
        dbtasks._fail_if_broken(None, {"a": down("a", True), "b": down("b", True)})
    assert e.value.exit_code == 2 and "a: 1045; b: 1045" in str(e.value)
    with pytest.raises(StepFailed) as e:
        dbtasks._fail_if_broken(None, {"a": down("a", True), "b": down("b", False)})
    assert e.value.exit_code == 1
