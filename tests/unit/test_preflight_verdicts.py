"""Preflight verdicts (tasks/cluster/verdicts.py): facts in, typed Finding out."""
import pytest

from tasks.cluster import verdicts as v
from tasks.cluster.preflight import Report, report_details, report_table
from tasks.core import inventory
from tasks.core.ssh import parse_os_release
from tasks.facts.host import ClockSample, Link, Listener, SourceCheck, parse_ss

E, W, OK = v.Level.ERROR, v.Level.WARN, v.Level.OK
INV = """
[cluster]
domain = "lab.lan"
[vips.api]
address = "10.9.0.100"
name = "k3s-api"
interface = "eth0"
virtual_router_id = 51
priorities = [100, 90]
[vips.db]
address = "10.9.0.101"
name = "k3s-db-balancer"
interface = "eth0"
virtual_router_id = 52
priorities = [100, 90]
[hosts.lb-1]
address = "10.9.0.11"
roles = ["k3s-balancer"]
[hosts.lb-2]
address = "10.9.0.12"
roles = ["k3s-balancer"]
[hosts.dbb-1]
address = "10.9.0.21"
roles = ["db-balancer"]
[hosts.dbb-2]
address = "10.9.0.22"
roles = ["db-balancer"]
[hosts.db-1]
address = "10.9.0.31"
roles = ["db"]
[hosts.db-2]
address = "10.9.0.32"
roles = ["db"]
[hosts.srv-1]
address = "10.9.0.41"
roles = ["k3s-server"]
[hosts.agent-1]
address = "10.9.0.51"
roles = ["k3s-agent"]
"""


@pytest.fixture(scope="module")
def inv():
    return inventory.parse(INV)


OSR = {
    "debian12": ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n', OK),
    "debian13": ('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_ID="13"\nID=debian\n', OK),
    "ubuntu2404": ('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nID_LIKE=debian\n'
                   'VERSION_ID="24.04"\n', OK),
    "debian10": ('PRETTY_NAME="Debian GNU/Linux 10 (buster)"\nVERSION_ID="10"\nID=debian\n', W),
    "mint": ('NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\nVERSION_ID="21.3"\n', W),
    "rocky9": ('NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
               'VERSION_ID="9.3"\n', W),
    "alpine": ('NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n', E),
    "empty": ("", E),
}


@pytest.mark.parametrize("key", OSR)
def test_os(key):
    text, level = OSR[key]
    found = v.os_finding(parse_os_release(text))
    assert found.level is level
    if level is not OK:
        assert "Debian 11/12/13" in found.fix


def test_names_needed(inv):
    assert v.names_needed(inv, inv.host("lb-1")) == {"srv-1.lab.lan": "10.9.0.41"}
    assert v.names_needed(inv, inv.host("dbb-2")) == {"db-1.lab.lan": "10.9.0.31",
                                                     "db-2.lab.lan": "10.9.0.32"}
    assert v.names_needed(inv, inv.host("srv-1")) == {"k3s-db-balancer.lab.lan": "10.9.0.101"}
    assert v.names_needed(inv, inv.host("agent-1")) == {"k3s-api.lab.lan": "10.9.0.100"}
    assert v.names_needed(inv, inv.host("db-1")) == {}


def test_names_finding():
    want = {"db-1.lab.lan": "10.9.0.31", "db-2.lab.lan": "10.9.0.32"}
    assert v.names_finding("h", want, {"db-1.lab.lan": ["10.9.0.31"],
                                       "db-2.lab.lan": ["10.9.0.32"]}).level is OK
    bad = v.names_finding("dbb-1", want, {"db-1.lab.lan": [], "db-2.lab.lan": ["10.9.9.9"]})
    assert bad.level is E
    assert "does not resolve: db-1.lab.lan" in bad.message
    assert "db-2.lab.lan -> 10.9.9.9 (inventory: 10.9.0.32)" in bad.message
    assert bad.fix == ("add to DNS or to /etc/hosts on dbb-1: 10.9.0.31 db-1.lab.lan; "
                       "10.9.0.32 db-2.lab.lan")
    assert v.names_finding("h", {}, {}).level is OK


def _s(offset, rtt=0.02):
    return ClockSample(1000.0 + offset + rtt / 2, 1000.0, 1000.0 + rtt)


@pytest.mark.parametrize("offsets,levels", [
    ({"a": 0.0, "b": 0.3, "c": -0.2}, {"a": OK, "b": OK, "c": OK}),
    ({"a": 0.0, "b": 5.0, "c": 0.1}, {"a": OK, "b": W, "c": OK}),
    ({"a": 0.0, "b": 45.0, "c": 0.1}, {"a": OK, "b": E, "c": OK}),
    # every host agrees, the operator is 40 s off: each host is 40 s from the operator
    ({"a": 40.0, "b": 40.1, "c": 40.0}, {"a": E, "b": E, "c": E}),
    ({"a": -31.0}, {"a": E}),
])
def test_clock(offsets, levels):
    got = v.clock_findings({n: _s(o) for n, o in offsets.items()})
    assert {n: f.level for n, f in got.items()} == levels
    for f in got.values():
        if f.level is not OK:
            assert "timedatectl set-ntp true" in f.fix


