"""db.switchover's HAProxy side against a fake runtime API: the order of the commands, the
wait for the new writer to be UP, the entry read back, and the kill race."""
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
        return ""


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
    return SimpleNamespace(r=r, pair=pair, haps=haps, log=log)


def test_the_entry_moves_only_once_the_new_writer_is_up_everywhere(rig):
    rig.haps[BALANCERS[1]].down_polls = 3  # a standby catching up: its check still fails
    operate._stick_all(rig.r, rig.pair)
    first_maint = rig.log.index("set server k3s-db/k3s-db-01 state maint")
    assert rig.log[:first_maint].count("show stat") == 5  # 1 + (3 DOWN + 1 UP)
    assert all(h.entry == 2 for h in rig.haps.values())
    assert rig.log[-1] == "set server k3s-db/k3s-db-01 state ready"


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
        operate._stick_all(rig.r, rig.pair)


def test_a_client_gone_before_its_kill_is_not_an_error():
    sent = []

    def write(stmt):
        sent.append(stmt)
        if stmt.endswith(" 7"):
            raise StepFailed("k3s-db-01: SQL failed (KILL CONNECTION 7): Unknown thread id: 7")
    n = SimpleNamespace(q=lambda stmt, args: [{"ID": 7}, {"ID": 8}], write=write)
    assert operate._kill_clients(n, "k3s") and sent == ["KILL CONNECTION 7", "KILL CONNECTION 8"]

    def denied(stmt):
        raise StepFailed("k3s-db-01: SQL failed (KILL CONNECTION 7): Access denied")
    with pytest.raises(StepFailed, match="Access denied"):
        operate._kill_clients(SimpleNamespace(q=n.q, write=denied), "k3s")
