"""Inventory validation: every malformed inventory is rejected, naming the key and the fix."""
import re
from pathlib import Path

import pytest

from tasks.core import inventory
from tasks.core.errors import InventoryError

SHIPPED = (Path(__file__).resolve().parents[2] / "hosts.toml").read_text()


def bad(text: str) -> list[str]:
    with pytest.raises(InventoryError) as ei:
        inventory.parse(text, "inv.toml")
    assert str(ei.value).startswith("inv.toml: ")
    return ei.value.problems


def sub(old: str, new: str, text: str = SHIPPED, count: int = 1) -> str:
    assert old in text, old
    return text.replace(old, new, count)


def test_shipped_inventory_is_valid_and_reproduces_the_guide():
    inv = inventory.parse(SHIPPED, "hosts.toml")
    assert len(inv.hosts) == 10
    assert [h.name for h in inv.with_role("db")] == ["k3s-db-01", "k3s-db-02"]
    assert [h.server_id for h in inv.with_role("db")] == [1, 2]
    assert inv.vips["api"].virtual_router_id != inv.vips["db"].virtual_router_id
    assert inv.db["rise"] == 3 and inv.db["health_check"] == "http" and inv.db["check_user"] == "haproxy-check"
    assert inv.cluster["node_taint"] == "CriticalAddonsOnly=true:NoExecute"
    assert inv.fqdn("k3s-db-01") == "k3s-db-01.lab.lan"
    assert inv.is_lab


