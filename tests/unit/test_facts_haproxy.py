"""facts.vrrp.vip_holder (the datastore writer lookup's
reader) over fake connections: the holder is whoever's NIC carries the VIP."""
from __future__ import annotations

from types import SimpleNamespace

from invoke import Config

from tasks.core import inventory
from tasks.core.errors import ConnectError
from tasks.facts import haproxy, vrrp
from tests.unit.test_facts_vrrp import INV, ROOT  # noqa: F401 - the shipped inventory

SHOW_STAT = ("# pxname,svname,status,bck,lastchg,check_status,check_code,check_duration\n"
             "k3s-db,k3s-db-01,UP,0,42,L7OK,200,1\n")


class FakeConn:
    def __init__(self, host: inventory.Host, addrs: str, stat: str | None):
        self.k3s_host, self.host, self.user = host, host.name, "root"
        self.config = Config(overrides={"run": {"dry": False}})
        self.addrs, self.stat, self.commands = addrs, stat, []

    def run(self, cmd: str, **kw):
        self.commands.append(cmd)
        if cmd.startswith("ip "):
            return SimpleNamespace(stdout=self.addrs, stderr="", exited=0)
        ok = self.stat is not None
        return SimpleNamespace(stdout=self.stat or "", stderr="", exited=0 if ok else 1)


class FakeRun:
    def __init__(self, conns: dict[str, FakeConn | None]):
        self.inv, self.conns = INV, conns

    def conn(self, h: inventory.Host) -> FakeConn:
        c = self.conns[h.name]
        if c is None:
            raise ConnectError(f"{h.name}: connection refused\nmore")
        return c


def fake(first_addrs: str, second_addrs: str, stat: str | None = SHOW_STAT,
         first_down: bool = False) -> FakeRun:
    a, b = INV.with_role("db-balancer")
    return FakeRun({a.name: None if first_down else FakeConn(a, first_addrs, stat),
                    b.name: FakeConn(b, second_addrs, stat)})


VIP = INV.vips["db"]
HELD = f"2: host0    inet {VIP.address}/24 scope global secondary host0\n"
NOT = "2: host0    inet 10.77.0.22/24 scope global host0\n"


def test_vip_holder_reads_the_nic() -> None:
    assert vrrp.vip_holder(fake(NOT, HELD), VIP)[0].name == "k3s-db-balancer-02"
    assert vrrp.vip_holder(fake(HELD, NOT), VIP)[0].name == "k3s-db-balancer-01"
    # the same address as a prefix of another is not the VIP
    near = HELD.replace(f"{VIP.address}/", f"{VIP.address}0/")
    h, why = vrrp.vip_holder(fake(near, NOT), VIP)
    assert h is None and f"no reachable balancer holds {VIP.address}" in why


def test_an_unreachable_member_does_not_hide_the_holder() -> None:
    h, _ = vrrp.vip_holder(fake("", HELD, first_down=True), VIP)
    assert h.name == "k3s-db-balancer-02"
    h, why = vrrp.vip_holder(fake("", NOT, first_down=True), VIP)
    assert h is None and "k3s-db-balancer-01: connection refused" in why and "more" not in why


def test_datastore_vip_servers_asks_the_vip_holders_haproxy() -> None:
    """facts.datastore.vip_servers: the holder found by vrrp.vip_holder, then its runtime
    API (the same socket helper for `show stat` and the writer table)."""
    from tasks.facts import datastore

    r = fake(NOT, HELD)
    view = datastore.vip_servers(r)
    assert view.via == "k3s-db-balancer-02" and [s.server for s in view.servers] == ["k3s-db-01"]
    assert r.conns["k3s-db-balancer-01"].commands == ["ip -o -4 addr show"]  # only asked
    assert any("show stat" in c for c in r.conns["k3s-db-balancer-02"].commands)
    dead = datastore.vip_servers(fake(NOT, HELD, stat=None))
    assert (dead.servers, dead.reason) == (None, "k3s-db-balancer-02: no HAProxy admin socket")
    nobody = datastore.vip_servers(fake(NOT, NOT))
    assert nobody.servers is None and "no reachable balancer holds" in nobody.reason
    assert haproxy.parse_show_stat(SHOW_STAT)[0].status == "UP"
