"""Balancer configs against golden files, the status parsers, and rejected values.

Goldens: tests/golden/balancers/<case>.<host>.{haproxy.cfg,keepalived.conf}. After a
deliberate change, regenerate with `pytest tests/unit --update-golden` and review the diff.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tasks.balancers import config as b
from tasks.facts import haproxy
from tasks.core import inventory
from tasks.core.errors import InputError, InventoryError

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent.parent / "golden" / "balancers"
SHIPPED = (ROOT / "hosts.toml").read_text()


def with_settings(text: str, section: str, settings: str) -> str:
    """The shipped inventory with `settings` lines appended to [section]."""
    head = f"[{section}]\n"
    assert head in text
    return text.replace(head, head + settings.strip() + "\n", 1)


def replace_hosts(text: str, hosts: str) -> str:
    return text[:text.index("\n[hosts.") + 1] + hosts


COLLAPSED_HOSTS = """
[hosts.k3s-db-balancer-01]
address = "10.77.0.21"
roles = ["db-balancer"]

[hosts.k3s-db-balancer-02]
address = "10.77.0.22"
roles = ["db-balancer"]

[hosts.k3s-db-01]
address = "10.77.0.31"
roles = ["db"]

[hosts.k3s-db-02]
address = "10.77.0.32"
roles = ["db"]

[hosts.k3s-server-01]
address = "10.77.0.41"
roles = ["k3s-server", "k3s-balancer"]

[hosts.k3s-server-02]
address = "10.77.0.42"
roles = ["k3s-server", "k3s-balancer"]

[hosts.k3s-server-03]
address = "10.77.0.43"
roles = ["k3s-server"]
"""

BOTH_ROLES_HOSTS = """
[hosts.lb-01]
address = "10.77.0.11"
roles = ["k3s-balancer", "db-balancer"]

[hosts.lb-02]
address = "10.77.0.12"
roles = ["k3s-balancer", "db-balancer"]

[hosts.k3s-db-01]
address = "10.77.0.31"
roles = ["db"]

[hosts.k3s-db-02]
address = "10.77.0.32"
roles = ["db"]

[hosts.k3s-server-01]
address = "10.77.0.41"
roles = ["k3s-server"]

