"""Datastore failover under a writer client, on real MariaDB/HAProxy/keepalived in the lab
(a lab of its own per run, 10.77.70.0/24 when free; see tests/lab/dbfail_kit.py).

For each fault: zero acknowledged rows lost, zero ids acknowledged twice, no failback to
the node that failed, replication healthy again after the repair (db.rejoin where the
health daemon fenced a node) and checksums equal. Short repair delays here; the long ones
and the guide-vs-defaults comparison are in bench/datastore_failover.py.
"""
import os
import time

import pytest

from tasks.core import inventory
from tasks.lab import labnet
from tests.lab import dbfail_kit as kit

pytestmark = pytest.mark.lab
RESULTS: list = []


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    inv = inventory.load(kit.write_inventory(tmp_path_factory.mktemp("khe")))
    try:
        labnet.up(inv, log=lambda m: None)
        kit.deploy(inv)
        yield inv
    finally:
        for undo in (lambda: kit.repl_cut(inv, False),
                     lambda: kit.cut_off(inv, kit.DB1, False),
                     lambda: kit.cut_off(inv, kit.DB2, False)):
            try:
                undo()
            except Exception:  # noqa: BLE001 - the lab may be half up
                pass
        labnet.down(inv, log=lambda m: None)
        for r in RESULTS:
            print(f"\nRESULT {r}")


def check(r: kit.Result, max_outage: float) -> None:
    RESULTS.append(r)
    assert r.acked > 100, r
    assert r.lost == 0, r
    assert r.reused == 0, r
    assert r.checksum_ok, r
    assert r.outage < max_outage, r


def test_defaults_are_sticky_http_gtid(lab):
    st = kit.fab(lab, "db.status", "--yes")
    assert st.returncode == 0, st.stdout + st.stderr
    for h in (kit.DB1, kit.DB2):
        line = next(ln for ln in st.stdout.splitlines() if ln.startswith(h))
        assert "active (1 acks)" in line, st.stdout  # semi-sync: a replica acknowledges
    s = kit.admin(lab, kit.DB1)
    assert s("SELECT COUNT(*) c FROM mysql.user WHERE User='haproxy-check'")[0]["c"] == 0
    assert s("SHOW SLAVE STATUS")[0]["Using_Gtid"] == "Slave_Pos"
    s.close()


# Outage bounds here are sanity bounds with room for a loaded 2-core machine (the issue's
# targets, 3 s for a power cut and 5 s for a partition, are bench/datastore_failover.py's
# figures, not timed tests): measured 1.0-2.3 s, 2.0-3.6 s under load, 3.3-3.5 s for the
# link cut (the writer waits out the 3 s semi-sync timeout: it cannot know its peer is gone).
def test_writer_power_cut(lab):
    writer = kit.writer_host(lab)
    r = kit.run_fault(lab, kit.FAULTS[0], 8, "k3s.t_power")
    check(r, 5.0)
    assert kit.writer_host(lab) != writer, "no failback to the node that lost power"


def test_standby_power_cut(lab):
    writer = kit.writer_host(lab)
    r = kit.run_fault(lab, kit.FAULTS[2], 8, "k3s.t_standby")
    check(r, 5.0)
    assert kit.writer_host(lab) == writer and not r.errant


def test_replication_link_cut(lab):
    writer = kit.writer_host(lab)
    r = kit.run_fault(lab, kit.FAULTS[3], 8, "k3s.t_repl")
    check(r, 6.0)
    assert kit.writer_host(lab) == writer and not r.errant


# Runs after the other faults: when it fails, replication stays broken for what follows.
# Was intermittent (the old writer's IO thread stopped on 1236 after the heal) until each
# replica ignored its own GTID domain from its peer (IGNORE_DOMAIN_IDS): [lab] passed in
# 5 runs since (2 in this module, 3 repeated on an ad-hoc lab, one with a db.rejoin).
def test_writer_partition_auto_increment(lab):
    writer = kit.writer_host(lab)
    r = kit.run_fault(lab, kit.FAULTS[1], 8, "k3s.t_part")
    check(r, 9.0)
    assert kit.writer_host(lab) != writer, "no failback to the partitioned node"