def test_clock_uncertainty_is_forgiven():
    # 2.4 s measured over a 1 s round trip: within 2 s once the error is removed
    assert v.clock_findings({"a": _s(2.4, rtt=1.0)})["a"].level is OK


def test_swap(inv):
    assert v.swap_finding(inv.host("srv-1"), []).level is OK
    assert v.swap_finding(inv.host("agent-1"), ["/swapfile"]).level is W
    assert "swapoff -a" in v.swap_finding(inv.host("srv-1"), ["/dev/vda3"]).fix
    assert v.swap_finding(inv.host("db-1"), ["/swapfile"]).level is OK


@pytest.mark.parametrize("free,level", [(1 << 30, E), (5 << 30, W), (50 << 30, OK)])
def test_disk(free, level):
    assert v.disk_finding(free).level is level


def test_ports_needed(inv):
    assert v.ports_needed(inv, inv.host("lb-1")) == {6443: "HAProxy API frontend",
                                                     9000: "HAProxy stats"}
    assert set(v.ports_needed(inv, inv.host("dbb-1"))) == {3306, 9000}
    assert set(v.ports_needed(inv, inv.host("db-1"))) == {3306, 9200}  # http check: default
    assert set(v.ports_needed(inv, inv.host("srv-1"))) == {6443, 10250}
    assert set(v.ports_needed(inv, inv.host("agent-1"))) == {10250}


def test_ports_health_mysql_check():
    inv = inventory.parse(INV + '\n[db]\nhealth_check = "mysql-check"\n')
    assert set(v.ports_needed(inv, inv.host("db-1"))) == {3306}


SS_TAKEN = ('LISTEN 0 5 0.0.0.0:3306 0.0.0.0:* users:(("python3",pid=412,fd=3))\n'
            'LISTEN 0 128 [::]:22 [::]:* users:(("sshd",pid=95,fd=4))\n')


def test_ports_taken_by_a_stranger():
    socks = [Listener(s.address, s.port, s.process, s.pid, "run-u7.service")
             for s in parse_ss(SS_TAKEN)]
    found = v.ports_finding("db-1", {3306: "MySQL"}, socks)
    assert found.level is E
    assert found.message == "3306 (MySQL) is taken by python3 (pid 412, run-u7.service)"
    assert "stop that service on db-1" in found.fix


@pytest.mark.parametrize("unit", ["mariadb.service", "mysql.service", "haproxy.service",
                                  "k3s.service", "k3s-ha-db-health.service"])
def test_ports_held_by_our_service_are_ok(unit):
    socks = [Listener("0.0.0.0", 3306, "mariadbd", 1, unit)]
    assert v.ports_finding("db-1", {3306: "MySQL"}, socks).level is OK


def test_ports_any_address_clashes():
    # 127.0.0.1:3306 in use makes a later bind of 0.0.0.0:3306 fail: a clash too
    socks = [Listener("127.0.0.1", 3306, "mysqld", 9, "docker-abc.scope")]
    assert v.ports_finding("db-1", {3306: "MySQL"}, socks).level is E


def test_interface(inv):
    vip = inv.vips["db"]
    links = {"lo": Link("lo", True, False), "ens3": Link("ens3", True, True)}
    missing = v.interface_finding(vip, links)
    assert missing.level is E
    assert "no interface eth0" in missing.message
    assert missing.fix == ("set vips.db.interface to the interface on the VIP's subnet "
                           "(one of: ens3)")
    assert v.interface_finding(vip, {"eth0": Link("eth0", True, True)}).level is OK
    assert v.interface_finding(vip, {"eth0": Link("eth0", False, True)}).level is W


def test_vip_free(inv):
    vip = inv.vips["db"]
    pair = ["dbb-1", "dbb-2"]
    assert v.vip_free_finding(vip, pair, v.VipSeen((), ())).level is OK
    assert v.vip_free_finding(vip, pair, v.VipSeen(("dbb-2",), ())).level is OK
    other = v.vip_free_finding(vip, pair, v.VipSeen(("db-1",), ()))
    assert other.level is E and "held by db-1" in other.message
    assert "vips.db.address" in other.fix
    outside = v.vip_free_finding(vip, pair, v.VipSeen((), ("this machine",)))
    assert outside.level is E and "already answers" in outside.message


