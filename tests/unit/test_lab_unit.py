"""Unit tests of the lab's pure functions (no root, no namespaces)."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tasks.core import inventory
from tasks.lab import engine, labnet
from tasks.lab.names import lab_name
from tasks.core.errors import InputError, Refused

HOSTS_TOML = Path(__file__).resolve().parents[2] / "hosts.toml"

SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
"""


@pytest.fixture(scope="module")
def inv() -> inventory.Inventory:
    return inventory.load(HOSTS_TOML)


def test_names_are_prefixed_and_fit_interface_limits(inv):
    name = labnet.lab_name(inv)
    assert labnet.op_dev(name) == "kha-op"
    ports = [labnet.host_port(inv, h) for h in inv.hosts]
    assert len(set(ports)) == len(ports)
    for dev in ports + [labnet.op_dev(name), labnet.op_peer(name), labnet.bridge_name(name),
                        labnet.port_name("abcde", 999)]:
        assert dev.startswith(name) or dev.startswith("abcde")
        assert len(dev) <= 15
    assert labnet.switch_ns(name).startswith("kha-")
    assert labnet.host_ns(name, "k3s-db-01") == "kha-h-k3s-db-01"
    assert labnet.state_dir(inv) == HOSTS_TOML.parent / ".lab" / "kha"


def test_render_hosts_lists_every_host_and_vip(inv):
    text = labnet.render_hosts(inv)
    lines = text.splitlines()
    assert "10.77.0.31\tk3s-db-01 k3s-db-01.lab.lan" in lines
    assert "10.77.0.100\tk3s-balancer k3s-balancer.lab.lan" in lines
    assert "10.77.0.101\tk3s-db-balancer k3s-db-balancer.lab.lan" in lines
    assert lines[0].startswith("127.0.0.1")
    assert sum(1 for ln in lines if ln.startswith("10.77.0.")) == len(inv.hosts) + 2


def test_sources_keep_machine_mirrors_and_drop_src():
    st = labnet.mirror_sources(SOURCES)
    assert [s["URIs"] for s in st] == [["http://deb.debian.org/debian"],
                                        ["http://deb.debian.org/debian-security"]]
    assert labnet.main_mirror(st) == "http://deb.debian.org/debian"
    assert labnet.security_mirror(st) == "http://deb.debian.org/debian-security"
    text = labnet.render_sources(st, "bookworm")
    assert "Suites: bookworm bookworm-updates" in text
    assert "Suites: bookworm-security" in text
    assert "deb-src" not in text and "snapshot" not in text
    assert "Suites: trixie trixie-updates" in labnet.render_sources(st, "trixie")


def test_mirror_override_replaces_main_mirror_only():
    st = labnet.mirror_sources(SOURCES, "http://mirror.example/debian/")
    assert labnet.main_mirror(st) == "http://mirror.example/debian"
    assert labnet.security_mirror(st) == "http://deb.debian.org/debian-security"


def test_no_sources_is_a_clear_error():
    with pytest.raises(InputError, match="lab.mirror"):
        labnet.mirror_sources("")


def test_apt_proxy_conf():
    conf = labnet.render_apt_proxy("10.77.0.1", 3142, check_valid_until=False)
    assert 'Acquire::http::Proxy "http://10.77.0.1:3142";' in conf
    assert 'Check-Valid-Until "false"' in conf
    assert "Check-Valid-Until" not in labnet.render_apt_proxy("10.77.0.1")


def test_acng_conf_is_own_instance(tmp_path):
    conf = labnet.render_acng_conf(tmp_path, "10.77.0.1", 3142,
                                   "http://deb.debian.org/debian-security")
    assert f"CacheDir: {tmp_path / 'cache'}" in conf
    assert f"LogDir: {tmp_path / 'log'}" in conf
    assert "BindAddress: 10.77.0.1" in conf
    assert "ForeGround: 1" in conf
    assert "file:backends_debian" in conf
    assert "http://deb.debian.org/debian-security/" in conf