CASES = [
    # (description, transform, expected key path, expected words)
    ("invalid TOML", lambda t: t + "\n[hosts.x\n", "invalid TOML", "line"),
    ("unknown top-level table", lambda t: t + "\n[clustre]\nx = 1\n", "clustre", "cluster"),
    ("unknown key in section", lambda t: sub("rise = 3 ", "rsie = 3 ", t), "db.rsie", "rise"),
    ("unknown role", lambda t: sub('roles = ["db"]', 'roles = ["dbb"]', t),
     "hosts.k3s-db-01.roles[0]", "did you mean 'db'"),
    ("unknown host key", lambda t: sub('address = "10.77.0.11"', 'adress = "10.77.0.11"', t),
     "hosts.k3s-balancer-01.adress", "address"),
    ("missing address", lambda t: sub('address = "10.77.0.52"\n', "", t),
     "hosts.k3s-agent-02.address", "missing"),
    ("bad address", lambda t: sub('"10.77.0.52"', '"10.77.0.300"', t),
     "hosts.k3s-agent-02.address", "not an IP"),
    ("duplicate address", lambda t: sub('"10.77.0.52"', '"10.77.0.51"', t),
     "hosts.k3s-agent-02.address", "also the address"),
    ("duplicate name (case)", lambda t: t + '\n[hosts.K3S-AGENT-01]\naddress = "10.77.0.60"\n'
     'roles = ["k3s-agent"]\n', "hosts.K3S-AGENT-01", "duplicate host name"),
    ("one balancer only", lambda t: sub('roles = ["k3s-balancer"]', 'roles = ["k3s-agent"]', t),
     "vips.api", "at least two"),
    ("duplicate virtual_router_id", lambda t: sub("virtual_router_id = 4", "virtual_router_id = 3", t),
     "vips.db.virtual_router_id", "also used"),
    ("VIP outside subnet", lambda t: sub('address = "10.77.0.100"\nprefix = 24',
                                         'address = "10.77.1.100"\nprefix = 24', t),
     "vips.api.address", "outside the subnet"),
    ("port clash 6443", lambda t: sub('address = "10.77.0.41"\nroles = ["k3s-server"]',
                                      'address = "10.77.0.41"\nroles = ["k3s-server", "k3s-balancer"]', t),
     "hosts.k3s-server-01.roles", "api_port = 7443"),
    ("no db hosts", lambda t: t.replace('roles = ["db"]', 'roles = ["k3s-agent"]').replace(
        "server_id = 1\n", "").replace("server_id = 2\n", ""), "hosts", "no host has role 'db'"),
    ("no k3s-server", lambda t: t.replace('roles = ["k3s-server"]', 'roles = ["k3s-agent"]'),
     "hosts", "k3s-server"),
    ("server_id collision", lambda t: sub("server_id = 2", "server_id = 1", t),
     "hosts.k3s-db-02.server_id", "also the server_id"),
    ("auto_increment other than 1", lambda t: sub("gtid = true", "gtid = true\nauto_increment_increment = 2", t),
     "db.auto_increment_increment", "kine"),
    ("wrong type", lambda t: sub("rise = 3 ", 'rise = "three" ', t), "db.rise", "integer"),
    ("bad choice", lambda t: sub('flavor = "auto"', 'flavor = "postgres"', t), "db.flavor",
     "auto, mysql, mariadb"),
    ("bad duration", lambda t: sub('timeout_client = "30m"', 'timeout_client = "30 minutes"', t),
     "balancers.timeout_client", "duration"),
    ("sub-second advert without fast mode", lambda t: sub("advert_int = 1", "advert_int = 0.1", t),
     "balancers.advert_int", "fast_mode"),
    ("priorities count", lambda t: sub("priorities = [100, 90]", "priorities = [100]", t),
     "vips.api.priorities", "one priority per host"),
    ("equal priorities", lambda t: sub("priorities = [100, 90]", "priorities = [100, 100]", t),
     "vips.api.priorities", "different priority"),
    ("vrid out of range", lambda t: sub("virtual_router_id = 3", "virtual_router_id = 300", t),
     "vips.api.virtual_router_id", "1-255"),
    ("host outside lab subnet", lambda t: sub('"10.77.0.52"', '"10.99.0.52"', t),
     "hosts.k3s-agent-02.address", "lab.subnet"),
    ("operator address outside subnet", lambda t: sub('operator_address = "10.77.0.1"',
                                                      'operator_address = "10.78.0.1"', t),
     "lab.operator_address", "outside"),
    ("lab name too long", lambda t: sub('name = "kha"', 'name = "k3s-ha-lab"', t), "lab.name",
     "prefix"),
    ("server and agent roles", lambda t: sub('roles = ["k3s-agent"]', 'roles = ["k3s-agent", "k3s-server"]', t),
     "hosts.k3s-agent-01.roles", "either"),
    ("missing VIP table", lambda t: t.replace("[vips.db]", "[unused_db_vip]"), "vips.db", "missing"),
    ("VIP equals host address", lambda t: sub('address = "10.77.0.101"', 'address = "10.77.0.31"', t),
     "vips.db.address", "address of host"),
    ("empty roles", lambda t: sub('roles = ["k3s-agent"]', "roles = []", t),
     "hosts.k3s-agent-01.roles", "empty"),
    ("invalid host name", lambda t: t + '\n[hosts.Bad_Name]\naddress = "10.77.0.61"\nroles = ["k3s-agent"]\n',
     "hosts.Bad_Name", "not a valid host name"),
    ("three db hosts", lambda t: t + '\n[hosts.k3s-db-03]\naddress = "10.77.0.33"\nroles = ["db"]\n',
     "hosts", "exactly two"),
    # issue 11, defect 4: replication refuses server id 0; keepalived needs an interface
    ("server_id 0 on a db host", lambda t: sub("server_id = 1", "server_id = 0", t),
     "hosts.k3s-db-01.server_id", "0 is not a server id"),
    ("server_id 0 on the other db host", lambda t: sub("server_id = 2", "server_id = 0", t),
     "hosts.k3s-db-02.server_id", "replication refuses"),
    ("server_id 0 on a non-db host", lambda t: sub('roles = ["k3s-agent"]',
                                                   'roles = ["k3s-agent"]\nserver_id = 0', t),
     "hosts.k3s-agent-01.server_id", "0 is not a server id"),
    ("server_id in [db]", lambda t: sub("rise = 3 ", "rise = 3\nserver_id = 0 ", t),
     "db.server_id", "unknown key"),
    ("empty VIP interface", lambda t: sub('interface = "host0"', 'interface = ""', t),
     "vips.api.interface", "empty"),
    ("empty db VIP interface", lambda t: sub('interface = "host0"', 'interface = ""', t.replace(
        'interface = "host0"', 'interface = "h0"', 1)), "vips.db.interface", "empty"),
    ("VIP interface with a space", lambda t: sub('interface = "host0"', 'interface = "eth 0"', t),
     "vips.api.interface", "not a network interface name"),
]


@pytest.mark.parametrize("desc,transform,keypath,words", CASES, ids=[c[0] for c in CASES])
def test_malformed_inventory_names_key_and_fix(desc, transform, keypath, words):
    problems = bad(transform(SHIPPED))
    hit = [p for p in problems if keypath in p]
    assert hit, f"no problem names {keypath!r}: {problems}"
    assert any(words.lower() in p.lower() for p in hit), (words, hit)
    assert any("Fix" in p or "fix" in p for p in hit), hit


