"""What a k3s node is given: config.yaml and the env file (goldens), the datastore
endpoint, the kubeconfig rewrite, --host resolution, the bootstrap verdict.

Goldens: tests/golden/k3s/. After a deliberate change: pytest --update-golden, review the diff.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tasks.core import inventory
from tasks.core.errors import InputError, Refused, StepFailed
from tasks.k3s import bootstrap, config as kc, kubeconfig, nodes
from tasks.k3s.token import parse_token

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "k3s"
CA = "ab" * 32
TOKEN = parse_token(f"K10{CA}::server:serversecret1234")
AGENT_TOKEN = parse_token(f"K10{CA}::node:agentsecret5678", want_user="node")
DB_PW = "dbPass-42_x"


def inv(**cluster: object) -> inventory.Inventory:
    i = inventory.parse((ROOT / "hosts.toml").read_text(), ROOT / "hosts.toml")
    i.cluster.update(cluster)
    return i


def golden(request: pytest.FixtureRequest, name: str, text: str) -> None:
    path = GOLDEN / name
    if request.config.getoption("--update-golden"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_server_config_yaml(request: pytest.FixtureRequest) -> None:
    i = inv(tls_san=["k3s.example.org"])
    spec = kc.node_spec(i, i.host("k3s-server-01"), kc.Role.SERVER, {}, "CA PEM")
    golden(request, "server.config.yaml", spec.config_yaml)
    assert 'datastore-cafile: "/etc/rancher/k3s/datastore-ca.crt"' in spec.config_yaml
    assert spec.datastore_ca == "CA PEM"
    assert "tls-san:\n  - \"10.77.0.100\"\n  - \"k3s-balancer.lab.lan\"" in spec.config_yaml
    assert '"CriticalAddonsOnly=true:NoExecute"' in spec.config_yaml


def test_agent_config_yaml_has_no_server_keys(request: pytest.FixtureRequest) -> None:
    i = inv()
    spec = kc.node_spec(i, i.host("k3s-agent-01"), kc.Role.AGENT, {})
    golden(request, "agent.config.yaml", spec.config_yaml)
    for key in ("tls-san", "node-taint", "token", "datastore"):
        assert key not in spec.config_yaml


def test_no_taint_when_the_inventory_has_none() -> None:
    i = inv(node_taint="")
    assert "node-taint" not in kc.node_spec(i, i.host("k3s-server-01"), kc.Role.SERVER,
                                            {}, "CA").config_yaml


def test_datastore_cafile_only_with_db_tls() -> None:
    i = inv()
    with pytest.raises(InputError, match="datastore CA is missing"):
        kc.node_spec(i, i.host("k3s-server-01"), kc.Role.SERVER, {})
    i.db["tls"] = False
    spec = kc.node_spec(i, i.host("k3s-server-01"), kc.Role.SERVER, {})
    assert "datastore-cafile" not in spec.config_yaml and spec.datastore_ca == ""
    agent = kc.node_spec(inv(), i.host("k3s-agent-01"), kc.Role.AGENT, {}, "CA")
    assert agent.datastore_ca == "" and "datastore" not in agent.config_yaml


def test_server_env_file(request: pytest.FixtureRequest) -> None:
    env = kc.server_env(inv(), DB_PW, TOKEN, AGENT_TOKEN)
    golden(request, "server.service.env", kc.render_env(env))
    assert env["K3S_DATASTORE_ENDPOINT"] == \
        "mysql://k3s:dbPass-42_x@tcp(k3s-db-balancer.lab.lan:3306)/k3s"


def test_agent_env_file_joins_through_the_api_vip(request: pytest.FixtureRequest) -> None:
    env = kc.agent_env(inv(), TOKEN)
    golden(request, "agent.service.env", kc.render_env(env))
    assert env["K3S_URL"] == "https://k3s-balancer.lab.lan:6443"


def test_vip_address_when_it_has_no_name() -> None:
    i = inv()
    i.vips["db"] = i.vips["db"].__class__(**{**i.vips["db"].__dict__, "name": ""})
    assert "@tcp(10.77.0.101:3306)/" in kc.datastore_endpoint(i, DB_PW)


@pytest.mark.parametrize("pw", ["", "a/b", "a@b", "it's", "a b", "x)y"])
def test_datastore_password_the_dsn_cannot_carry_is_refused(pw: str) -> None:
    with pytest.raises(InputError, match="k3s_db_password"):
        kc.datastore_endpoint(inv(), pw)


def test_env_file_round_trip_with_quotes() -> None:
    env = {"K3S_TOKEN": "a'b\"c$d", "K3S_URL": "https://x:6443"}
    assert kc.parse_env(kc.render_env(env)) == env
    assert kc.parse_env("export K3S_TOKEN=\"q\"\n# c\nK3S_URL=plain\n") == {
        "K3S_TOKEN": "q", "K3S_URL": "plain"}


def test_reconcile_keeps_the_bare_spelling_of_the_same_token() -> None:
    current = {"K3S_TOKEN": "serversecret1234", "K3S_DATASTORE_ENDPOINT": "old"}
    desired = kc.server_env(inv(), DB_PW, TOKEN)
    out = kc.reconcile_env(current, desired)
    assert out["K3S_TOKEN"] == "serversecret1234"  # same token: no change, no restart
    assert out["K3S_DATASTORE_ENDPOINT"] == desired["K3S_DATASTORE_ENDPOINT"]
    other = kc.reconcile_env({"K3S_TOKEN": "othersecret"}, desired)
    assert other["K3S_TOKEN"] == TOKEN.text


def test_installer_input_per_method() -> None:
    i = inv()
    script = kc.installer_env(i, {"K3S_TOKEN": "t"}, method="script")
    assert script["INSTALL_K3S_VERSION"] == "v1.31.5+k3s1"
    assert script["INSTALL_K3S_SKIP_START"] == "true" and "INSTALL_K3S_SKIP_DOWNLOAD" not in script
    binary = kc.installer_env(i, {"K3S_TOKEN": "t"}, method="binary")
    assert binary["INSTALL_K3S_SKIP_DOWNLOAD"] == "true" and binary["INSTALL_K3S_SKIP_START"]


# ------------------------------------------------------------------ --host
def test_host_resolution() -> None:
    i = inv()
    assert [h.name for h in nodes.resolve_hosts(i, kc.Role.AGENT, [])] == [
        "k3s-agent-01", "k3s-agent-02"]
    assert [h.name for h in nodes.resolve_hosts(i, kc.Role.AGENT, ["k3s-agent-02"])] == [
        "k3s-agent-02"]
    with pytest.raises(InputError) as e:
        nodes.resolve_hosts(i, kc.Role.AGENT, ["k3s-agent-03", "k3s-server-01"])
    assert e.value.exit_code == 2
    assert "k3s-agent-03, k3s-server-01: not a k3s-agent host" in str(e.value)
    assert "use one of: k3s-agent-01, k3s-agent-02" in str(e.value)


def test_remove_node_needs_a_k3s_host() -> None:
    i = inv()
    with pytest.raises(InputError, match="--host is required"):
        nodes.resolve_k3s_hosts(i, [])
    with pytest.raises(InputError, match="k3s-db-01: not a k3s server or agent"):
        nodes.resolve_k3s_hosts(i, ["k3s-db-01"])


# ------------------------------------------------------------------ kubeconfig
K3S_YAML = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EK
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: S0VZCg==
"""


