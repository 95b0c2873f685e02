"""cluster.adopt's comparisons (pure): what deploy will do with a guide-built cluster."""
from tasks.cluster import adopt as ad
from tasks.core import inventory
from tasks.facts.mysql import ReplicaStatus
from tasks.facts.vrrp import Balancer, Instance, VrrpState
from tests.lab.test_adopt_lab import KEEPALIVED, adopt_inventory


def inv(tmp_path):
    (tmp_path / "hosts.toml").write_text(adopt_inventory())
    return inventory.load(tmp_path / "hosts.toml")


def guide_keepalived(vip, first=True):
    return (KEEPALIVED.replace("STATE", "MASTER").replace("VRID", str(vip.virtual_router_id))
            .replace("PRIO", "100" if first else "90").replace("VIP", vip.address))


def test_parse_guide_keepalived():
    k = ad.parse_keepalived(KEEPALIVED.replace("VRID", "3").replace("PRIO", "100"))
    assert k.instances == (("k3s-balancer", 3, 100),) and k.auth == "PASS"


def balancer(i, name, holds):
    vip = i.vips["api" if "db" not in name else "db"]
    inst = Instance("k3s-balancer", vip.virtual_router_id, "host0",
                    VrrpState.MASTER if holds else VrrpState.BACKUP, 0)
    return Balancer(name, keepalived="active", haproxy="active", instances=(inst,),
                    addresses=frozenset([vip.address] if holds else []))


def test_same_vrid_keeps_the_vip_a_new_vrid_moves_it(tmp_path):
    i = inv(tmp_path)
    api = i.host("k3s-balancer-01")
    vip = i.vips["api"]
    guide = guide_keepalived(vip)  # the guide's instance name k3s-balancer, the same VRID
    other = guide.replace(f"virtual_router_id {vip.virtual_router_id}", "virtual_router_id 3")
    f_same = ad.compare_balancer(i, api, guide, "x", balancer(i, api.name, True))
    f_moved = ad.compare_balancer(i, api, other, "x", balancer(i, api.name, True))
    ka_same = [f for f in f_same if f.item == "keepalived.conf"][0]
    ka_moved = [f for f in f_moved if f.item == "keepalived.conf"][0]
    assert ka_same.risk is ad.Risk.NONE and "state and the VIP are kept" in ka_same.deploy
    assert ka_moved.risk is ad.Risk.BRIEF and "moves once" in ka_moved.deploy
    assert "k3s-balancer vrid 3" in ka_moved.found and "auth PASS" in ka_same.found


def test_rendered_configs_are_not_reported(tmp_path):
    from tasks.balancers import config as bc
    i = inv(tmp_path)
    h = i.host("k3s-balancer-01")
    f = ad.compare_balancer(i, h, bc.keepalived_config(i, h), bc.haproxy_config(i, h),
                            balancer(i, h.name, True))
    assert [x.item for x in f] == ["VRRP api"]


def rep(source, user="slave-user", **kw):
    return ReplicaStatus(True, source, 3306, user, "Yes", "Yes", 0, source_log_file="mysql-bin.000002",
                         exec_pos=869, **kw)


def test_guide_replication_by_address_is_kept_by_name_blocks(tmp_path):
    i = inv(tmp_path)
    a, b = i.host("k3s-db-01"), i.host("k3s-db-02")
    ok = {"server_id": "1", "log_bin": "1", "log_slave_updates": "1"}
    users = [("slave-user", "%"), ("k3s", "%"), ("haproxy-check", "%")]
    f = ad.compare_db(i, a, b, rep(b.address), ok, users)
    r = [x for x in f if x.item == "replication"][0]
    assert r.risk is ad.Risk.NONE and "keep" in r.deploy and "mysql-bin.000002:869" in r.found
    assert any(x.item == "account slave-user" and "logs in anew" in x.deploy
               and "drop it by hand" in x.deploy and x.risk is ad.Risk.BRIEF for x in f)
    assert any(x.item == "account k3s" and "'%' dropped" in x.deploy for x in f)
    named = [x for x in ad.compare_db(i, a, b, rep("k3s-db-02.lab.lan"), ok, users)
             if x.item == "replication"][0]
    assert named.risk is ad.Risk.BLOCKS and "REFUSES" in named.deploy
    other_user = [x for x in ad.compare_db(i, a, b, rep(b.address, "repl2"), ok, [])
                  if x.item == "replication"][0]
    assert other_user.risk is ad.Risk.BRIEF and "same position" in other_user.deploy


def test_server_id_and_binlog_differences(tmp_path):
    i = inv(tmp_path)
    a, b = i.host("k3s-db-01"), i.host("k3s-db-02")
    f = ad.compare_db(i, a, b, ReplicaStatus(False),
                      {"server_id": "7", "log_bin": "0", "log_slave_updates": "0"}, [])
    items = {x.item: x for x in f}
    assert "my.cnf" not in items
    f2 = ad.compare_db(i, a, b, ReplicaStatus(False), {}, [], dropin=False)
    assert [x.risk for x in f2 if x.item == "my.cnf"] == [ad.Risk.BRIEF]
    assert items["server_id"].found == "7" and items["server_id"].inventory == "1"
    assert "log_bin=0" in items["binlog"].found
    assert "CHANGE MASTER" in items["replication"].deploy


def test_k3s_probe():
    i_host = type("H", (), {"name": "k3s-server-01", "roles": ["k3s-server"]})()
    assert ad.compare_k3s(i_host, "unit k3s inactive\n")[0].found == "not installed"
    f = ad.compare_k3s(i_host, "present /usr/local/bin/k3s\npresent "
                       "/var/lib/rancher/k3s/server/token\nunit k3s active\n")[0]
    assert f.found == "k3s active; k3s, token" and "keep running" in f.deploy


def test_k3s_built_by_hand_config_yaml_in_effect_or_not():
    i_host = type("H", (), {"name": "k3s-server-01", "roles": ["k3s-server"]})()
    probe = "present /usr/local/bin/k3s\npresent /etc/systemd/system/k3s.service\nunit k3s active\n"
    kept = {f.item: f for f in ad.compare_k3s(i_host, probe, [])}
    assert "absent" in kept["config.yaml"].found and "no restart" in kept["config.yaml"].deploy
    assert kept["config.yaml"].risk is ad.Risk.NONE
    moved = {f.item: f for f in ad.compare_k3s(i_host, probe, ["tls-san"])}["config.yaml"]
    assert "restart once (tls-san" in moved.deploy and moved.risk is ad.Risk.BRIEF