def test_all_problems_reported_at_once():
    text = sub('roles = ["db"]', 'roles = ["dbb"]')
    text = sub("virtual_router_id = 4", "virtual_router_id = 3", text)
    text = sub('"10.77.0.52"', '"bogus"', text)
    problems = bad(text)
    assert len(problems) >= 3
    joined = "\n".join(problems)
    for key in ("roles[0]", "virtual_router_id", "k3s-agent-02.address"):
        assert key in joined


def test_invalid_toml_names_the_line():
    problems = bad(SHIPPED + "\n[hosts.x\n")
    assert re.search(r"line \d+", problems[0])


def test_missing_file_is_a_clean_error(tmp_path):
    with pytest.raises(InventoryError) as ei:
        inventory.load(tmp_path / "nope.toml")
    assert "K3S_HA_INVENTORY" in str(ei.value)


def test_env_var_selects_inventory(tmp_path, monkeypatch):
    p = tmp_path / "other.toml"
    p.write_text(SHIPPED.replace('name = "kha"', 'name = "zz"'))
    monkeypatch.setenv("K3S_HA_INVENTORY", str(p))
    inv = inventory.load()
    assert inv.path == p and inv.lab["name"] == "zz"
    assert inv.resolve_path(".lab/x") == tmp_path / ".lab/x"


def test_collapsed_topology_is_valid_with_another_port():
    text = SHIPPED.replace('roles = ["k3s-balancer"]', 'roles = ["k3s-agent"]')
    text = sub('address = "10.77.0.41"\nroles = ["k3s-server"]',
               'address = "10.77.0.41"\nroles = ["k3s-server", "k3s-balancer"]', text)
    text = sub('address = "10.77.0.42"\nroles = ["k3s-server"]',
               'address = "10.77.0.42"\nroles = ["k3s-server", "k3s-balancer"]', text)
    text = sub("api_port = 6443", "api_port = 7443", text)
    inv = inventory.parse(text)
    assert [h.name for h in inv.with_role("k3s-balancer")] == ["k3s-server-01", "k3s-server-02"]


def test_server_ids_default_by_position():
    text = SHIPPED.replace("server_id = 1\n", "").replace("server_id = 2\n", "server_id = 1\n")
    inv = inventory.parse(text)
    assert sorted(h.server_id for h in inv.with_role("db")) == [1, 2]


def test_unset_server_ids_are_numbered_but_zero_is_refused():
    """Leaving server_id out numbers the db hosts; writing 0 is an error (exit 2), not
    "unset": replication would refuse the server."""
    text = SHIPPED.replace("server_id = 1\n", "").replace("server_id = 2\n", "")
    assert [h.server_id for h in inventory.parse(text).with_role("db")] == [1, 2]
    with pytest.raises(InventoryError) as ei:
        inventory.parse(sub("server_id = 1", "server_id = 0"))
    assert ei.value.exit_code == 2
    assert len(ei.value.problems) == 1 and "Fix" in ei.value.problems[0]


def test_vip_interface_default_and_empty():
    text = SHIPPED.replace('interface = "host0"', "")
    assert {v.interface for v in inventory.parse(text).vips.values()} == {"eth0"}
    with pytest.raises(InventoryError) as ei:
        inventory.parse(SHIPPED.replace('interface = "host0"', 'interface = ""'))
    assert ei.value.exit_code == 2
    assert sorted(p.split(":")[0] for p in ei.value.problems) == ["vips.api.interface",
                                                                    "vips.db.interface"]


def test_failover_thresholds_are_checked() -> None:
    base = SHIPPED + "\n[failover]\nmax_lost_writes = -1\n[failover.max_outage_s]\nprimary-dwon = 3\nserver-down = 0\n"
    with pytest.raises(InventoryError) as e:
        inventory.parse(base)
    msg = str(e.value)
    assert "failover.max_lost_writes: must not be negative" in msg
    assert "failover.max_outage_s.primary-dwon: unknown scenario kind (did you mean 'primary-down'?)" in msg
    assert "failover.max_outage_s.server-down: expected seconds > 0" in msg
    ok = inventory.parse(SHIPPED + "\n[failover]\n[failover.max_outage_s]\nprimary-down = 3.5\n")
    assert ok.failover["max_outage_s"] == {"primary-down": 3.5}
    assert ok.failover["max_lost_writes"] == 0


def test_failover_kinds_match_the_drill_scenarios() -> None:
    from tasks.core.inventory.schema import FAILOVER_KINDS
    from tasks.failover import scenarios

    assert {s.kind for s in scenarios.SCENARIOS} <= set(FAILOVER_KINDS)
