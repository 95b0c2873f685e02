"""cluster.status's judging and output (pure): every problem named, the closing line, JSON."""
import json

from tasks.cluster import status as st
from tasks.core import inventory
from tests.lab.test_cluster_lab import guide_inventory


def inv(tmp_path):
    (tmp_path / "hosts.toml").write_text(guide_inventory())
    return inventory.load(tmp_path / "hosts.toml")


def healthy(i) -> st.ClusterView:
    def up():
        return [{"proxy": "p", "server": "s", "backup": False, "status": "UP", "check": "L7OK"}]

    bal = [st.BalancerView(h.name, "api" if "k3s-balancer" in h.roles else "db", "MASTER",
                           True, "active", "active", up()) for h in
           i.with_role("k3s-balancer") + i.with_role("db-balancer")]
    pairs = [{"key": k, "address": v.address, "health": "healthy", "holders": ["x"],
              "text": "held"} for k, v in i.vips.items()]
    dbs = [st.DbView(h.name, True, "MariaDB 10.11", "Yes", "Yes", 0, "", True, "1", False)
           for h in i.with_role("db")]
    taint = i.cluster["node_taint"]
    nodes = [st.NodeView(h.name, "control-plane" if "k3s-server" in h.roles else "<none>",
                         "True", [taint] if "k3s-server" in h.roles else [])
             for h in i.with_role("k3s-server") + i.with_role("k3s-agent")]
    return st.ClusterView(bal, pairs, dbs, {"host": "k3s-db-01", "via": "b", "known": True,
                                            "reason": ""}, nodes)


def test_healthy_view_has_no_problem(tmp_path):
    i = inv(tmp_path)
    v = healthy(i)
    assert st.judge(v, i) == []
    assert st.closing_line([], v).startswith("cluster: no problem found")
    assert "!!" not in st.render(v, [], lab=True)


def test_each_tier_problem_is_named_and_marked(tmp_path):
    i = inv(tmp_path)
    v = healthy(i)
    v.pairs[0].update(health="split brain", text="SPLIT BRAIN: both")
    v.balancers[1].keepalived = "inactive"
    v.balancers[2].backends[0]["status"] = "DOWN"
    v.databases[0].io = "Connecting"
    v.databases[1].semi_sync_on = False
    v.writer["host"] = None
    v.nodes[0].ready = "False"
    v.nodes[1].taints = []
    del v.nodes[-1]
    probs = st.judge(v, i)
    lines = [p.line() for p in probs]
    expect = ["balancers: api pair: SPLIT BRAIN", "keepalived is inactive", "is DOWN",
              "replication IO=Connecting", "semi-sync fell back", "datastore VIP: no writer",
              "k3s-server-01: Ready=False", "k3s-server-02: server without the taint",
              "k3s-agent-02: not a node"]
    for e in expect:
        assert any(e in ln for ln in lines), (e, lines)
    assert len(probs) == len(expect), lines
    closing = st.closing_line(probs, v)
    assert closing.startswith(f"cluster: {len(expect)} PROBLEM(S) (balancers 3, databases 3, k3s 3)")
    assert "!! k3s-server-01" in st.render(v, probs, lab=True)


def test_json_document_round_trips_without_secrets(tmp_path):
    i = inv(tmp_path)
    v = healthy(i)
    v.databases[0].lag = 99
    probs = st.judge(v, i)
    doc = json.loads(json.dumps(st.to_json(v, probs)))
    assert doc["ok"] is False and doc["problems"][0]["subject"] == "k3s-db-01"
    assert {"balancers", "pairs", "databases", "writer", "nodes"} <= set(doc)
    assert "password" not in json.dumps(doc).lower()


def test_no_k3s_hosts_no_k3s_tier(tmp_path):
    i = inv(tmp_path)
    v = healthy(i)
    v.nodes = None
    assert st.judge(v, i) == [] and "k3s" not in st.closing_line([], v)


def test_a_running_pair_proves_multicast_only_when_one_master_holds():
    from tasks.cluster.verdicts import adverts_flow
    from tasks.facts.vrrp import Member, VrrpState as S

    def m(state, holds, reachable=True):
        return Member("h", "api", reachable, state, holds)

    assert adverts_flow([m(S.MASTER, True), m(S.BACKUP, False)])
    assert not adverts_flow([m(S.MASTER, True), m(S.MASTER, True)])      # split brain
    assert not adverts_flow([m(S.MASTER, True), m(S.STOPPED, False)])    # one not running
    assert not adverts_flow([m(S.BACKUP, False), m(S.BACKUP, False)])    # nobody holds
    assert not adverts_flow([m(S.MASTER, True)])                         # not a pair
    assert not adverts_flow([m(S.MASTER, True), m(S.BACKUP, False, reachable=False)])
