"""db.switchover's HAProxy side against a fake runtime API: the order of the commands, the
wait for the new writer to be UP, the old writer drained until the handoff, the entry read
back, and the wait for the handoff."""
from types import SimpleNamespace

import pytest

from tasks.core.errors import StepFailed
from tasks.db import operate
from tasks.facts.haproxy import ServerStat

BALANCERS = ["k3s-db-balancer-01", "k3s-db-balancer-02"]


class FakeHaproxy:
    """One balancer's HAProxy: the writer entry, the servers' states, the commands seen."""

    def __init__(self, log, new_down_polls=0, entry=1):
        self.log, self.entry, self.down_polls = log, entry, new_down_polls
        self.old_state = "ready"

    def stat(self):
        self.log.append("show stat")
        up = self.down_polls <= 0
        self.down_polls -= 1
        return [ServerStat("k3s-db", "k3s-db-01", False, "UP", "-", "1s"),
                ServerStat("k3s-db", "k3s-db-02", False, "UP" if up else "DOWN", "-", "1s")]

    def command(self, cmd):
        self.log.append(cmd)
        if cmd.startswith("set table"):
            self.entry = int(cmd.split()[-1])
        if cmd.startswith("set server k3s-db/k3s-db-01 state"):
            self.old_state = cmd.split()[-1]
        return ""

    def client(self, new_up):
        """A client connects while the new writer is UP or not: with the entry's server
        not UP, `balance first` sends it to the old writer unless that one is drained or
        in maintenance, and its answer sets the entry to it (the config's tcp-response)."""
        if not new_up and self.old_state == "ready":
            self.entry = 1


@pytest.fixture
def rig(monkeypatch):
    log: list = []
    haps = {b: FakeHaproxy(log) for b in BALANCERS}
    monkeypatch.setattr(operate, "show_stat", lambda conn: haps[conn].stat())
    monkeypatch.setattr(operate.datastore, "admin_command", lambda conn, c: haps[conn].command(c))
    monkeypatch.setattr(operate.datastore, "stuck_server_id", lambda conn: haps[conn].entry)
    r = SimpleNamespace(inv=SimpleNamespace(with_role=lambda role: BALANCERS),
                        conn=lambda b: b, step=lambda host, label, fn: fn())

    def node(name, sid):
        return SimpleNamespace(name=name, host=SimpleNamespace(server_id=sid))
    pair = operate.Pair(old=node("k3s-db-01", 1), new=node("k3s-db-02", 2))
    monkeypatch.setattr(operate, "_wait_handoff", lambda p: log.append("handoff"))
    return SimpleNamespace(r=r, pair=pair, haps=haps, log=log)


def test_the_entry_moves_only_once_the_new_writer_is_up_everywhere(rig):
    rig.haps[BALANCERS[1]].down_polls = 3  # a standby catching up: its check still fails
    operate._switch(rig.r, rig.pair)
    first_drain = rig.log.index("set server k3s-db/k3s-db-01 state drain")
    assert rig.log[:first_drain].count("show stat") == 5  # 1 + (3 DOWN + 1 UP)
    assert all(h.entry == 2 for h in rig.haps.values())
    # the old writer drained on both balancers until the daemons handed over
    handoff = rig.log.index("handoff")
    assert rig.log[handoff + 1:] == ["set server k3s-db/k3s-db-01 state ready"] * 2
    assert rig.log[:handoff].count("set server k3s-db/k3s-db-01 state drain") == 2


def test_a_new_writer_check_failing_during_the_handoff_does_not_send_the_writes_back(
        rig, monkeypatch):
    """[lab] 3 switchovers in 25 under load failed so: the standby's check flapped DOWN
    while the old writer was ready again, a client went to the old writer and its answer
    set the entry back. Drained until the handoff, no client reaches it."""
    def flap(p):
        for h in rig.haps.values():
            h.client(new_up=False)
    monkeypatch.setattr(operate, "_wait_handoff", flap)
    operate._switch(rig.r, rig.pair)
    assert all(h.entry == 2 for h in rig.haps.values())