def test_the_standby_stays_up_under_a_steady_write_load(lab):
    """[lab] judged at one instant, a standby under load failed its check about one read
    in five (relay log not drained, Seconds_Behind_Master 1 across a second boundary) and
    HAProxy marked it DOWN every few seconds; a switchover that met such a flap moved the
    writer back (CI). Its health daemon now asks whether it applied what it had received a
    second before: under a client writing as fast as it can, no DOWN in 15 s."""
    standby = kit.DB2 if kit.writer_host(lab) == kit.DB1 else kit.DB1
    since = int(time.time())
    with kit.Writer(lab, table="k3s.t_steady") as w:
        time.sleep(15)
    assert len(w.acked) > 1000, len(w.acked)
    for b in kit.DB_BALANCERS:
        log = kit.on_host(lab, b, f"journalctl -u haproxy --since @{since} --no-pager -q "
                          f"| grep -c 'Server k3s-db/{standby} is DOWN' || true")
        assert log.strip() == "0", f"{b}: {standby} marked DOWN {log.strip()} times"


def test_a_standby_receiving_nothing_is_reported_and_its_daemon_restarts_the_thread(lab):
    """The guard is read from mysqld, not the daemon's memory: a standby's IO thread
    stopped while its daemon was down (as a daemon restarted while guarding left it [lab])
    makes db.status fail naming it; the daemon, started again, restarts the thread."""
    standby = kit.DB2 if kit.writer_host(lab) == kit.DB1 else kit.DB1
    s = kit.admin(lab, standby)
    io = lambda: s("SHOW SLAVE STATUS")[0]["Slave_IO_Running"]  # noqa: E731
    kit.on_host(lab, standby, "systemctl stop k3s-ha-db-health")
    try:
        s("STOP SLAVE IO_THREAD")
        st = kit.fab(lab, "db.status", "--yes")
        assert st.returncode == 1, st.stdout + st.stderr
        assert f"{standby}: replica IO thread stopped on the standby" in st.stderr, st.stderr
    finally:
        kit.on_host(lab, standby, "systemctl start k3s-ha-db-health")
    assert kit.wait_for(lambda: io() == "Yes", 15), io()
    assert kit.wait_for(lambda: kit.fab(lab, "db.status", "--yes").returncode == 0, 30)


def test_switchover_moves_the_writer_with_zero_lost_writes(lab):
    writer = kit.writer_host(lab)
    w = kit.Writer(lab, table="k3s.t_switch")
    with w:
        time.sleep(2)
        t0 = time.monotonic()
        p = kit.fab(lab, "db.switchover", "--yes")
        assert p.returncode == 0, p.stdout + p.stderr
        time.sleep(2)
    r = kit.verdict(lab, w, "switchover", t0, "", 0.0)
    check(r, 5.0)
    assert kit.writer_host(lab) != writer
    again = kit.fab(lab, "db.switchover", "--to", kit.writer_host(lab), "--yes")
    assert again.returncode == 2 and "already the writer" in again.stderr, again.stderr