[hosts.k3s-server-02]
address = "10.77.0.42"
roles = ["k3s-server"]
"""

# case -> (inventory text, hosts to render)
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "guide-defaults": (SHIPPED, ("k3s-balancer-01", "k3s-balancer-02", "k3s-db-balancer-01",
                                 "k3s-db-balancer-02")),
    "roundrobin": (with_settings(SHIPPED, "balancers", 'api_backend = "roundrobin"'),
                   ("k3s-balancer-01",)),
    "api-ssl-hello-chk": (with_settings(SHIPPED, "balancers",
                                        'api_health_check = "ssl-hello-chk"'),
                          ("k3s-balancer-01",)),
    "api-tcp-check": (with_settings(SHIPPED, "balancers", 'api_health_check = "tcp-check"'),
                      ("k3s-balancer-01",)),
    "db-http-check": (with_settings(SHIPPED, "db", 'health_check = "http"'),
                      ("k3s-db-balancer-01",)),
    "unicast": (with_settings(SHIPPED, "balancers", "unicast = true"),
                ("k3s-balancer-01", "k3s-db-balancer-02")),
    "fast-mode": (with_settings(SHIPPED, "balancers", "fast_mode = true\nadvert_int = 0.1"),
                  ("k3s-balancer-01", "k3s-balancer-02")),
    "collapsed-7443": (replace_hosts(with_settings(SHIPPED, "balancers", "api_port = 7443\napi_backend = \"roundrobin\""),
                                     COLLAPSED_HOSTS), ("k3s-server-01", "k3s-server-02")),
    "both-roles": (replace_hosts(SHIPPED, BOTH_ROLES_HOSTS), ("lb-01", "lb-02")),
}


def _dedupe(text: str) -> str:
    """Remove the keys a test appended when hosts.toml already sets them (TOML forbids dups)."""
    out, seen = [], set()
    section = ""
    for line in text.splitlines():
        m = re.match(r"^\[(.+)\]$", line)
        if m:
            section, seen = m.group(1), set()
        key = re.match(r"^(\w+)\s*=", line)
        if key and (section, key.group(1)) in seen:
            continue
        if key:
            seen.add((section, key.group(1)))
        out.append(line)
    return "\n".join(out) + "\n"


def load(text: str) -> inventory.Inventory:
    return inventory.parse(_dedupe(text), "hosts.toml")


PARAMS = [(case, host, kind) for case, (_, hosts) in CASES.items() for host in hosts
          for kind in ("haproxy.cfg", "keepalived.conf")]


@pytest.mark.parametrize("case,host,kind", PARAMS)
def test_config_matches_golden(case: str, host: str, kind: str, update_golden: bool) -> None:
    inv = load(CASES[case][0])
    fn = b.haproxy_config if kind == "haproxy.cfg" else b.keepalived_config
    text = fn(inv, inv.host(host))
    path = GOLDEN / f"{case}.{host}.{kind}"
    if update_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


# ------------------------------------------------------------------ properties of the configs
def test_guide_defaults_keep_the_design_and_fix_its_weak_spots() -> None:
    inv = load(SHIPPED)
    hap = b.haproxy_config(inv, inv.host("k3s-balancer-01"))
    assert "bind 127.0.0.1:9000" in hap and "stats uri /stats" in hap
    assert "stats socket /run/haproxy/admin.sock mode 600 level admin" in hap
    for t in ("connect 5s", "client 30m", "server 30m", "check 5s"):
        assert f"timeout {t}" in hap
    assert "server k3s-server-02 k3s-server-02.lab.lan:6443 check check-ssl verify none backup" \
        in hap
    ka = b.keepalived_config(inv, inv.host("k3s-balancer-01"))
    assert "auth_type" not in ka and "authentication" not in ka
    assert "enable_script_security" in ka and "script_user root" in ka
    assert "garp_master_refresh 1" in ka
    assert "state MASTER" in ka and "priority 100" in ka and "virtual_router_id 3" in ka
    ka2 = b.keepalived_config(inv, inv.host("k3s-balancer-02"))
    assert "state BACKUP" in ka2 and "priority 90" in ka2


def test_datastore_has_one_writer() -> None:
    inv = load(SHIPPED)
    hap = b.haproxy_config(inv, inv.host("k3s-db-balancer-01"))
    servers = [ln.strip() for ln in hap.splitlines() if ln.strip().startswith("server ")]
    assert len(servers) == 2
    # the sticky writer: no backup, the writer held in a stick table synced by peers
    assert not any("backup" in s.split() for s in servers)
    assert [s.split()[s.split().index("id"):][:2] for s in servers] == [["id", "1"], ["id", "2"]]
    assert all(s.endswith(" send-proxy-v2") for s in servers)  # [db] proxy_protocol default
    assert "stick-table type integer size 2 nopurge store gpt0 peers k3s-db-peers" in hap
    # a response sets the entry only while it names no UP server (no late answer of the
    # old writer takes the writes back after a switchover)
    assert ("tcp-response content sc-set-gpt0(0) srv_id unless { sc0_get_gpt0 eq 1 } "
            "{ srv_is_up(k3s-db/k3s-db-01) } or { sc0_get_gpt0 eq 2 } "
            "{ srv_is_up(k3s-db/k3s-db-02) }" in hap) and "stick on" not in hap
    assert ("use-server k3s-db-02 if { sc0_get_gpt0 eq 2 } { srv_is_up(k3s-db/k3s-db-02) }"
            in hap)
    assert "localpeer k3s-db-balancer-01" in hap
    assert ("default-server inter 500ms fastinter 100ms fall 3 rise 3 on-marked-down "
            "shutdown-sessions") in hap
    assert "option httpchk" in hap and "mysql-check" not in hap
    # every check tells the db daemon which server the writer entry holds
    assert "http-check send meth GET uri / hdr X-K3s-Ha-Writer %[int(1),table_gpt0(k3s-db)]" in hap
    assert "frontend k3s-api" not in hap


def test_fast_mode_both_backup_vrrp3() -> None:
    inv = load(CASES["fast-mode"][0])
    for h in ("k3s-balancer-01", "k3s-balancer-02"):
        ka = b.keepalived_config(inv, inv.host(h))
        assert "vrrp_version 3" in ka and "advert_int 0.1" in ka and "state BACKUP" in ka
        assert "state MASTER" not in ka


def test_unicast_names_the_peer() -> None:
    inv = load(CASES["unicast"][0])
    ka = b.keepalived_config(inv, inv.host("k3s-balancer-01"))
    assert "unicast_src_ip 10.77.0.11" in ka and re.search(r"unicast_peer \{\s+10.77.0.12\s+\}", ka)


def test_both_roles_on_one_host() -> None:
    inv = load(CASES["both-roles"][0])
    hap = b.haproxy_config(inv, inv.host("lb-01"))
    assert hap.count("frontend ") == 2 and hap.count("listen stats") == 1
    ka = b.keepalived_config(inv, inv.host("lb-01"))
    assert ka.count("vrrp_instance ") == 2 and ka.count("vrrp_script ") == 1


def test_not_a_balancer_is_refused() -> None:
    inv = load(SHIPPED)
    with pytest.raises(InputError, match="not a balancer"):
        b.haproxy_config(inv, inv.host("k3s-db-01"))
    with pytest.raises(InputError, match="--role"):
        b.balancer_hosts(inv, "web")


# ------------------------------------------------------------------ bad values
@pytest.mark.parametrize("section,setting,message", [
    ("balancers", 'api_backend = "round-robin"', "balancers.api_backend"),
    ("balancers", 'api_health_check = "httpcheck"', "balancers.api_health_check"),
    ("balancers", 'timeout_client = "30 minutes"', "balancers.timeout_client"),
    ("balancers", "advert_int = 0.1", "needs fast_mode"),
    ("balancers", "check_interval = 0.5", "balancers.check_interval"),
    ("balancers", "stats_port = 6443", "balancers.stats_port"),
    ("db", 'check_user = "x; rm -rf /"', "db.check_user"),
])
def test_bad_value_is_rejected(section: str, setting: str, message: str) -> None:
    with pytest.raises(InventoryError) as e:
        load(with_settings(SHIPPED, section, setting))
    assert message in str(e.value)


# ------------------------------------------------------------------ parsers
SHOW_STAT = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx
stats,FRONTEND,,,0,1,262114,1,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,1,,,,0
stats,BACKEND,0,0,0,0,26212,0,0,0,0,0,,0,0,0,0,UP,0,0,0,,0,42,,,1,2,0,,0,,1,0,,0,,,,0
k3s-api,FRONTEND,,,0,0,262114,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,3,0,,,,0,0,0,0,,,,
k3s-api,k3s-server-01,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,42,0,,1,4,1,,0,,2,0,,0,L7OK,200,3,
k3s-api,k3s-server-02,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,0,1,3,1,17,17,,1,4,2,,0,,2,0,,0,L4CON,,0,
k3s-api,BACKEND,0,0,0,0,26212,0,0,0,0,0,,0,0,0,0,UP,1,1,1,,0,42,0,,1,4,0,,0,,1,0,,0,,,,
"""


def test_parse_show_stat() -> None:
    rows = haproxy.parse_show_stat(SHOW_STAT)
    assert [(r.server, r.backup, r.status, r.check, r.since) for r in rows] == [
        ("k3s-server-01", False, "UP", "L7OK 200 in 3ms", "42s"),
        ("k3s-server-02", True, "DOWN", "L4CON in 0ms", "17s"),
    ]
    assert haproxy.parse_show_stat("") == []
    assert haproxy.parse_show_stat("Unknown command\n") == []


def test_failed_line_names_the_line() -> None:
    content = "global\n    daemon\n    bogus 1\n"
    hap = "[ALERT] (1) : config : parsing [/etc/haproxy/haproxy.cfg.k3sha-new:3] : unknown keyword"
    assert b.failed_line(hap, content) == "line 3: bogus 1"
    ka = "(/etc/keepalived/keepalived.conf.k3sha-new: Line 2) Unknown keyword 'daemon'"
    assert b.failed_line(ka, content) == "line 2: daemon"
    assert b.failed_line("no line here", content) == ""