def test_nft_rules_per_direction():
    both = labnet.render_nft("kha_lab", {"kha-p3": (30, "both")})
    assert 'oifname "kha-p3" ether type { ip, ip6 } numgen random mod 100 < 30 drop' in both
    assert 'iifname "kha-p3" ether type { ip, ip6 } numgen random mod 100 < 30 drop' in both
    assert both.startswith("table bridge kha_lab\ndelete table bridge kha_lab\n")
    inn = labnet.render_nft("kha_lab", {"kha-p3": (10, "in")})
    assert 'oifname "kha-p3"' in inn and "iifname" not in inn
    out = labnet.render_nft("kha_lab", {"kha-p3": (10, "out")})
    assert 'iifname "kha-p3"' in out and "oifname" not in out
    full = labnet.render_nft("kha_lab", {"kha-p3": (100, "out")})
    assert 'iifname "kha-p3" ether type { ip, ip6 } drop' in full
    empty = labnet.render_nft("kha_lab", {"kha-p3": (0, "both")})
    assert "drop" not in empty and "policy accept" in empty


def test_route_overlap():
    routes = [{"dst": "default", "dev": "eth0"}, {"dst": "192.0.2.0/24", "dev": "eth0"},
              {"dst": "10.77.0.0/24", "dev": "kha-op"}, {"dst": "10.0.0.0/8", "dev": "wg0"},
              {"dst": "fd00::/8", "dev": "eth0"}]
    assert labnet.route_overlap("10.78.0.0/24", routes[:3], "kha-op") is None
    assert labnet.route_overlap("10.77.0.0/24", routes[:3], "kha-op") is None  # our own
    assert labnet.route_overlap("10.77.0.0/24", routes[:3], "khat-op")["dev"] == "kha-op"
    assert labnet.route_overlap("10.78.0.0/24", routes, "kha-op")["dst"] == "10.0.0.0/8"
    assert labnet.route_overlap("192.0.2.128/25", routes, "x-op")["dst"] == "192.0.2.0/24"


def test_free_subnet_skips_used_ranges():
    routes = [{"dst": "10.77.0.0/24", "dev": "kha-op"}, {"dst": "10.78.0.0/16", "dev": "x"}]
    assert labnet.free_subnet(routes) == "10.79.0.0/24"


def test_image_key_depends_on_suite_and_package_set():
    a = labnet.image_key("bookworm", ["curl", "sudo"])
    assert a == labnet.image_key("bookworm", ["sudo", "curl", "curl"])
    assert a != labnet.image_key("bookworm", ["sudo", "curl", "python3-yaml"])
    assert a != labnet.image_key("trixie", ["curl", "sudo"])
    assert a.startswith("bookworm-")


def test_image_packages_include_base_and_extra(inv):
    inv.lab["extra_packages"] = ["python3-yaml"]
    try:
        pk = labnet.image_packages(inv)
        assert "python3-yaml" in pk and set(labnet.BASE_PACKAGES) <= set(pk)
        assert labnet.image_path(inv).parent == labnet.IMAGE_CACHE
    finally:
        inv.lab["extra_packages"] = []


def test_known_hosts_lines_and_merge():
    pubs = ["ssh-ed25519 AAAAC3Nza root@h1\n", "ecdsa-sha2-nistp256 AAAAE2Vj root@h1"]
    lines = labnet.known_hosts_lines("10.77.0.11", 22, pubs)
    assert lines == ["10.77.0.11 ssh-ed25519 AAAAC3Nza",
                     "10.77.0.11 ecdsa-sha2-nistp256 AAAAE2Vj"]
    assert labnet.known_hosts_lines("10.77.0.11", 2222, pubs[:1]) == [
        "[10.77.0.11]:2222 ssh-ed25519 AAAAC3Nza"]
    old = ("10.77.0.11 ssh-ed25519 OLD\n10.77.0.12 ssh-ed25519 KEEP\n"
           "10.77.0.111 ssh-ed25519 KEEP2\n[10.77.0.11]:22 ssh-rsa OLD2\n")
    new = labnet.merge_known_hosts(old, ["10.77.0.11"], lines)
    assert "OLD" not in new
    assert "KEEP" in new and "KEEP2" in new
    assert new.count("10.77.0.11 ") == 2
    assert labnet.merge_known_hosts("10.77.0.11 ssh-ed25519 X\n", ["10.77.0.11"], []) == ""


def test_secrets_render_is_toml():
    vals = {k: "v-" + k for k in labnet.SECRET_KEYS}
    assert tomllib.loads(labnet.render_secrets(vals)) == vals


def test_overlay_paths_refuse_separators():
    assert labnet.safe_mount_path(Path("/var/cache/k3s-ha/images/x")) == \
        "/var/cache/k3s-ha/images/x"
    for bad in ("/a,b", "/a:b", "/a b"):
        with pytest.raises(InputError):
            labnet.safe_mount_path(Path(bad))


