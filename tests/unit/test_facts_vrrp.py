"""facts.vrrp: keepalived's own data dump (real output of keepalived 2.2.7, Debian 12, running
the guide's keepalived.conf), the probe's output, per-pair verdicts and the settle rule."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core import inventory
from tasks.facts import vrrp
from tasks.facts.vrrp import Balancer, Member, PairHealth, VrrpState

ROOT = Path(__file__).resolve().parents[2]
DUMPS = ROOT / "tests" / "golden" / "balancers" / "keepalived-dumps"
GUIDE_DUMP = (DUMPS / "guide-2.2.7.data").read_text()
INV = inventory.parse((ROOT / "hosts.toml").read_text(), "hosts.toml")
API, DB = INV.vips["api"], INV.vips["db"]
A, B = "k3s-balancer-01", "k3s-balancer-02"


def test_parse_the_real_dump() -> None:
    got = vrrp.parse_data_dump(GUIDE_DUMP)
    assert [(i.name, i.vrid, i.interface, i.state) for i in got] == [
        ("k3s-balancer", 53, "eth0", VrrpState.MASTER),
        ("k3s-db", 54, "eth0", VrrpState.MASTER)]
    assert got[0].last_transition == pytest.approx(1795796623.071501)


def test_the_password_line_is_not_needed() -> None:
    """The probe drops password/auth lines on the host: parsing must not depend on them."""
    filtered = "\n".join(ln for ln in GUIDE_DUMP.splitlines()
                         if "password" not in ln.lower() and "auth_" not in ln.lower())
    assert vrrp.parse_data_dump(filtered) == vrrp.parse_data_dump(GUIDE_DUMP)


def test_other_states_and_a_truncated_dump() -> None:
    backup = GUIDE_DUMP.replace("   State = MASTER", "   State = BACKUP", 1) \
        .replace("   State = MASTER", "   State = FAULT", 1)
    assert [i.state for i in vrrp.parse_data_dump(backup)] == [VrrpState.BACKUP,
                                                               VrrpState.FAULT]
    cut = GUIDE_DUMP[:GUIDE_DUMP.index("   State = MASTER")]
    assert vrrp.parse_data_dump(cut) == []   # no state yet: left out, never guessed
    assert vrrp.parse_data_dump(GUIDE_DUMP.replace("   State = MASTER\n", "")) == []
    assert vrrp.parse_data_dump("") == []
    # the track script section's "State = idle" is never taken for an instance's state
    scripts = GUIDE_DUMP[GUIDE_DUMP.index("------< VRRP Scripts"):]
    assert vrrp.parse_data_dump(scripts) == []


def probe_output(keepalived: str = "active", dump: str = GUIDE_DUMP, vip: str = "10.77.0.100",
                 extra: str = "") -> str:
    topo = dump[dump.index("------< VRRP Topology"):dump.index("------< VRRP Sockpool")] \
        if "VRRP Topology" in dump else dump
    return (f"@@active haproxy active\n@@active keepalived {keepalived}\n@@now 1795796665\n"
            "@@addr\n"
            "2: host0    inet 10.77.0.11/24 brd 10.77.0.255 scope global host0\\ ...\n"
            f"2: host0    inet {vip}/24 scope global secondary host0\\ ...\n"
            f"@@dump\n{topo.replace('eth0', 'host0').replace('= 53', '= 3')}{extra}")


def test_parse_probe_matches_the_instance_by_vrid_not_name() -> None:
    b = vrrp.parse_probe(A, probe_output())
    assert (b.haproxy, b.keepalived, b.now, b.dump_error) == ("active", "active", 1795796665, "")
    assert b.addresses == {"10.77.0.11", "10.77.0.100"}
    assert b.state(API) is VrrpState.MASTER           # guide's name "k3s-balancer", VRID 3
    assert b.holds(API) and not b.holds(DB)
    m = vrrp.member(b, "api", API)
    assert (m.state, m.holds, m.since) == (VrrpState.MASTER, True, "42s")
    assert b.state(DB) is VrrpState.NO_INSTANCE       # runs, but nothing for VRID 4


def test_parse_probe_stopped_unknown_unreachable() -> None:
    assert vrrp.parse_probe(A, probe_output("inactive", dump="")).state(API) \
        is VrrpState.STOPPED
    b = vrrp.parse_probe(A, probe_output(dump="", extra="@@error no dump from keepalived\n"))
    assert b.state(API) is VrrpState.UNKNOWN and "no dump" in b.dump_error
    b = vrrp.parse_probe(A, probe_output(dump=""))
    assert b.state(API) is VrrpState.UNKNOWN and "no VRRP data" in b.dump_error
    gone = Balancer(A, reachable=False, error="timed out")
    assert vrrp.member(gone, "api", API) == Member(A, "api", False, VrrpState.UNREACHABLE,
                                                   False, error="timed out")


def test_addresses_are_exact() -> None:
    out = "2: host0    inet 10.77.0.100/24 scope global host0\n"
    assert vrrp.addresses(out) == {"10.77.0.100"}
    assert "10.77.0.10" not in vrrp.addresses(out)


def mem(host: str, holds: bool = False, reachable: bool = True,
        state: VrrpState = VrrpState.BACKUP) -> Member:
    return Member(host, "api", reachable, state if reachable else VrrpState.UNREACHABLE, holds)


@pytest.mark.parametrize("holds,reachable,health,words", [
    ((True, False), (True, True), PairHealth.HEALTHY, "10.77.0.100 held by a"),
    ((True, True), (True, True), PairHealth.SPLIT_BRAIN, "SPLIT BRAIN: 10.77.0.100 is held by 2"),
    ((False, False), (True, True), PairHealth.NO_HOLDER, "NO HOLDER"),
    ((False, False), (True, False), PairHealth.NO_HOLDER, "(b unreachable)"),
    ((True, False), (True, False), PairHealth.MEMBER_UNREACHABLE, "split brain not excluded"),
])
def test_verdict(holds, reachable, health, words) -> None:
    v = vrrp.verdict("api", API, [mem(n, h, r) for n, h, r in zip("ab", holds, reachable)])
    assert v.health is health and v.ok is (health is PairHealth.HEALTHY) and words in v.text


def test_preferred_and_settled() -> None:
    seen = [mem(A, state=VrrpState.BACKUP), mem(B, True, state=VrrpState.MASTER)]
    assert vrrp.preferred(INV, "api", seen) == A
    assert not vrrp.settled(INV, {"api": seen})
    seen[0] = mem(A, state=VrrpState.FAULT)
    assert vrrp.preferred(INV, "api", seen) == B
    assert vrrp.settled(INV, {"api": seen, "db": []})
    # the notify file's STOP of defect 1 can no longer appear: a state keepalived does not
    # report as MASTER/BACKUP leaves nobody preferred, and that never counts as settled
    seen = [mem(A, True, state=VrrpState.UNKNOWN), mem(B, state=VrrpState.UNKNOWN)]
    assert vrrp.preferred(INV, "api", seen) == "" and not vrrp.settled(INV, {"api": seen})
