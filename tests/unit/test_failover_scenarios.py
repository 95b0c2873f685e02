"""The scenario table is consistent: every scenario of issue 14, a restore for each fault,
a threshold for each kind, a measured probe; threshold verdicts."""
import pytest

from tasks.failover import scenarios as S
from tasks.failover.accounting import SetResult
from tasks.failover.timeline import Outage
from tasks.failover.verdict import Limits, Result, judge, limits
from tests.unit.test_facts_vrrp import INV

DB = INV.db  # the shipped inventory's [db], defaults applied

ISSUE_14 = {"api-haproxy-stopped", "api-balancer-down", "api-balancer-partitioned",
            "db-haproxy-stopped", "db-balancer-down", "db-primary-stopped", "db-primary-down",
            "db-primary-partitioned", "db-primary-returning", "db-standby-down",
            "db-replication-cut", "k3s-server-stopped", "k3s-server-down", "k3s-api-hung"}


def test_every_scenario_of_the_issue_once():
    names = [s.name for s in S.SCENARIOS]
    assert sorted(names) == sorted(ISSUE_14) and len(set(names)) == len(names)


@pytest.mark.parametrize("sc", S.SCENARIOS, ids=lambda s: s.name)
def test_scenario_is_complete(sc):
    assert sc.restore is S.RESTORE[sc.fault]
    assert sc.kind in S.MAX_OUTAGE_S
    assert sc.probe in (S.API, S.API_AUTH, S.WRITES)
    assert (sc.probe == S.API_AUTH) == (sc.name == "k3s-api-hung")  # /ping answers when hung
    assert (sc.fault in (S.Action.STOP_SERVICE, S.Action.FREEZE)) == bool(sc.service)
    assert sc.hold_s > 0 and sc.target.value in sc.disrupts
    assert (sc.tier is S.Tier.DB) == (sc.probe == S.WRITES)


def test_select_keeps_table_order_and_rejects_unknown():
    assert [s.name for s in S.select(["db-primary-down", "api-haproxy-stopped"])] == \
        ["api-haproxy-stopped", "db-primary-down"]
    with pytest.raises(ValueError, match="nope"):
        S.select(["nope"])


def res(longest=1.0, lost=None, window=S.Window.FAULT, **kw):
    sc = S.Scenario("x", S.Tier.DB, S.Target.DB_WRITER, S.Action.POWER_OFF, probe=S.WRITES,
                    kind="primary-down", window=window)
    r = Result(sc, 1, "db", 10.0, 20.0, 40.0, healthy_after_s=5.0, **kw)
    r.outages[S.WRITES] = Outage(0.1, longest, longest)
    r.writes = SetResult(100, 100 - len(lost or {}), lost or {}, {}, {}, {}, 0, 0)
    return r


def test_verdict_passes_within_limits_and_breaks_each_threshold():
    lim = limits({}, DB)
    assert judge(res(), lim) == []
    assert [b.what for b in judge(res(longest=12.0), lim)] == ["db-writer outage"]
    assert [b.what for b in judge(res(lost={7: ("db2",)}), lim)] == \
        ["acknowledged writes lost"]
    r = res(checksums={"a": {"t": 1}, "b": {"t": 2}}, replication={"a": "IO=No"},
            dual_ownership_s={"db": 3.0})
    assert {b.what for b in judge(r, lim)} == {"checksums differ between the databases",
                                                "replication on a", "db VIP on two balancers"}
    r = res()
    r.healthy_after_s = None
    assert [b.what for b in judge(r, lim)] == ["cluster healthy again"]


def test_limits_from_the_inventory_override_defaults():
    lim = limits({"failover": {"max_outage_s": {"primary-down": 3}, "max_lost_writes": 2}}, DB)
    assert lim.outage("primary-down") == 3.0 and lim.outage("api-hung") == 10.0
    assert judge(res(longest=4.0), lim)[0].limit.startswith("3.00")
    assert judge(res(lost={1: ("a",), 2: ("a",)}), lim) == []
    assert isinstance(lim, Limits)


def test_api_scenario_falls_back_to_tcp_without_k3s():
    sc = S.BY_NAME["api-haproxy-stopped"]
    r = Result(sc, 1, "b1", 1.0, 2.0, 3.0)
    r.outages["api-tcp"] = Outage(0.2, 0.5, 0.5)
    assert r.probe == "api-tcp" and r.measured.longest_s == 0.5
    r.outages["api-ping"] = Outage(0.2, 0.9, 0.9)
    assert r.probe == "api-ping"


def test_replication_cut_limit_follows_the_semi_sync_timeout():
    assert limits({}, DB).outage("replication-cut") == 11.0   # the 10 s default timeout + 1
    short = {**DB, "semi_sync_timeout_ms": 3000}
    assert limits({}, short).outage("replication-cut") == 4.0
    assert limits({}, {**DB, "semi_sync": False}).outage("replication-cut") == 1.0
    given = {"failover": {"max_outage_s": {"replication-cut": 2.5}}}
    assert limits(given, short).outage("replication-cut") == 2.5
