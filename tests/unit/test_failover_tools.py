"""failover.actions.tools_missing: on real hosts the drill checks, before disrupting
anything, that every fault's target has the tools the fault runs there."""
from __future__ import annotations

from types import SimpleNamespace

from invoke import Config

from tasks.failover import actions
from tasks.failover.scenarios import select
from tests.unit.test_facts_vrrp import INV, ROOT  # noqa: F401 - the shipped inventory


class Conn:
    def __init__(self, lacks: set[str]):
        self.host, self.user, self.lacks, self.commands = "h", "root", lacks, []
        self.config = Config(overrides={"run": {"dry": False}})

    def run(self, cmd: str, **kw):
        self.commands.append(cmd)
        out = " ".join(t for t in ("nft", "systemd-run")
                       if t in self.lacks and f"command -v {t} " in cmd)
        return SimpleNamespace(stdout=out, stderr="", exited=0)


def fake_run(lacks: dict[str, set[str]]):
    conns = {name: Conn(x) for name, x in lacks.items()}
    return SimpleNamespace(inv=INV, conn=lambda h: conns[h.name]), conns


def missing(r, chosen, targets):
    return actions.tools_missing(r, actions.tools_needed(chosen, targets))


def test_isolation_needs_nft_and_systemd_run_on_its_target_only():
    db1, db2 = INV.with_role("db")
    chosen = select(["db-standby-down", "db-primary-stopped"])
    targets = {"db-standby-down": [db2], "db-primary-stopped": [db1]}
    r, conns = fake_run({db1.name: {"nft"}, db2.name: {"nft"}})
    # db1 is only stopped (systemctl + systemd-run): its missing nft does not matter
    assert missing(r, chosen, targets) == [f"{db2.name}: nft missing"]
    assert "nft" not in conns[db1.name].commands[0]


def test_the_replication_cut_needs_nft_on_both_databases():
    dbs = INV.with_role("db")
    r, _ = fake_run({h.name: {"nft", "systemd-run"} for h in dbs})
    got = missing(r, select(["db-replication-cut"]), {"db-replication-cut": dbs})
    assert got == [f"{h.name}: {t} missing" for h in dbs for t in ("nft", "systemd-run")]


def test_nothing_missing_when_everything_is_there():
    db1, _ = INV.with_role("db")
    r, _ = fake_run({db1.name: set()})
    assert missing(r, select(["db-primary-down"]), {"db-primary-down": [db1]}) == []
    assert actions.tools_needed(select(["db-primary-down"]), {"db-primary-down": [db1]}) == \
        {db1.name: {"nft", "systemd-run"}}
