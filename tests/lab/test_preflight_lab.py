"""The preflight (tasks/cluster/preflight.py) on real hosts: lab "pf" + 3 random characters, 10.77.60.0/24 when free.

Two db balancers, the two databases and one k3s server, booted bare (nothing deployed). A
clean lab passes with no ERROR; then each finding is provoked once on the real hosts
and must come back as an ERROR with its fix, and go away once the cause is removed.

The lab's hosts share this machine's kernel clock (a time namespace cannot shift
CLOCK_REALTIME), so the skewed clock is a `date` shim placed first in the login PATH
(/usr/local/bin): the probe reads the host's time through `date +%s.%N` exactly as on a
real host, and the shim answers 45 s ahead.
"""
import os
import subprocess
import time
from pathlib import Path

import pytest
from fabric import Config
from invoke import Context

from tasks.cluster import preflight
from tasks.cluster.verdicts import Level
from tasks.core import inventory, ssh
from tasks.core.run import Run
from tasks.lab import labnet
from tests.lab import labid, labinv

pytestmark = pytest.mark.lab
NAME, SUBNET = labid.claim("pf", "10.77.60")  # unique per run
VIP = f"{SUBNET}.101"
DBB1, DBB2, DB, SRV = "k3s-db-balancer-01", "k3s-db-balancer-02", "k3s-db-01", "k3s-server-01"
TIMINGS: dict[str, float] = {}


def inventory_text(interface: str = "host0", extra: str = "") -> str:
    """`extra`: whole TOML tables added after [secrets]."""
    hosts = {DBB1: labinv.host(f"{SUBNET}.21", "db-balancer"),
             DBB2: labinv.host(f"{SUBNET}.22", "db-balancer"),
             DB: labinv.host(f"{SUBNET}.31", "db"),
             "k3s-db-02": labinv.host(f"{SUBNET}.32", "db"),
             SRV: labinv.host(f"{SUBNET}.41", "k3s-server")}
    base = labinv.render(labinv.base(NAME, SUBNET, connect_timeout=None), {})
    vips = labinv.render({"vips.db": labinv.vip(VIP, "k3s-db-balancer", 47, interface)}, hosts)
    return base + extra + vips


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    folder = tmp_path_factory.mktemp("khp")
    path = folder / "hosts.toml"
    path.write_text(inventory_text())
    inv = inventory.load(path)
    try:
        t0 = time.monotonic()
        labnet.up(inv, log=lambda m: None)
        TIMINGS["lab up"] = time.monotonic() - t0
        yield inv
    finally:
        t0 = time.monotonic()
        labnet.down(inv, log=lambda m: None)
        TIMINGS["lab down"] = time.monotonic() - t0
        print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f}s" for k, v in TIMINGS.items()))


def variant(inv, name: str, **kw) -> inventory.Inventory:
    """The same lab described by another inventory file beside the first (same keys)."""
    path = Path(inv.path).parent / name
    path.write_text(inventory_text(**kw))
    return inventory.load(path)


def checks(inv, label: str) -> preflight.Report:
    t0 = time.monotonic()
    r = Run(Context(config=Config()), "preflight test", inv=inv)
    try:
        report = preflight.run_checks(r)
    finally:
        r.close()
    TIMINGS.setdefault(f"checks ({label})", time.monotonic() - t0)
    preflight.print_report(report)
    return report


def on(inv, host: str, cmd: str, stdin=None):
    conn = ssh.connect(inv, inv.host(host))
    try:
        ssh.open_checked(conn)
        return ssh.sh(conn, cmd, stdin=stdin)
    finally:
        conn.close()


def errors(report):
    return {(row, check): f for row, check, f in report.errors}


# ------------------------------------------------------------------ clean
def test_clean_lab_has_no_error(lab):
    report = checks(lab, "clean")
    assert report.ok, preflight.report_details(report)
    cells = report.cells
    for h in (DBB1, DBB2, DB, SRV):
        for check in ("ssh", "os", "names", "clock", "swap", "ports"):
            assert (h, check) in cells, (h, check)
    assert cells[(DB, "os")].message.startswith("Debian GNU/Linux 12")
    assert cells[(DBB1, "multicast")].level is Level.OK
    assert cells[(DBB1, "packages")].level is Level.OK
    assert cells[(SRV, "names")].message == "1 names resolve"
    assert (DB, "disk") in cells
    assert cells[(f"vip db {VIP}", "vip free")].message == f"{VIP} free"


# ------------------------------------------------------------------ each finding once
def test_port_taken(lab):
    on(lab, DB, "systemd-run --unit khp-squat python3 -m http.server 3306")
    try:
        time.sleep(1)
        found = errors(checks(lab, "port taken"))
        assert set(found) == {(DB, "ports")}, found
        f = found[(DB, "ports")]
        assert "3306 (MySQL) is taken by python3" in f.message and "khp-squat.service" in f.message
        assert f.fix.startswith(f"stop that service on {DB}")
    finally:
        on(lab, DB, "systemctl stop khp-squat")