def test_multicast(inv):
    vip = inv.vips["db"]
    tokens = {"dbb-1": "aa", "dbb-2": "bb"}
    good = v.multicast_findings(vip, False, {"dbb-1": {"bb"}, "dbb-2": {"aa"}}, tokens, {})
    assert {f.level for f in good.values()} == {OK}
    one_way = v.multicast_findings(vip, False, {"dbb-1": set(), "dbb-2": {"aa"}}, tokens, {})
    assert one_way["dbb-1"].level is E and "from dbb-2" in one_way["dbb-1"].message
    assert "unicast = true" in one_way["dbb-1"].fix
    assert one_way["dbb-2"].level is OK
    # a token from elsewhere (another pair, an earlier run) is not the peer's
    stranger = v.multicast_findings(vip, False, {"dbb-1": {"zz"}, "dbb-2": {"aa"}}, tokens, {})
    assert stranger["dbb-1"].level is E
    failed = v.multicast_findings(vip, False, {"dbb-2": {"aa"}}, tokens, {"dbb-1": "boom"})
    assert failed["dbb-1"].level is E
    uni = v.multicast_findings(vip, True, {}, tokens, {})
    assert {f.level for f in uni.values()} == {OK}


def test_sources():
    good = SourceCheck("http://deb.debian.org/debian/dists/bookworm/InRelease", True)
    bad = SourceCheck("http://10.9.0.1:3142/x/InRelease", False,
                      "E: Failed to fetch http://10.9.0.1:3142/x/InRelease  Could not connect")
    assert v.sources_finding([good]).level is OK
    found = v.sources_finding([good, bad])
    assert found.level is E and "Could not connect" in found.message


def test_report_table_and_details():
    r = Report()
    r.add("db-1", "ports", v.Finding(E, "3306 (MySQL) is taken by python3", "stop it"))
    r.add("db-1", "os", v.ok("Debian 12"))
    r.add("srv-1", "swap", v.Finding(W, "swap on", "swapoff -a"))
    r.add("vip db 10.9.0.101", "vip free", v.ok("free"))
    table = report_table(r).splitlines()
    assert table[0].split() == ["host", "os", "swap", "ports", "vip", "free"]
    assert table[2].split() == ["db-1", "ok", "ERROR"]
    assert not r.ok and len(r.errors) == 1
    assert report_details(r) == [
        "  ERROR db-1 [ports]: 3306 (MySQL) is taken by python3\n        Fix: stop it",
        "  WARN  srv-1 [swap]: swap on\n        Fix: swapoff -a"]


def test_raise_for():
    from tasks.cluster.preflight import raise_for
    from tasks.core.errors import ConnectError, InputError, StepFailed

    r = Report()
    r.add("srv-1", "swap", v.Finding(W, "swap on", "swapoff -a"))
    raise_for(r)  # warnings pass
    r.add("db-1", "ports", v.Finding(E, "3306 taken", "stop it"))
    with pytest.raises(InputError, match="preflight: 1 error"):
        raise_for(r)
    r.unreachable["db-2"] = StepFailed("db-2: cannot run commands as root. Fix: sudo")
    with pytest.raises(StepFailed) as e:
        raise_for(r)
    assert e.value.exit_code == 1
    assert str(e.value) == ("1 host(s) failed:\n  db-2: cannot run commands as root. "
                            "Fix: sudo")
    r.unreachable = {"db-2": ConnectError("the lab 'x' is not up. Fix: fab lab.up")}
    with pytest.raises(ConnectError) as e:
        raise_for(r)
    assert e.value.exit_code == 3 and "db-2: the lab 'x' is not up" in str(e.value)


def test_unreachable_finding():
    f = v.unreachable_finding("db-1 (10.9.0.31): the lab 'x' is not up (no route via x-op); "
                              "refusing to send lab traffic elsewhere. Fix: fab lab.up")
    assert f.level is E and f.fix == "fab lab.up"
    assert f.message.endswith("refusing to send lab traffic elsewhere")
    assert v.unreachable_finding("db-1: SSH error: boom").fix.startswith("SSH as root")


def test_peers_port_needed_on_db_balancers_with_the_shared_writer(inv):
    from tasks.cluster.preflight import ports_needed
    assert ports_needed(inv, inv.host("dbb-1"))[10000] == "HAProxy peers (the db writer's table)"
    assert 10000 not in ports_needed(inv, inv.host("lb-1"))
    assert 10000 not in ports_needed(inv, inv.host("db-1"))
    guide = inventory.parse(INV + '\n[db]\nhealth_check = "mysql-check"\n')
    assert 10000 not in ports_needed(guide, guide.host("dbb-1"))  # no peers section then
    ss = 'LISTEN 0 5 0.0.0.0:10000 0.0.0.0:* users:(("nc",pid=77,fd=3))\n'
    found = v.ports_finding("dbb-1", ports_needed(inv, inv.host("dbb-1")), parse_ss(ss))
    assert found.level is v.Level.ERROR and "10000 (HAProxy peers" in found.message


def test_vip_checks_run_side_by_side_only_when_no_balancer_serves_two_vips():
    from tasks.cluster.preflight import disjoint
    assert disjoint([{"api-1", "api-2"}, {"db-1", "db-2"}])
    assert not disjoint([{"lb-1", "lb-2"}, {"lb-1", "lb-2"}])   # one pair serves both
    assert not disjoint([{"lb-1", "api-2"}, {"lb-1", "db-2"}])  # one balancer shared
    assert disjoint([{"lb-1", "lb-2"}]) and disjoint([])