def test_kubeconfig_points_at_the_vip_with_merge_friendly_names(
        request: pytest.FixtureRequest) -> None:
    i = inv()
    out = kubeconfig.rewrite(K3S_YAML, kc.api_url(i), kubeconfig.context_name(i))
    golden(request, "kubeconfig.yaml", out)
    assert "default" not in out and "127.0.0.1" not in out
    assert "client-key-data: S0VZCg==" in out


def test_kubeconfig_that_is_not_k3s_s_is_refused() -> None:
    with pytest.raises(StepFailed, match="does not look like"):
        kubeconfig.rewrite("apiVersion: v1\n", "https://x:6443", "n")


def test_kubeconfig_written_private(tmp_path: Path) -> None:
    p = tmp_path / "k.kubeconfig"
    kubeconfig.write_private(p, "x")
    assert p.stat().st_mode & 0o777 == 0o600


def test_kubeconfig_names_the_vip_when_it_resolves_here_else_its_address() -> None:
    i = inv()
    url, note = kubeconfig.operator_server(i, 6443, resolve=lambda n: True)
    assert url == "https://k3s-balancer.lab.lan:6443" and note == ""
    url, note = kubeconfig.operator_server(i, 6443, resolve=lambda n: False)
    assert url == "https://10.77.0.100:6443"
    assert "k3s-balancer.lab.lan does not resolve" in note and "/etc/hosts" in note
    assert i.vips["api"].address in kc.tls_sans(i)  # the address is in the certificate too


# ------------------------------------------------------------------ bootstrap verdict
def key(secret: str) -> str:
    return "/bootstrap/" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def test_bootstrap_verdicts() -> None:
    other = parse_token(f"K10{CA}::server:othersecret9876")
    assert bootstrap.judge([], TOKEN, []).held is bootstrap.Held.EMPTY
    assert bootstrap.judge([key("serversecret1234")], TOKEN, []).held is bootstrap.Held.SAME
    v = bootstrap.judge([key("othersecret9876")], TOKEN, [("k3s-server-01", other)])
    assert v.held is bootstrap.Held.OTHER
    assert v.holder == f"K10{CA[:12]}...9876, as on k3s-server-01"
    with pytest.raises(Refused, match="bootstrap data already found") as e:
        bootstrap.refuse_other(v, TOKEN, "k3s-server-02", inv())
    assert "serversecret" not in str(e.value) and "othersecret" not in str(e.value)
    assert "DROP TABLE k3s.kine" in str(e.value)


def test_bootstrap_tombstones_do_not_count() -> None:
    rows = [{"name": key("old"), "deleted": 1}, {"name": key("serversecret1234"), "deleted": 0}]
    assert bootstrap.live_keys(rows) == [key("serversecret1234")]