def test_port_held_by_our_own_service_is_ok(lab):
    # ownership is read from the listener's cgroup: a process in haproxy.service is ours
    on(lab, DBB1, "systemd-run --unit haproxy python3 -m http.server 9000")
    try:
        time.sleep(1)
        report = checks(lab, "port ours")
        assert report.cells[(DBB1, "ports")].level is Level.OK, report.cells[(DBB1, "ports")]
    finally:
        on(lab, DBB1, "systemctl stop haproxy")


def test_missing_interface(lab):
    found = errors(checks(variant(lab, "eth9.toml", interface="eth9"), "no interface"))
    assert set(found) == {(DBB1, "vip interface"), (DBB2, "vip interface")}, found
    f = found[(DBB1, "vip interface")]
    assert "no interface eth9" in f.message
    assert f.fix == ("set vips.db.interface to the interface on the VIP's subnet "
                     "(one of: host0)")


def test_skewed_clock(lab):
    shim = ('#!/bin/sh\n[ "$1" = "+%s.%N" ] || exec /usr/bin/date "$@"\n'
            "exec python3 -c 'import time; print(\"%.9f\" % (time.time() + 45))'\n")
    on(lab, SRV, "install -m 755 /dev/stdin /usr/local/bin/date", stdin=shim)
    try:
        found = errors(checks(lab, "clock"))
        assert set(found) == {(SRV, "clock")}, found
        assert found[(SRV, "clock")].message.startswith("+45.")
        assert "timedatectl set-ntp true" in found[(SRV, "clock")].fix
    finally:
        on(lab, SRV, "rm -f /usr/local/bin/date")


def test_vip_held_by_another_host(lab):
    on(lab, DB, f"ip addr add {VIP}/32 dev host0")
    try:
        found = errors(checks(lab, "vip on db host"))
        assert set(found) == {(f"vip db {VIP}", "vip free")}, found
        f = found[(f"vip db {VIP}", "vip free")]
        assert f.message == f"{VIP} is held by {DB}, not a db-balancer of this VIP"
        assert "vips.db.address" in f.fix
    finally:
        on(lab, DB, f"ip addr del {VIP}/32 dev host0")


def test_vip_answering_outside_the_inventory(lab):
    # a machine that is not in the inventory: the lab's switch itself takes the address
    # (/24: with a /32 it would have no route back and answer no ARP)
    sw = ["ip", "netns", "exec", labnet.switch_ns(NAME)]
    subprocess.run(sw + ["ip", "addr", "add", f"{VIP}/24", "dev", labnet.bridge_name(NAME)],
                   check=True)
    try:
        found = errors(checks(lab, "vip elsewhere"))
        assert set(found) == {(f"vip db {VIP}", "vip free")}, found
        assert "already answers (seen from this machine, " in found[(f"vip db {VIP}",
                                                                     "vip free")].message
    finally:
        subprocess.run(sw + ["ip", "addr", "del", f"{VIP}/24", "dev",
                             labnet.bridge_name(NAME)], check=True)


def test_vip_held_by_our_balancer_is_ok(lab):
    on(lab, DBB2, f"ip addr add {VIP}/32 dev host0")
    try:
        report = checks(lab, "vip ours")
        assert report.ok, preflight.report_details(report)
        assert report.cells[(f"vip db {VIP}", "vip free")].message == \
            f"held by our balancer {DBB2}"
    finally:
        on(lab, DBB2, f"ip addr del {VIP}/32 dev host0")


def test_multicast_blocked(lab):
    # the switch drops multicast coming from balancer 02's port (as many clouds drop all)
    sw = ["ip", "netns", "exec", labnet.switch_ns(NAME)]
    port = labnet.host_port(lab, DBB2)
    rules = ("table bridge khp_mc {\n chain mc {\n  type filter hook forward priority 0;\n"
             f'  iifname "{port}" ip daddr 224.0.0.0/4 drop\n }}\n}}\n')
    subprocess.run(sw + ["nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        found = errors(checks(lab, "multicast"))
        assert set(found) == {(DBB1, "multicast")}, found
        assert f"heard no multicast from {DBB2}" in found[(DBB1, "multicast")].message
        assert "unicast = true" in found[(DBB1, "multicast")].fix
        # the suggested fix is honoured: with unicast, multicast is not needed
        uni = checks(variant(lab, "unicast.toml", extra="[balancers]\nunicast = true\n"),
                     "unicast")
        assert uni.ok, preflight.report_details(uni)
    finally:
        subprocess.run(sw + ["nft", "delete", "table", "bridge", "khp_mc"], check=True)