def test_both_balancers_hold_the_same_writer(lab):
    """The writer entry is shared through the `peers` section: the VIP holder alone moves
    it (as a failover there does, from a response) and the other balancer follows; a VIP
    move to the other balancer then keeps the writer (no failback by way of a balancer
    failover). Both nodes are in sync here, no client is writing while the entry moves."""
    holder = next(b for b in kit.DB_BALANCERS if kit.vip_on(lab, b))
    other = next(b for b in kit.DB_BALANCERS if b != holder)
    want = {kit.DB1: 2, kit.DB2: 1}[kit.writer_host(lab)]  # the standby's server id
    kit.on_host(lab, holder, f"echo 'set table k3s-db key 1 data.gpt0 {want}' | socat "
                "stdio UNIX-CONNECT:/run/haproxy/admin.sock")
    entries = lambda: [kit.stick_entry(lab, b) for b in kit.DB_BALANCERS]  # noqa: E731
    assert kit.wait_for(lambda: entries() == [want, want], 10), entries()
    # the health daemons follow the entry: the named node writable, the other read-only
    new, old = {1: (kit.DB1, kit.DB2), 2: (kit.DB2, kit.DB1)}[want]
    assert kit.wait_for(lambda: kit.writable(lab, new) and not kit.writable(lab, old), 10), \
        "the health daemons did not hand the writes to the node HAProxy names"
    with kit.Writer(lab, table="k3s.t_vipmove") as w:
        time.sleep(1)
        kit.on_host(lab, holder, "systemctl stop keepalived")
        try:
            assert kit.wait_for(lambda: kit.vip_on(lab, other), 15), "the VIP did not move"
            time.sleep(1)
            assert kit.writer_host(lab) == {1: kit.DB1, 2: kit.DB2}[want]
            assert entries() == [want, want]
        finally:
            kit.on_host(lab, holder, "systemctl start keepalived")
        assert kit.wait_for(lambda: kit.vip_on(lab, holder), 30), "the VIP did not return"
        time.sleep(1)
    assert kit.writer_host(lab) == {1: kit.DB1, 2: kit.DB2}[want]
    r = kit.verdict(lab, w, "vip move", 0.0, "", 0.0)
    assert r.acked > 100 and r.lost == 0 and r.reused == 0 and r.checksum_ok, r


def _writer_or_none(lab):
    try:
        return kit.writer_host(lab)
    except Exception:  # noqa: BLE001 - no writer through the VIP right now
        return None


def test_rejoin_keeps_a_real_errant_transaction_and_rebuilds_the_node(lab):
    """A writer cut off from its peer and the balancers fences itself (read-only), yet
    commits one row (through an admin login of its own, the operator still reaches it):
    an errant transaction. After the heal, db.status says ERRANT (exit 1); db.rejoin keeps
    the row in a 0600 dump, re-seeds the node from the writer, replication runs both ways
    and the checksums are equal."""
    old = kit.writer_host(lab)
    kit.cut_off(lab, old, True)
    try:
        assert kit.wait_for(lambda: _writer_or_none(lab) not in (None, old), 20)
        # no balancer checks it any more: its health daemon turned it read-only itself
        assert kit.wait_for(lambda: not kit.writable(lab, old), 10), \
            "the cut-off writer stayed writable"
        s = kit.admin(lab, old)
        s("CREATE TABLE k3s.t_errant (id INT PRIMARY KEY, tag VARCHAR(40))")
        s("INSERT INTO k3s.t_errant VALUES (1, 'errant-row-on-the-cut-off-writer')")
        s.close()
        with kit.Writer(lab, table="k3s.t_after_cut"):
            time.sleep(2)  # the new writer's own writes are the later ones
    finally:
        kit.cut_off(lab, old, False)
    status = lambda: kit.fab(lab, "db.status", "--yes")  # noqa: E731
    assert kit.wait_for(lambda: "ERRANT" in status().stdout, 30), status().stdout
    st = status()
    line = next(ln for ln in st.stdout.splitlines() if "ERRANT" in ln)
    assert st.returncode == 1 and line.startswith(old), st.stdout
    p = kit.fab(lab, "db.rejoin", "--host", old, "--yes")
    assert p.returncode == 0, p.stdout + p.stderr
    dump = p.stdout.split("its previous data is in ")[1].split()[0]
    assert kit.on_host(lab, old, f"stat -c %a {dump}").strip() == "600"
    assert kit.on_host(lab, old, f"grep -c errant-row-on-the-cut-off-writer {dump}").strip() == "1"
    kit.converge(lab, time.monotonic())
    assert kit.fab(lab, "db.checksum", "--yes").returncode == 0
    s = kit.admin(lab, old)
    try:
        assert not s("SHOW TABLES FROM k3s LIKE 't_errant'")  # the errant row is gone
    finally:
        s.close()
    assert kit.fab(lab, "db.status", "--yes").returncode == 0