def test_a_failed_handoff_still_puts_the_old_writer_back_in_service(rig, monkeypatch):
    def fail(p):
        raise StepFailed("the health daemons did not hand over")
    monkeypatch.setattr(operate, "_wait_handoff", fail)
    with pytest.raises(StepFailed, match="did not hand over"):
        operate._switch(rig.r, rig.pair)
    assert all(h.old_state == "ready" for h in rig.haps.values())


def test_a_new_writer_that_never_comes_up_switches_nothing(rig):
    rig.haps[BALANCERS[0]].down_polls = 10**6
    with pytest.raises(StepFailed, match="not UP"):
        operate._wait_up(BALANCERS[0], "k3s-db", "k3s-db-02", timeout=0.5)
    assert not [c for c in rig.log if c != "show stat"]


def test_an_entry_set_back_after_the_old_writer_is_ready_fails_the_switch(rig, monkeypatch):
    real = rig.haps[BALANCERS[0]].command

    def late_answer(cmd):  # the old writer answers a connection routed before the switch
        real(cmd)
        if cmd.endswith("state ready"):
            rig.haps[BALANCERS[0]].entry = 1
    monkeypatch.setattr(rig.haps[BALANCERS[0]], "command", late_answer)
    with pytest.raises(StepFailed, match="writer entry is 1, not k3s-db-02"):
        operate._switch(rig.r, rig.pair)


def test_the_switch_waits_for_the_daemons_handoff(monkeypatch):
    """Done only once the old writer is read-only and the new one writable; else a
    failure naming both states (the daemons did not hand over)."""
    ro = {"k3s-db-01": [False, True], "k3s-db-02": [True, True, False]}

    def read_only(n):
        seq = ro[n.name]
        return seq.pop(0) if len(seq) > 1 else seq[0]
    monkeypatch.setattr(operate.facts, "read_only", read_only)
    pair = operate.Pair(old=SimpleNamespace(name="k3s-db-01"),
                        new=SimpleNamespace(name="k3s-db-02"))
    operate._wait_handoff(pair, timeout=5)
    ro.update({"k3s-db-01": [True], "k3s-db-02": [True]})
    with pytest.raises(StepFailed, match="k3s-db-02 but after 0.5 s it is still read-only"):
        operate._wait_handoff(pair, timeout=0.5)


def test_the_drills_repair_rebuilds_only_a_non_writer_holding_errant_gtids(monkeypatch):
    """After a fault the drill rebuilds the fenced node (as db.rejoin, its data dumped);
    a clean standby and the writer itself are left alone."""
    dbs = [SimpleNamespace(name="k3s-db-01"), SimpleNamespace(name="k3s-db-02")]
    r = SimpleNamespace(inv=SimpleNamespace(with_role=lambda role: dbs))
    gtid = {"k3s-db-01": "1-1-10,2-2-7", "k3s-db-02": "1-1-9,2-2-7"}
    node = {n.name: SimpleNamespace(name=n.name, d=SimpleNamespace(mariadb=True)) for n in dbs}
    rebuilt = []
    monkeypatch.setattr(operate.datastore, "find_writer",
                        lambda r: SimpleNamespace(host="k3s-db-02"))
    monkeypatch.setattr(operate, "_pair", lambda r, first: (
        node[first], next(v for k, v in node.items() if k != first)))
    monkeypatch.setattr(operate.facts, "executed_gtids", lambda n: gtid[n.name])
    monkeypatch.setattr(operate, "_rebuild", lambda r, t, s: rebuilt.append((t.name, s.name)))
    assert operate.rejoin_fenced(r) == ["k3s-db-01 (1-10)"]
    assert rebuilt == [("k3s-db-01", "k3s-db-02")]
    gtid["k3s-db-01"] = "1-1-9,2-2-7"   # clean: nothing to do
    rebuilt.clear()
    assert operate.rejoin_fenced(r) == [] and rebuilt == []
    monkeypatch.setattr(operate.datastore, "find_writer", lambda r: SimpleNamespace(host=None))
    gtid["k3s-db-01"] = "1-1-10,2-2-7"  # no writer: nothing to rebuild from
    assert operate.rejoin_fenced(r) == [] and rebuilt == []