def test_lab_functions_refuse_real_inventories(inv):
    text = HOSTS_TOML.read_text().replace("enabled = true", "enabled = false", 1)
    real = inventory.parse(text, HOSTS_TOML)
    for fn in (labnet.up, labnet.down, labnet.status):
        with pytest.raises(Refused, match="lab.enabled is false"):
            fn(real)
    for fn in (labnet.power_off, labnet.power_on, labnet.partition, labnet.heal,
               labnet.link_down, labnet.link_up, labnet.clear_loss, labnet.is_running):
        with pytest.raises(Refused):
            fn(real, "k3s-db-01")
    with pytest.raises(Refused):
        labnet.loss(real, "k3s-db-01", 30)


# ------------------------------------------------------------------ defect 6: the lab name
def test_claim_of_the_lab_name():
    C = engine.Claim
    assert engine.claim_of("", "/a/hosts.toml", running=False) is C.FREE
    assert engine.claim_of("", "/a/hosts.toml", running=True) is C.FREE
    assert engine.claim_of("/a/hosts.toml", "/a/hosts.toml", running=True) is C.OURS
    assert engine.claim_of("/b/hosts.toml", "/a/hosts.toml", running=False) is C.FREE
    assert engine.claim_of("/b/hosts.toml", "/a/hosts.toml", running=True) is C.OTHER


@pytest.fixture
def lab_of_another_inventory(tmp_path, monkeypatch, inv):
    """The lab name "kha" running, started from another inventory file; sweep recorded."""
    owners = tmp_path / "owners"
    owners.mkdir()
    other = tmp_path / "other" / "hosts.toml"
    (owners / "kha.owner").write_text(f"{other}\n")
    monkeypatch.setattr(engine, "OWNERS", owners)
    monkeypatch.setattr(engine.network, "list_netns", lambda: ["kha-h-k3s-db-01", "kha-sw"])
    swept: list[str] = []
    monkeypatch.setattr(engine, "sweep", lambda i: swept.append(lab_name(i)))
    return other, owners / "kha.owner", swept


@pytest.mark.parametrize("yes", [True, False])  # --yes, and no terminal (pytest's stdin)
def test_up_never_stops_a_lab_of_another_inventory_unasked(inv, lab_of_another_inventory, yes):
    other, owner_file, swept = lab_of_another_inventory
    with pytest.raises(Refused) as e:
        engine.take_over(inv, log=lambda _: None, yes=yes)
    msg = str(e.value)
    assert str(other) in msg and "fab lab.down" in msg and "[lab] name" in msg, msg
    assert e.value.exit_code == 2
    assert swept == [] and owner_file.read_text() == f"{other}\n"


@pytest.mark.parametrize("answer,stopped", [("y", True), ("n", False)])
def test_up_asks_before_stopping_a_lab_of_another_inventory(inv, lab_of_another_inventory,
                                                             monkeypatch, answer, stopped):
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from tasks.core import secrets

    other, owner_file, swept = lab_of_another_inventory
    monkeypatch.setattr(engine, "interactive", lambda yes=False: True)
    monkeypatch.setattr(secrets, "interactive", lambda yes=False: True)
    seen: list[str] = []
    real_confirm = secrets.confirm
    monkeypatch.setattr(engine, "confirm", lambda m, **kw: seen.append(m) or real_confirm(m, **kw))
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        pipe.send_text(answer + "\r")
        if stopped:
            assert engine.take_over(inv, log=lambda _: None) is True
        else:
            with pytest.raises(Refused, match="left running"):
                engine.take_over(inv, log=lambda _: None)
    assert str(other) in seen[0]
    assert swept == (["kha"] if stopped else [])
    mine = f"{inv.path.resolve()}\n"
    assert owner_file.read_text() == (mine if stopped else f"{other}\n")


