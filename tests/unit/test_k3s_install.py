"""The commands a k3s node receives, asserted over a fake connection: secrets only on
stdin (never in a command line), the installer never starts k3s, a Ready unchanged node
gets no installer and no restart, a changed config.yaml restarts it."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from invoke import Config, Context, Result

from tasks.core import inventory
from tasks.core.run import Run
from tasks.k3s import config as kc, install, nodes
from tasks.k3s.token import parse_token

from tests.unit import fakelook, fakesftp

ROOT = Path(__file__).resolve().parents[2]
TOKEN = parse_token(f"K10{'ab' * 32}::server:SERVERSECRETzz99")
DB_PW = "DBPASSWORDqq77"
SECRETS = ("SERVERSECRETzz99", DB_PW)


class FakeHost(Context):
    """A host answering the probes from a dict of files and a set of flags."""

    def __init__(self, name: str, files: dict[str, str] | None = None, *, active: str = "inactive",
                 version: str = "", nodes_json: str = "") -> None:
        super().__init__(config=Config(overrides={"run": {"dry": False}}))
        # plain attributes, not invoke config entries (a Context proxies unknown names)
        state = {"k3s_host": inventory.Host(name=name, address="10.77.0.51",
                                            roles=("k3s-agent",)),
                 "user": "root", "host": name, "files": dict(files or {}), "active": active,
                 "version": version, "nodes_json": nodes_json,
                 "calls": [], "peer": None,  # calls: (command, stdin); peer: the API host
                 "modes": {}}  # path: mode, when not 600 (directories are files here)
        for k, v in state.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def commands(self) -> list[str]:
        return [c for c, _ in self.calls]

    def run(self, command: str, **kw: Any) -> Result:  # noqa: C901 - a small fake shell
        stream = kw.get("in_stream")
        self.calls.append((command, stream.getvalue() if stream else ""))
        if fakelook.is_look(command):
            return Result(fakelook.answer(command, file=self.files.get,
                                          unit=lambda u: ("enabled", self.active),
                                          mode=lambda p: self.modes.get(p, "600")))
        m = re.match(r"test -e (\S+) && base64 -w0 \1$", command)
        if m:
            data = self.files.get(m.group(1))
            return Result(base64.b64encode(data.encode()).decode() if data is not None else "",
                          exited=0 if data is not None else 1)
        m = re.match(r"test -e (\S+) && stat -c '%a %U %G' \1 && base64 -w0 \1$", command)
        if m:  # ssh.read_file_meta
            data = self.files.get(m.group(1))
            return Result("600 root root\n" + base64.b64encode(data.encode()).decode()
                          if data is not None else "", exited=0 if data is not None else 1)
        m = re.match(r"test -e (\S+) && stat -c '%a %U %G %s %F' \1$", command)
        if m:  # ops.path_stat
            path = m.group(1)
            data = self.files.get(path)
            return Result(f"{self.modes.get(path, '600')} root root {len(data)} regular file\n"
                          if data is not None else "", exited=0 if data is not None else 1)
        if command.startswith('echo "$(systemctl is-enabled '):  # ops.service_state
            return Result(f"enabled\n{self.active}\n")
        if command.startswith("systemctl is-active") and "; journalctl" in command:
            return Result(self.active + "\n" + self.journal())  # facts.unit_and_journal
        if command.startswith("systemctl is-active"):
            return Result(self.active + "\n", exited=0 if self.active == "active" else 3)
        if "k3s --version" in command:
            return Result(f"k3s version {self.version} (abc)\n" if self.version else "",
                          exited=0 if self.version else 1)
        if "get nodes -o json" in command:
            return Result(self.nodes_json, exited=0 if self.nodes_json else 1)
        if "systemctl" in command and "--no-block" in command:  # nodes.start
            self.active = "active"
            (self.peer or self).nodes_json = _ready("k3s-agent-01")
            return Result("2025-01-30 10:00:00\n" if command.startswith("date ") else "")
        if command.startswith("date "):
            return Result("2025-01-30 10:00:00\n")
        if command.startswith("journalctl"):
            return Result(self.journal())
        if "install.sh" in command or "k3s-install.sh" in command:
            self.files[kc.Role.AGENT.env_path] = kc.render_env(
                {k: v for k, v in _sourced(stream.getvalue()).items() if k.startswith("K3S_")})
            self.files[kc.Role.AGENT.unit_path] = "[Unit]\n"
        return Result("")

    def journal(self) -> str:
        return ""

    def sftp(self) -> fakesftp.FakeSftp:
        return fakesftp.FakeSftp(lambda path, data, mode: self.calls.append(
            (f"<put {path}>", "")))


def _sourced(text: str) -> dict[str, str]:
    return kc.parse_env(text)


def _ready(name: str) -> str:
    return json.dumps({"kind": "List", "items": [{
        "metadata": {"name": name, "labels": {}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}]})


def _inv() -> inventory.Inventory:
    """The shipped inventory with the script method (the lab's ships binary + the stand-in)."""
    text = (ROOT / "hosts.toml").read_text().replace('install_method = "binary"',
                                                      'install_method = "script"')
    return inventory.parse(text, ROOT / "hosts.toml")


def _spec(inv: inventory.Inventory) -> kc.NodeSpec:
    return kc.node_spec(inv, inv.host("k3s-agent-01"), kc.Role.AGENT, kc.agent_env(inv, TOKEN))


def _no_secret_in_argv(*hosts: FakeHost) -> None:
    for h in hosts:
        for cmd in h.commands():
            for s in SECRETS:
                assert s not in cmd, f"secret in a command line: {cmd}"


def test_installer_gets_secrets_on_stdin_only() -> None:
    inv = _inv()
    host = FakeHost("k3s-server-01")
    env = kc.server_env(inv, DB_PW, TOKEN)
    install.run_installer(host, inv, kc.Role.SERVER, env)
    (cmd, stdin), = host.calls
    assert f"set -a; . /dev/stdin; set +a; exec sh {kc.INSTALLER_PATH} server" in cmd
    _no_secret_in_argv(host)
    sourced = kc.parse_env(stdin)
    assert sourced["K3S_TOKEN"] == TOKEN.text and DB_PW in sourced["K3S_DATASTORE_ENDPOINT"]
    assert sourced["INSTALL_K3S_SKIP_START"] == "true"
    assert sourced["INSTALL_K3S_VERSION"] == "v1.31.5+k3s1"


def test_fresh_agent_installed_started_without_blocking_and_awaited() -> None:
    inv = _inv()
    r = Run(Context(), "t", inv=inv)
    host = FakeHost("k3s-agent-01", {kc.INSTALLER_PATH: "#!/bin/sh\n"})
    api = FakeHost("k3s-server-01")
    host.peer = api  # the node turns Ready in the server's API once started
    assert nodes.ensure_node(r, host, _spec(inv), api, timeout=5) is True
    cmds = host.commands()
    assert any("set -a; . /dev/stdin; set +a; exec sh /var/lib/k3s-ha/k3s-install.sh agent" in c
               for c in cmds)
    assert any("systemctl start --no-block k3s-agent" in c for c in cmds)
    assert not any("systemctl restart" in c or re.search(r"systemctl start k3s", c)
                   for c in cmds)
    # enable is ours (one systemd reload), not the installer's (two)
    assert sum(c.count("daemon-reload") for c in cmds) == 1, cmds
    assert any("systemctl enable --no-reload -q k3s-agent && systemctl start --no-block" in c
               for c in cmds), cmds
    assert "INSTALL_K3S_SKIP_ENABLE='true'" in next(i for c, i in host.calls if "set -a" in c)
    _no_secret_in_argv(host, api)
    assert host.files[kc.Role.AGENT.env_path] == kc.render_env(kc.agent_env(inv, TOKEN))


def _joined(inv: inventory.Inventory, config_yaml: str) -> tuple[FakeHost, FakeHost]:
    files = {kc.INSTALLER_PATH: "#!/bin/sh\n", kc.Role.AGENT.unit_path: "[Unit]\n",
             kc.Role.AGENT.env_path: kc.render_env(kc.agent_env(inv, TOKEN)),
             kc.CONFIG_PATH: config_yaml, nodes.NODE_PASSWORD_FILE: "pw"}
    files.update({kc.STATE_DIR: "", kc.CONFIG_DIR: ""})
    host = FakeHost("k3s-agent-01", files, active="active", version="v1.31.5+k3s1")
    host.modes.update({kc.STATE_DIR: "700", kc.CONFIG_DIR: "755"})
    api = FakeHost("k3s-server-01", nodes_json=_ready("k3s-agent-01"))
    return host, api


def test_ready_unchanged_node_gets_no_installer_and_no_restart() -> None:
    inv = _inv()
    host, api = _joined(inv, _spec(inv).config_yaml)
    assert nodes.ensure_node(Run(Context(), "t", inv=inv), host, _spec(inv), api) is False
    for c in host.commands():
        assert "set -a" not in c and "systemctl start" not in c and "restart" not in c
    # its reads in one round trip (tasks/core/lookahead.py), + `k3s --version` (script
    # method); then one look at the API
    assert len(host.commands()) == 2 and fakelook.is_look(host.commands()[0]), host.commands()
    assert len(api.commands()) == 1, api.commands()


def test_changed_config_restarts_without_running_the_installer() -> None:
    inv = _inv()
    host, api = _joined(inv, "node-name: old\n")
    assert nodes.ensure_node(Run(Context(), "t", inv=inv), host, _spec(inv), api,
                             timeout=5) is True
    cmds = host.commands()
    assert any("systemctl daemon-reload; } && systemctl enable --no-reload -q k3s-agent && "
               "systemctl restart --no-block k3s-agent" in c for c in cmds)
    assert not any("set -a" in c for c in cmds)


def test_rebuilt_host_is_refused_without_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    inv = _inv()
    host, api = _joined(inv, _spec(inv).config_yaml)
    del host.files[nodes.NODE_PASSWORD_FILE]
    host.active = "inactive"
    monkeypatch.setattr(nodes, "confirm", lambda *a, **k: False)
    with pytest.raises(nodes.Refused, match="node-password.k3s"):
        nodes.ensure_node(Run(Context(), "t", inv=inv), host, _spec(inv), api)
    assert not any("systemctl" in c and "--no-block" in c for c in host.commands())
    monkeypatch.setattr(nodes, "confirm", lambda *a, **k: True)
    nodes.ensure_node(Run(Context(), "t", inv=inv), host, _spec(inv), api, timeout=5)
    assert any("delete node k3s-agent-01" in c and "k3s-agent-01.node-password.k3s" in c
               for c in api.commands())


class RejectedHost(FakeHost):
    """A rebuilt host with a node password of its own: k3s logs "Node password rejected"
    until the old node is deleted through the API host (`peer`)."""

    def journal(self) -> str:
        forgotten = any("delete node" in c for c in self.peer.commands())
        return "" if forgotten else ('level=fatal msg="Node password rejected, duplicate '
                                     "hostname or contents of '/etc/rancher/node/password' "
                                     'may not match server node-passwd entry"\n')


def test_stale_ready_node_does_not_hide_node_password_rejected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The old node object is still Ready in the API (its last heartbeat is recent) while
    the reinstalled agent is rejected: the journal wins, the old node is forgotten."""
    inv = _inv()
    host = RejectedHost("k3s-agent-01", {nodes.NODE_PASSWORD_FILE: "other",
                                         kc.INSTALLER_PATH: "#!/bin/sh\n"}, active="inactive")
    api = FakeHost("k3s-server-01", nodes_json=_ready("k3s-agent-01"))
    host.peer = api
    monkeypatch.setattr(nodes, "confirm", lambda *a, **k: True)
    assert nodes.ensure_node(Run(Context(), "t", inv=inv), host, _spec(inv), api, timeout=5)
    assert any("delete node k3s-agent-01" in c for c in api.commands())
    assert sum("--no-block k3s-agent" in c for c in host.commands()) == 2  # start, restart


def test_dry_agents_stage_before_any_server_plans_instead_of_failing() -> None:
    """cluster.deploy --dry on a fresh cluster reaches join-agent with no server token yet."""
    from tasks.k3s import stages

    inv = _inv()
    server = FakeHost("k3s-server-01")  # nothing installed: no token file, no env file
    r = Run(Context(), "t", inv=inv, dry=True)
    r._conns["k3s-server-01"] = server
    object.__setattr__(server, "is_connected", True)
    stages.agents_stage(r, None)
    assert {k: v for k, v in r.results.items()} == {
        (h, "k3s-agent join"): "changed" for h in ("k3s-agent-01", "k3s-agent-02")}
    with pytest.raises(stages.StepFailed, match="install-server first"):
        stages.agents_stage(_real(inv, server), None)  # a real run still refuses


def _real(inv: inventory.Inventory, server: FakeHost) -> Run:
    r = Run(Context(), "t", inv=inv)  # not dry
    r._conns["k3s-server-01"] = server
    return r


def test_datastore_not_readable_is_said_in_a_dry_run_and_fails_a_real_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.k3s import bootstrap, stages

    def unreadable(*a: Any, **k: Any) -> list[str]:
        raise stages.StepFailed("cannot read the datastore through the VIP")

    monkeypatch.setattr(bootstrap, "read_keys", unreadable)
    inv = _inv()
    server = FakeHost("k3s-server-01")
    dry = Run(Context(), "t", inv=inv, dry=True)
    dry._conns["k3s-server-01"] = server
    object.__setattr__(server, "is_connected", True)
    stages.check_datastore(dry, inv.host("k3s-server-01"), TOKEN, DB_PW)
    with pytest.raises(stages.StepFailed, match="through the VIP"):
        stages.check_datastore(_real(inv, server), inv.host("k3s-server-01"), TOKEN, DB_PW)


# ---- adopting a node built by hand: config.yaml written, k3s not restarted needlessly

def _ready_at(name: str, ip: str, taints: list[str] | None = None) -> str:
    node = json.loads(_ready(name))["items"][0]
    node["status"]["addresses"] = [{"type": "InternalIP", "address": ip}]
    node["spec"] = {"taints": [dict(zip(("key", "effect"), t.split(":"))) for t in taints or []]}
    return json.dumps({"kind": "List", "items": [node]})


def test_hand_built_node_gets_config_yaml_without_a_restart() -> None:
    """No config.yaml (built with the installer's flags), same env and binary, and the
    running node already has the name and address config.yaml gives: written, no restart."""
    inv = _inv()
    host, api = _joined(inv, "")
    del host.files[kc.CONFIG_PATH]
    api.nodes_json = _ready_at("k3s-agent-01", inv.host("k3s-agent-01").address)
    r = Run(Context(), "t", inv=inv)
    assert nodes.ensure_node(r, host, _spec(inv), api, timeout=5) is True
    cmds = host.commands()
    assert "<put /tmp" in " ".join(cmds) and any(kc.CONFIG_PATH in c for c in cmds)
    assert not any("--no-block" in c or "set -a" in c for c in cmds), cmds
    assert r.results[("k3s-agent-01", "k3s-agent kept running")] == "ok"


def test_hand_built_node_with_another_address_is_restarted() -> None:
    inv = _inv()
    host, api = _joined(inv, "")
    del host.files[kc.CONFIG_PATH]
    api.nodes_json = _ready_at("k3s-agent-01", "10.99.0.9")  # k3s picked another address
    nodes.ensure_node(Run(Context(), "t", inv=inv), host, _spec(inv), api, timeout=5)
    assert any("systemctl restart --no-block k3s-agent" in c for c in host.commands())


def test_settings_in_effect_read_from_the_running_k3s() -> None:
    from tasks.k3s import effect

    sans = effect.parse_sans("X509v3 Subject Alternative Name: \n    DNS:kubernetes, "
                             "DNS:k3s-balancer.lab.lan, IP Address:10.77.0.100, IP Address:"
                             "127.0.0.1\n")
    assert sans == {"kubernetes", "k3s-balancer.lab.lan", "10.77.0.100", "127.0.0.1"}
    node = nodes.facts.parse_nodes(_ready_at("s1", "10.77.0.41",
                                             ["CriticalAddonsOnly=true:NoExecute"]))[0]
    cfg = {"node-name": "s1", "node-ip": "10.77.0.41", "tls-san": ["10.77.0.100",
           "k3s-balancer.lab.lan"], "node-taint": ["CriticalAddonsOnly=true:NoExecute"],
           "write-kubeconfig-mode": "0600"}
    run = effect.Running(node, sans, "600")
    assert effect.not_in_effect(cfg, run) == []
    assert effect.not_in_effect({**cfg, "tls-san": ["k3s-balancer"]}, run) == ["tls-san"]
    assert effect.not_in_effect({**cfg, "node-taint": ["x=y:NoSchedule"]}, run) == ["node-taint"]
    assert effect.not_in_effect(cfg, effect.Running(node, sans, "644")) == [
        "write-kubeconfig-mode"]
    assert effect.not_in_effect(cfg, effect.Running(None, sans, "600")) == [
        "node-name", "node-ip", "node-taint"]
    assert effect.not_in_effect({"cluster-cidr": "10.42.0.0/16"}, run) == ["cluster-cidr"]
