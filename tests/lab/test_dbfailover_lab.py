"""Datastore failover under a writer client, on real MariaDB/HAProxy/keepalived in the lab
(instance "khe", 10.77.70.0/24; see tests/lab/dbfail_kit.py).

For each fault: zero acknowledged rows lost, zero ids acknowledged twice, no failback to
the node that failed, replication healthy again after the repair (db.rejoin where the
health daemon fenced a node) and checksums equal. Short repair delays here; the long ones
and the guide-vs-defaults comparison are in bench/datastore_failover.py.
"""
import os
import subprocess
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
        try:
            kit.repl_cut(inv, False)
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


def test_writer_power_cut(lab):
    writer = kit.writer_host(lab)
    r = kit.run_fault(lab, kit.FAULTS[0], 8, "k3s.t_power")
    check(r, 3.0)
    assert kit.writer_host(lab) != writer, "no failback to the node that lost power"


def test_standby_power_cut(lab):
    writer = kit.writer_host(lab)
    r = kit.run_fault(lab, kit.FAULTS[2], 8, "k3s.t_standby")
    check(r, 3.0)
    assert kit.writer_host(lab) == writer and not r.errant


def test_replication_link_cut(lab):
    writer = kit.writer_host(lab)
    r = kit.run_fault(lab, kit.FAULTS[3], 8, "k3s.t_repl")
    check(r, 3.0)
    assert kit.writer_host(lab) == writer and not r.errant


# Runs after the other faults: when it fails, replication stays broken for what follows.
@pytest.mark.xfail(strict=False, reason="[lab] was intermittent: after the heal the old "
                   "writer's IO thread stopped on 1236 'Could not find GTID state requested by "
                   "slave' (it asked its peer for its own domain); IGNORE_DOMAIN_IDS=(own "
                   "domain) fixed it in the one run since: non-strict until confirmed, issue 12")
def test_writer_partition_auto_increment(lab):
    writer = kit.writer_host(lab)
    r = kit.run_fault(lab, kit.FAULTS[1], 8, "k3s.t_part")
    check(r, 5.0)
    assert kit.writer_host(lab) != writer, "no failback to the partitioned node"


@pytest.mark.xfail(reason="[lab] db.switchover exits 0 with zero lost writes, but the VIP "
                   "still wrote to the old writer afterwards (the gpt0 entry reverted; the "
                   "peers sync is suspected): open, see the branch report")
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


@pytest.mark.xfail(strict=True, reason="[lab] HAProxy 2.6 peers did not carry the gpt0 "
                   "writer entry to the other balancer (open: see the branch report)")
def test_both_balancers_hold_the_same_writer(lab):
    """The writer entry is shared through the `peers` section: a VIP move to the other
    balancer keeps the writer (no failback by way of a balancer failover)."""
    from tasks.facts.datastore import parse_stick_table

    def entry(b):
        p = subprocess.run(labnet.ssh_argv(lab, b, [
            "echo 'show table k3s-db' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock"]),
            capture_output=True, text=True, timeout=30)
        return parse_stick_table(p.stdout)

    want = {kit.DB1: 1, kit.DB2: 2}[kit.writer_host(lab)]
    assert kit.wait_for(lambda: entry("k3s-db-balancer-02") == want, 10), (
        entry("k3s-db-balancer-01"), entry("k3s-db-balancer-02"))