# `nft -j list table bridge khat_lab` (nft 1.0.6) after render_nft of the rules below
NFT_LOSS_JSON = (
    '{"nftables":[{"table":{"family":"bridge","name":"khat_lab","handle":2}},{"chain":{"famil'
    'y":"bridge","table":"khat_lab","name":"forward","handle":1,"type":"filter","hook":"forwa'
    'rd","prio":0,"policy":"accept"}},{"rule":{"family":"bridge","table":"khat_lab","chain":"'
    'forward","handle":3,"expr":[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right'
    '":"khat-p1"}},{"match":{"op":"==","left":{"payload":{"protocol":"ether","field":"type"}}'
    ',"right":{"set":["ip","ip6"]}}},{"drop":null}]}},{"rule":{"family":"bridge","table":"kha'
    't_lab","chain":"forward","handle":5,"expr":[{"match":{"op":"==","left":{"meta":{"key":"o'
    'ifname"}},"right":"khat-p2"}},{"match":{"op":"==","left":{"payload":{"protocol":"ether",'
    '"field":"type"}},"right":{"set":["ip","ip6"]}}},{"match":{"op":"<","left":{"numgen":{"mo'
    'de":"random","mod":100,"offset":0}},"right":5}},{"drop":null}]}},{"rule":{"family":"brid'
    'ge","table":"khat_lab","chain":"forward","handle":7,"expr":[{"match":{"op":"==","left":{'
    '"meta":{"key":"oifname"}},"right":"khat-p3"}},{"match":{"op":"==","left":{"payload":{"pr'
    'otocol":"ether","field":"type"}},"right":{"set":["ip","ip6"]}}},{"match":{"op":"<","left'
    '":{"numgen":{"mode":"random","mod":100,"offset":0}},"right":30}},{"drop":null}]}},{"rule'
    '":{"family":"bridge","table":"khat_lab","chain":"forward","handle":9,"expr":[{"match":{"'
    'op":"==","left":{"meta":{"key":"iifname"}},"right":"khat-p3"}},{"match":{"op":"==","left'
    '":{"payload":{"protocol":"ether","field":"type"}},"right":{"set":["ip","ip6"]}}},{"match'
    '":{"op":"<","left":{"numgen":{"mode":"random","mod":100,"offset":0}},"right":30}},{"drop'
    '":null}]}}]}'
)


def test_loss_rules_are_read_back_from_nftables():
    rules = {"khat-p1": (100, "out"), "khat-p2": (5, "in"), "khat-p3": (30, "both")}
    assert labnet.parse_loss(NFT_LOSS_JSON) == rules
    empty = '{"nftables":[{"table":{"family":"bridge","name":"khat_lab","handle":2}}]}'
    assert labnet.parse_loss(empty) == {}
    assert labnet.parse_loss("") == {}


def test_a_host_whose_boot_stalled_is_booted_once_more(monkeypatch):
    """[lab] one container in a full run never answered SSH: booted again before failing,
    and the failure quotes its console."""
    from types import SimpleNamespace

    from tasks.core.errors import StepFailed
    from tasks.lab import engine
    calls = []
    answers = [False, True]

    def wait_ssh(inv, host, timeout):
        calls.append(("wait", host))
        if not answers.pop(0):
            raise StepFailed(f"{host} (10.0.0.9): SSH not answering after {timeout:.0f}s.")
        return 1.0
    monkeypatch.setattr(engine.containers, "wait_ssh", wait_ssh)
    monkeypatch.setattr(engine.containers, "stop_host", lambda inv, h: calls.append(("stop", h)))
    monkeypatch.setattr(engine.containers, "console_tail", lambda inv, h: "systemd: hung")
    monkeypatch.setattr(engine, "_prepare_host", lambda inv, h, i, f: calls.append(("boot", h.name)))
    monkeypatch.setattr(engine, "lab_name", lambda inv: "t")
    h, logs = SimpleNamespace(name="k3s-server-02"), []
    engine._wait_or_reboot(None, h, None, {}, 5, logs.append)
    assert calls == [("wait", "k3s-server-02"), ("stop", "k3s-server-02"),
                     ("boot", "k3s-server-02"), ("wait", "k3s-server-02")]
    assert "booting k3s-server-02 once more" in logs[0] and "systemd: hung" in logs[0]
    answers[:] = [False, False]
    with pytest.raises(StepFailed, match="console ended with:\nsystemd: hung"):
        engine._wait_or_reboot(None, h, None, {}, 5, logs.append)


def test_subnet_claims_are_seen_across_processes(tmp_path):
    """tests/lab/labid.py: a /24 claimed by a live process (here the parent) is skipped, a
    dead process's claim is taken over, a free one is claimed with this process's pid."""
    import os
    import subprocess

    from tests.lab import labid

    (tmp_path / "10.9.1").write_text(str(os.getppid()))
    assert not labid._take("10.9.1", tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "10.9.2").write_text(str(dead.pid))
    assert labid._take("10.9.2", tmp_path)
    assert labid._take("10.9.3", tmp_path)
    assert (tmp_path / "10.9.2").read_text() == (tmp_path / "10.9.3").read_text() == \
        str(os.getpid())
