"""Unit tests of the lab's k3s stand-in (tasks/lab/standin): no lab, no MySQL.

The stand-in is a self-contained package (it runs alone on lab hosts), so it is loaded by
path under the name `standin`, the name it has inside the zipapp: this works whether or
not `tasks/lab/` is a package.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "tasks" / "lab" / "standin"


def _load_standin():
    if "standin" in sys.modules:
        return sys.modules["standin"]
    spec = importlib.util.spec_from_file_location("standin", PKG / "__init__.py",
                                                  submodule_search_locations=[str(PKG)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["standin"] = mod
    spec.loader.exec_module(mod)
    return mod


standin = _load_standin()
from standin import api, certs, config, kine, kubeconfig, kubectl, notify  # noqa: E402
from standin import nodes as N  # noqa: E402
from standin import tokens as T  # noqa: E402
from standin.agent import server_urls  # noqa: E402
from standin.build import build  # noqa: E402
from standin.registry import PasswordRejected, Registry  # noqa: E402

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


# ------------------------------------------------------------------ tokens
def test_token_full_form_round_trip_and_ca_check():
    text = T.format_token(CA, "server", "s3cret")
    assert text == f"K10{T.ca_hash(CA)}::server:s3cret"
    tok = T.parse_token(text + "\n")
    assert (tok.secret, tok.role, tok.ca_hash) == ("s3cret", "server", T.ca_hash(CA))
    T.check_ca(tok, CA)
    with pytest.raises(T.TokenError, match="token CA hash does not match the Cluster CA"):
        T.check_ca(tok, CA + b"x")
    assert "s3cret" not in tok.fingerprint() and tok.fingerprint().endswith("cret")


@pytest.mark.parametrize("text,secret,role", [
    ("plainsecret", "plainsecret", None),
    ("K10" + "a" * 64 + "::node:abc", "abc", "node"),
])
def test_token_forms(text, secret, role):
    tok = T.parse_token(text)
    assert (tok.secret, tok.role) == (secret, role)
    if role is None:
        T.check_ca(tok, CA)  # bare secrets are not checked, like k3s


@pytest.mark.parametrize("bad", ["", "K10abc::server:x", "K10" + "a" * 64 + "::admin:x",
                                 "two words"])
def test_token_invalid(bad):
    with pytest.raises(T.TokenError):
        T.parse_token(bad)


def test_seal_opens_only_with_the_same_secret():
    blob = T.seal("one", b'{"ca": "pem"}')
    assert b"pem" not in blob
    assert T.unseal("one", blob) == b'{"ca": "pem"}'
    with pytest.raises(T.TokenError, match=T.DIFFERENT_TOKEN):
        T.unseal("two", blob)
    assert T.bootstrap_key("one") == T.bootstrap_key("one") != T.bootstrap_key("two")


# ------------------------------------------------------------------ config.yaml subset
YAML = """\
# k3s config
token: "abc#not-a-comment"   # a comment
tls-san:
  - k3s-balancer.lab.lan
  - "10.0.0.100"
node-taint: ["CriticalAddonsOnly=true:NoExecute", 'a=b:NoSchedule']
with-node-id: true
node-label:
- zone=a
write-kubeconfig-mode: '0644'
"""


def test_yaml_subset():
    assert config.parse_yaml(YAML) == {
        "token": "abc#not-a-comment",
        "tls-san": ["k3s-balancer.lab.lan", "10.0.0.100"],
        "node-taint": ["CriticalAddonsOnly=true:NoExecute", "a=b:NoSchedule"],
        "with-node-id": True, "node-label": ["zone=a"], "write-kubeconfig-mode": "0644"}


@pytest.mark.parametrize("text,word", [
    ("kubelet:\n  max-pods: 10\n", "nested"),
    ("- orphan\n", "outside a list"),
    ("token: &x abc\n", "unsupported"),
    ("token: |\n  abc\n", "unsupported"),
    ("tls-san: [a, b\n", "same line"),
    ("just text\n", "key: value"),
])
def test_yaml_subset_fails_clearly(text, word):
    with pytest.raises(config.ConfigError, match=word) as e:
        config.parse_yaml(text, "/etc/rancher/k3s/config.yaml")
    assert "config.yaml line" in str(e.value)


def test_config_d_append_and_override():
    merged = config.merge_config_files([{"tls-san": ["a"], "token": "x"},
                                        {"tls-san+": ["b"], "token": "y"}])
    assert merged == {"tls-san": ["a", "b"], "token": "y"}


def test_precedence_flag_over_file_over_env_and_lists_combine():
    cli = {"token": None, "node-name": "from-flag", "tls-san": ["cli-san"], "debug": None}
    files = {"token": "from-file", "node-name": "file-name", "tls-san": ["file-san"]}
    env = {"K3S_TOKEN": "from-env", "K3S_DATASTORE_ENDPOINT": "mysql://u:p@tcp(h:3306)/d"}
    s = config.merge_settings("server", cli, files, env)
    assert s["token"] == "from-file" and s["node-name"] == "from-flag"
    assert s["tls-san"] == ["file-san", "cli-san"]
    assert s["datastore-endpoint"] == "mysql://u:p@tcp(h:3306)/d"
    assert s["data-dir"] == "/var/lib/rancher/k3s" and s["debug"] is False
    assert config.merge_settings("server", {}, {}, {"K3S_TOKEN": "e"})["token"] == "e"


def test_unknown_config_key_fails_other_role_key_is_ignored():
    with pytest.raises(config.ConfigError, match="unknown key 'tls-sans'"):
        config.merge_settings("server", {}, {"tls-sans": ["x"]}, {})
    s = config.merge_settings("agent", {}, {"tls-san": ["x"]}, {})  # shared config.yaml
    assert "tls-san" not in s


def test_load_settings_bad_flag_and_files(tmp_path):
    with pytest.raises(config.ConfigError, match="unrecognized arguments: --tls-sun"):
        config.load_settings("server", ["--tls-sun", "x"], {})
    cfg = tmp_path / "config.yaml"
    cfg.write_text("tls-san: [vip.lab]\nnode-taint:\n  - CriticalAddonsOnly=true:NoExecute\n")
    (tmp_path / "config.yaml.d").mkdir()
    (tmp_path / "config.yaml.d" / "10.yaml").write_text("tls-san+: [10.0.0.1]\n")
    s = config.load_settings("server", ["--config", str(cfg), "--tls-san", "cli,cli2",
                                        "--disable", "traefik"], {})
    assert s["tls-san"] == ["vip.lab", "10.0.0.1", "cli", "cli2"]
    assert s["ignored"] == ["disable"]
    tok = tmp_path / "tok"
    tok.write_text("fromfile\n")
    assert config.read_secret("flag", str(tok), "token") == "fromfile"
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load_settings("agent", ["-c", str(tmp_path / "nope.yaml")], {})


# ------------------------------------------------------------------ datastore endpoint
@pytest.mark.parametrize("dsn,want", [
    ("mysql://k3s:p@ss:w/rd@tcp(10.0.0.1:3306)/k3s", ("k3s", "p@ss:w/rd", "10.0.0.1", 3306, "k3s")),
    ("mysql://root:x@tcp(db.lab.lan)/", ("root", "x", "db.lab.lan", 3306, "kubernetes")),
    ("mysql://u:p%20q@tcp([fd00::1]:3307)/k?timeout=5s", ("u", "p%20q", "fd00::1", 3307, "k")),
    ("mysql://u:'\"`$@tcp(h:1)/d", ("u", "'\"`$", "h", 1, "d")),
])
def test_dsn(dsn, want):
    d = config.parse_dsn(dsn)
    assert (d.user, d.password, d.host, d.port, d.database) == want
    assert d.password not in d.masked() and "*****" in d.masked()


@pytest.mark.parametrize("bad", ["postgres://u:p@h/db", "mysql://u:p@tcp(h:x)/db", "mysql://nohost"])
def test_dsn_refused(bad):
    with pytest.raises(config.ConfigError):
        config.parse_dsn(bad)


# ------------------------------------------------------------------ kine revisions (pure)
def _row(id, name="k", created=1, deleted=0, create_revision=0, prev=0, value=b"v"):
    return kine.Row(id, name, created, deleted, create_revision, prev, 0, value)


def test_write_row_create_update_delete():
    assert kine.write_row("create", "k", b"v", None) == ("k", 1, 0, 0, 0, 0, b"v", 0)
    created = _row(7)
    assert kine.write_row("update", "k", b"w", created) == ("k", 0, 0, 7, 7, 0, b"w", 7)
    updated = _row(9, created=0, create_revision=7, prev=7)
    assert kine.write_row("delete", "k", None, updated) == ("k", 0, 1, 7, 9, 0, None, 9)
    gone = _row(10, created=0, deleted=1, create_revision=7, prev=9)
    assert kine.write_row("create", "k", b"again", gone) == ("k", 1, 0, 0, 10, 0, b"again", 10)
    with pytest.raises(kine.KeyExists):
        kine.write_row("create", "k", b"v", created)
    with pytest.raises(LookupError):
        kine.write_row("update", "k", b"v", gone)


def test_poll_waits_for_a_gap_then_fills_it():
    last, fill, gap = kine.poll_step(5, [6, 7, 9], None, now=100.0)
    assert (last, fill, gap) == (7, None, kine.Gap(8, 100.0))  # 8 missing: stop, remember
    assert kine.poll_step(7, [9], gap, now=100.5)[:2] == (7, None)  # still waiting
    last, fill, gap = kine.poll_step(7, [9], gap, now=101.0)
    assert (last, fill) == (7, 8)  # after FILL_WAIT: fill revision 8
    assert kine.poll_step(7, [8, 9], gap, now=101.2) == (9, None, None)  # filler seen


def test_poll_late_row_needs_no_fill():
    last, fill, gap = kine.poll_step(1, [3], None, now=0.0)
    assert kine.poll_step(last, [2, 3, 4], gap, now=0.3) == (4, None, None)
    assert kine.poll_step(4, [], None, now=1.0) == (4, None, None)


def test_range_end():
    assert kine.range_end("/registry/minions/") == "/registry/minions0"


class FakeKine(kine.Kine):
    """kine in memory: the same write_row logic and UNIQUE (name, prev_revision)."""

    def __init__(self):
        self.rows: list[kine.Row] = []

    def get(self, key):
        return next((r for r in reversed(self.rows) if r.name == key), None)

    def list(self, prefix):
        names = sorted({r.name for r in self.rows if r.name.startswith(prefix)})
        return [r for r in (self.get(n) for n in names) if not r.deleted]

    def write(self, op, key, value, prev, lease=0):
        name, created, deleted, crev, prev_rev, lease, value, _ = kine.write_row(
            op, key, value, prev, lease)
        if any(r.name == name and r.prev_revision == prev_rev for r in self.rows):
            raise kine.KeyExists(name)
        self.rows.append(kine.Row(len(self.rows) + 1, name, created, deleted, crev, prev_rev,
                                  lease, value))
        return len(self.rows)


def test_stale_write_is_a_duplicate_key_not_retried():
    k = FakeKine()
    k.put("/a", b"1")
    first = k.get("/a")
    k.write("update", "/a", b"2", first)
    with pytest.raises(kine.KeyExists):
        k.write("update", "/a", b"3", first)  # same prev_revision: 1062 in MySQL
    assert [r.id for r in k.rows] == [1, 2]


# ------------------------------------------------------------------ bootstrap (token semantics)
def test_bootstrap_token_semantics(tmp_path):
    from standin.host import Fatal
    from standin.server import bootstrap

    k = FakeKine()
    secret, data = bootstrap(k, None, None, tmp_path / "s1")  # first server: random token
    assert [r.name for r in k.rows] == [T.bootstrap_key(secret)]
    assert b"BEGIN" not in k.rows[0].value  # sealed
    full = T.parse_token(T.format_token(data["server-ca.crt"].encode(), "server", secret))
    again, data2 = bootstrap(k, full, None, tmp_path / "s2")  # second server, full token
    assert again == secret and data2["server-ca.crt"] == data["server-ca.crt"]
    assert (tmp_path / "s2" / "client-ca.key").read_text() == data["client-ca.key"]
    assert bootstrap(k, T.parse_token(secret), None, tmp_path / "s3")[0] == secret  # bare
    with pytest.raises(T.TokenError, match="^bootstrap data already found and encrypted "
                                           "with different token$"):
        bootstrap(k, T.parse_token("another-secret"), None, tmp_path / "x")
    with pytest.raises(T.TokenError, match="different token .no token given"):
        bootstrap(k, None, None, tmp_path / "x")
    other_ca = T.Token(secret, "0" * 64, "server")
    with pytest.raises(T.TokenError, match="token CA hash does not match"):
        bootstrap(k, other_ca, None, tmp_path / "x")
    with pytest.raises(Fatal, match="critical configuration value mismatch"):
        bootstrap(k, full, "an-agent-token", tmp_path / "x")
    assert len(k.rows) == 1  # refusals write nothing


def test_two_first_servers_racing_one_gets_the_duplicate_key(tmp_path):
    """Both saw an empty table; the second create hits UNIQUE (name, prev_revision=0)."""
    from standin.server import bootstrap

    k = FakeKine()
    bootstrap(k, T.parse_token("shared"), None, tmp_path / "a")
    with pytest.raises(kine.KeyExists):
        k.write("create", T.bootstrap_key("shared"), b"x", None)


def test_node_secrets():
    from standin.server import Cluster

    c = Cluster(Registry(FakeKine()), _Poller(), CA, "srv", "agt", "10.0.0.1")
    assert c.node_secret_ok("node", "agt") and c.node_secret_ok("node", "srv")
    assert c.node_secret_ok("server", "srv") and not c.node_secret_ok("server", "agt")
    assert not c.node_secret_ok("admin", "srv") and not c.node_secret_ok("node", "x")


# ------------------------------------------------------------------ nodes
NOW = 1_700_000_000.0


def _node(name="agent-1", server=False, taints=()):
    return N.new_node(name, server, "10.0.0.51", ["zone=a"], list(taints), NOW - 300)


@pytest.mark.parametrize("age,reported,want", [
    (5, True, "True"), (39, True, "True"), (41, True, "Unknown"), (5, False, "False"),
])
def test_ready_by_heartbeat_age(age, reported, want):
    lease = {"renewTime": N.rfc3339(NOW - age), "ready": reported}
    assert N.ready_status(lease, NOW) == want
    node = N.render_node(_node(), lease, NOW)
    assert node["status"]["conditions"][0]["status"] == want
    assert N.status_text(node) == ("Ready" if want == "True" else "NotReady")
    assert N.ready_status(None, NOW) == "Unknown"


def test_node_json_like_k3s():
    srv = N.render_node(_node("server-1", True, ["CriticalAddonsOnly=true:NoExecute"]),
                        {"renewTime": N.rfc3339(NOW)}, NOW, 42)
    labels = srv["metadata"]["labels"]
    assert labels["node-role.kubernetes.io/control-plane"] == "true"
    assert labels["node-role.kubernetes.io/master"] == "true"
    assert labels["kubernetes.io/hostname"] == "server-1" and labels["zone"] == "a"
    assert srv["spec"]["taints"] == [{"key": "CriticalAddonsOnly", "value": "true",
                                      "effect": "NoExecute"}]
    assert srv["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.51"},
                                          {"type": "Hostname", "address": "server-1"}]
    assert srv["status"]["nodeInfo"]["kubeletVersion"] == "v1.31.5+k3s1"
    assert srv["metadata"]["resourceVersion"] == "42"
    agent = N.render_node(_node(), None, NOW)
    assert N.roles(agent) == "<none>" and N.roles(srv) == "control-plane,master"
    assert not any(k.startswith("node-role") for k in agent["metadata"]["labels"])


def test_table_rendering_and_kubectl_format():
    nodes = [N.render_node(_node("server-1", True), {"renewTime": N.rfc3339(NOW)}, NOW),
             N.render_node({**_node(), "spec": {"unschedulable": True}}, None, NOW)]
    table = N.node_table(nodes, NOW, 7)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"][:5]] == [
        "Name", "Status", "Roles", "Age", "Version"]
    assert table["rows"][0]["cells"][:5] == ["server-1", "Ready", "control-plane,master", "5m",
                                            "v1.31.5+k3s1"]
    assert table["rows"][1]["cells"][1] == "NotReady,SchedulingDisabled"
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    text = kubectl.format_table(table, wide=False).splitlines()
    assert text[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert "INTERNAL-IP" in kubectl.format_table(table, wide=True)


@pytest.mark.parametrize("secs,text", [(5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"),
                                       (3 * 3600 + 60, "3h1m"), (50 * 3600, "2d2h")])
def test_human_age(secs, text):
    assert N.human_age(secs) == text


@pytest.mark.parametrize("bad", ["CriticalAddonsOnly=true", "x=y:Sometimes", ":NoSchedule"])
def test_bad_taint(bad):
    with pytest.raises(ValueError, match="invalid taint"):
        N.parse_taint(bad)


def test_node_password():
    h = N.hash_password("pw")
    assert N.verify_password("pw", h) and not N.verify_password("other", h)
    secret = N.password_secret("n1", h, NOW)
    assert secret["metadata"] == {"name": "n1.node-password.k3s", "namespace": "kube-system",
                                  "creationTimestamp": N.rfc3339(NOW)}
    assert N.check_password(secret, "pw") and not N.check_password(secret, "x")
    assert N.check_password(None, "anything")  # first join


def test_registry_password_rejected_until_node_deleted():
    reg = Registry(FakeKine())
    assert reg.register(_node("a1"), "pw-1") is True
    assert reg.register(_node("a1"), "pw-1") is False  # heartbeat, no new node
    with pytest.raises(PasswordRejected, match="Node password rejected, duplicate hostname"):
        reg.register(_node("a1"), "pw-rebuilt")
    assert reg.secret("a1.node-password.k3s") is not None
    assert reg.delete_node("a1", time.time())["metadata"]["name"] == "a1"
    assert reg.secret("a1.node-password.k3s") is None and reg.node("a1", time.time()) is None
    assert reg.register(_node("a1"), "pw-rebuilt") is True
    reg.delete_secret("a1.node-password.k3s")  # the other documented fix
    assert reg.register(_node("a1"), "pw-third") is False


def test_registry_cordon_and_servers():
    reg = Registry(FakeKine())
    reg.register(_node("s1", True), "p")
    reg.register(_node("a1"), "p")
    assert reg.servers(time.time()) == ["10.0.0.51"]
    assert reg.set_unschedulable("a1", True, time.time())["spec"]["unschedulable"] is True
    assert "unschedulable" not in reg.set_unschedulable("a1", False, time.time())["spec"]
    assert reg.servers(time.time() + 60) == []  # stale heartbeats


def test_node_name_with_node_id(tmp_path):
    from standin.host import node_name, node_password

    assert node_name({"node-name": "Agent-1"}, tmp_path) == "agent-1"
    first = node_name({"node-name": "a", "with-node-id": True}, tmp_path)
    assert re.fullmatch(r"a-[0-9a-f]{8}", first)
    assert node_name({"node-name": "a", "with-node-id": True}, tmp_path) == first  # kept
    pw = node_password(tmp_path)
    assert node_password(tmp_path) == pw
    assert stat.S_IMODE((tmp_path / "password").stat().st_mode) == 0o600


def test_agent_server_list():
    assert server_urls(["10.0.0.41", "10.0.0.42"], "https://vip:6443", 6443) == [
        "https://10.0.0.41:6443", "https://10.0.0.42:6443", "https://vip:6443"]
    assert server_urls(["fd00::1"], "https://10.0.0.41:6443", 6443)[0] == "https://[fd00::1]:6443"


# ------------------------------------------------------------------ API over real TLS
@pytest.mark.parametrize("method,path,level", [
    ("GET", "/ping", api.ANON), ("GET", "/cacerts", api.ANON), ("GET", "/readyz", api.AUTH),
    ("GET", "/version", api.AUTH), ("GET", "/api/v1/nodes", api.ADMIN),
    ("DELETE", "/api/v1/nodes/k3s-agent-01", api.ADMIN),
    ("GET", "/api/v1/namespaces/default/endpoints/kubernetes", api.NODE),
])
def test_routes(method, path, level):
    assert api.match_route(method, path)[0] == level


def test_routes_unknown():
    assert api.match_route("GET", "/apis/apps/v1") is None
    assert api.match_route("POST", "/api/v1/nodes") is None


class _Poller:
    """A datastore that always answers (health tests move last_ok themselves)."""

    def __init__(self):
        self.last_ok = time.monotonic() + 3600


@pytest.fixture(scope="module")
def _live_api(tmp_path_factory):
    from standin.server import Cluster

    tls = tmp_path_factory.mktemp("tls")
    certs.make_ca(tls, "server-ca", "k3s-server-ca")
    certs.make_ca(tls, "client-ca", "k3s-client-ca")
    ca = (tls / "server-ca.crt").read_bytes()
    certs.ensure_serving(tls, certs.subject_alt_names([], "test", ["127.0.0.1"]), ca)
    certs.ensure_client(tls, "client-admin", "/O=system:masters/CN=system:admin",
                        (tls / "client-ca.crt").read_bytes())
    certs.ensure_client(tls, "client-check", "/CN=haproxy-check",
                        (tls / "client-ca.crt").read_bytes())
    reg = Registry(FakeKine())
    reg.register(N.new_node("server-1", True, "127.0.0.1", [], [], time.time() - 90), "p")
    reg.register(N.new_node("agent-1", False, "127.0.0.2", [], [], time.time() - 30), "p")
    cluster = Cluster(reg, _Poller(), ca, "srvsecret", "agentsecret", "127.0.0.1")
    server = api.ApiServer(("127.0.0.1", 0), cluster, api.server_context(str(tls)))
    api.serve(server)
    url = f"https://127.0.0.1:{server.server_address[1]}"
    kc = tls / "k3s.yaml"
    kc.write_text(kubeconfig.render(url, ca, (tls / "client-admin.crt").read_bytes(),
                                    (tls / "client-admin.key").read_bytes()))
    yield url, tls, cluster, kc, reg
    server.shutdown()


def _fresh_node(reg, name: str, server: bool, ip: str, age: float) -> None:
    try:
        reg.register(N.new_node(name, server, ip, [], [], time.time() - age), "p")
    except Exception:  # already there with this password: keep it
        pass


@pytest.fixture
def live_api(_live_api):
    """The shared API server with both nodes registered again: tests delete nodes, and
    pytest-randomly runs them in any order."""
    url, tls, cluster, kc, reg = _live_api
    _fresh_node(reg, "server-1", True, "127.0.0.1", 90)
    _fresh_node(reg, "agent-1", False, "127.0.0.2", 30)
    return url, tls, cluster, kc


def _get(url, path, tls=None, cert=None, headers=None, timeout=5.0):
    from standin.client import context, request

    ctx = context((tls / "server-ca.crt").read_bytes() if tls else None,
                  *((tls / f"{cert}.crt").read_bytes(), (tls / f"{cert}.key").read_bytes())
                  if cert else (None, None))
    return request(url, "GET", path, ctx, headers=headers, timeout=timeout)


def test_anonymous_and_health(live_api):
    url, tls, cluster, _ = live_api
    assert _get(url, "/ping") == (200, b"pong")
    assert _get(url, "/cacerts")[1] == (tls / "server-ca.crt").read_bytes()
    assert _get(url, "/readyz", tls)[0] == 401
    assert _get(url, "/readyz", tls, "client-admin") == (200, b"ok")
    assert _get(url, "/readyz", tls, "client-check") == (200, b"ok")  # any client cert
    assert _get(url, "/api/v1/nodes", tls, "client-check")[0] == 403  # but not the nodes
    cluster.poller.last_ok = time.monotonic() - 10
    try:
        assert _get(url, "/readyz", tls, "client-admin")[0] == 503
    finally:
        cluster.poller.last_ok = time.monotonic() + 3600


def test_node_basic_auth(live_api):
    from standin.client import basic_auth

    url, tls, _, _ = live_api
    path = "/api/v1/namespaces/default/endpoints/kubernetes"
    code, body = _get(url, path, tls, headers=basic_auth("node", "agentsecret"))
    assert code == 200 and json.loads(body)["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]
    assert _get(url, path, tls, headers=basic_auth("server", "agentsecret"))[0] == 401
    assert _get(url, "/api/v1/nodes", tls, headers=basic_auth("server", "srvsecret"))[0] == 403


def test_keep_alive_survives_refused_bodies_and_bad_json(live_api):
    import http.client

    from standin.client import basic_auth, context

    url, tls, _, _ = live_api
    port = int(url.rsplit(":", 1)[1])
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context(None), timeout=5)
    conn.request("DELETE", "/api/v1/nodes/agent-1", body=b'{"propagationPolicy":"x"}')
    assert conn.getresponse().read() and True
    conn.request("POST", "/v1-k3s/standin/node", body=b"{not json",
                 headers=basic_auth("node", "agentsecret"))
    resp = conn.getresponse()
    assert resp.status == 400 and resp.read()
    conn.request("GET", "/ping")
    assert conn.getresponse().read() == b"pong"  # same connection, still in sync
    conn.close()


def test_hang_fault_keeps_tls_and_ping_but_the_api_answers_nothing(live_api):
    """As k3s with a hung kube-apiserver: its own router still answers /ping and /cacerts."""
    from standin.client import ClientError

    url, tls, cluster, _ = live_api
    cluster.hung.set()
    try:
        assert _get(url, "/ping", timeout=1.0) == (200, b"pong")
        assert _get(url, "/cacerts", timeout=1.0)[0] == 200
        for path in ("/readyz", "/version"):
            with pytest.raises(ClientError, match="timed out"):
                _get(url, path, tls, "client-check", timeout=1.0)
        with pytest.raises(ClientError, match="timed out"):
            _get(url, "/readyz", timeout=1.0)  # anonymous: hangs before any answer too
    finally:
        cluster.hung.clear()
    assert _get(url, "/readyz", tls, "client-check") == (200, b"ok")


def test_builtin_kubectl(live_api, capsys):
    url, tls, _, kc = live_api
    assert kubectl.run(["get", "nodes", "--kubeconfig", str(kc)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert sorted(line.split()[0] for line in out[1:]) == ["agent-1", "server-1"]
    assert kubectl.run(["get", "deployments", "--kubeconfig", str(kc)]) == 1
    assert kubectl.run(["delete", "node", "nope", "--kubeconfig", str(kc)]) == 1
    assert kubectl.run(["delete", "node", "nope", "--ignore-not-found",
                        "--kubeconfig", str(kc)]) == 0
    capsys.readouterr()
    assert kubectl.run(["get", "secret", "-n", "kube-system", "server-1.node-password.k3s",
                        "--kubeconfig", str(kc)]) == 0
    assert json.loads(capsys.readouterr().out)["type"] == "k3s.cattle.io/node-password"


@pytest.mark.skipif(not shutil.which("kubectl"), reason="no kubectl on PATH")
def test_real_kubectl_lists_cordons_deletes(live_api):
    url, tls, cluster, kc = live_api

    def k(*args):
        return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], capture_output=True,
                              text=True, timeout=30)
    p = k("get", "nodes")
    assert p.returncode == 0, p.stderr
    rows = {line.split()[0]: line.split() for line in p.stdout.splitlines()[1:]}
    assert rows["server-1"][1:3] == ["Ready", "control-plane,master"]
    assert rows["agent-1"][1:3] == ["Ready", "<none>"] and rows["agent-1"][4] == "v1.31.5+k3s1"
    items = json.loads(k("get", "nodes", "-o", "json").stdout)["items"]
    assert {i["metadata"]["name"] for i in items} == {"server-1", "agent-1"}
    assert k("drain", "agent-1", "--ignore-daemonsets").returncode == 0
    assert "SchedulingDisabled" in k("get", "node", "agent-1").stdout
    assert k("-n", "kube-system", "delete", "secret", "agent-1.node-password.k3s").returncode == 0
    assert k("delete", "node", "agent-1").returncode == 0
    assert "agent-1" not in k("get", "nodes").stdout


# ------------------------------------------------------------------ certificates, notify
def test_subject_alt_names():
    sans = certs.subject_alt_names(["k3s-balancer.lab.lan", "10.0.0.100"], "srv-1",
                                   ["10.0.0.41"])
    for want in ["DNS:k3s-balancer.lab.lan", "IP:10.0.0.100", "DNS:srv-1", "IP:10.0.0.41",
                 "IP:127.0.0.1", "DNS:kubernetes.default"]:
        assert want in sans
    assert "subjectAltName=DNS:a,IP:1.2.3.4" in certs.extensions(["DNS:a", "IP:1.2.3.4"], False)


def test_keys_are_private(live_api):
    _, tls, _, _ = live_api
    for key in tls.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_sd_notify(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        assert notify.sd_notify("READY=1", {"NOTIFY_SOCKET": path})
        assert s.recv(100) == b"READY=1"
    assert notify.sd_notify("READY=1", {}) is False


# ------------------------------------------------------------------ the zipapp
@pytest.fixture(scope="module")
def zipapp_k3s(tmp_path_factory):
    return build(tmp_path_factory.mktemp("build"))


def test_zipapp_says_it_is_a_stand_in(zipapp_k3s, tmp_path):
    assert zipapp_k3s.name == "k3s" and os.access(zipapp_k3s, os.X_OK)
    assert (zipapp_k3s.parent / "install.sh").read_bytes() == (PKG / "install.sh").read_bytes()
    assert zipapp_k3s.read_bytes().startswith(b"#!/usr/bin/python3\n")
    p = subprocess.run(["python3", "-I", str(zipapp_k3s), "--version"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0
    first, second = p.stdout.splitlines()[:2]
    assert first == "k3s version v1.31.5+k3s1 (standin)"
    assert "stand-in" in second and "NOT k3s" in second
    again = build(tmp_path)
    assert again.read_bytes() == zipapp_k3s.read_bytes()  # same bytes: no needless restart


def test_zipapp_runs_alone_with_its_pymysql(zipapp_k3s):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import pymysql, standin.kine; "
            "print(pymysql.__file__)")
    p = subprocess.run(["python3", "-I", "-c", code, str(zipapp_k3s)], capture_output=True,
                       text=True, timeout=30, cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().startswith(str(zipapp_k3s))


def test_zipapp_modules_load_from_their_bytecode(zipapp_k3s):
    """Each module is imported from the .pyc the build put beside it (zipimport writes no
    cache: without them every `k3s ...` run compiled them all first)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import standin.agent, "
            "standin.kubectl, standin.server, pymysql; print(standin.agent.__file__, "
            "standin.kubectl.__file__, standin.server.__file__, pymysql.__file__)")
    p = subprocess.run([sys.executable, "-I", "-c", code, str(zipapp_k3s)],
                       capture_output=True, text=True, timeout=30, cwd="/")
    assert p.returncode == 0, p.stderr
    assert all(f.endswith(".pyc") for f in p.stdout.split()), p.stdout


@pytest.mark.parametrize("argv,word", [
    (["server", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "unknown command"),
    (["server", "--datastore-endpoint", "postgres://x/y"], "only mysql://"),
    (["agent", "--server", "http://x:6443", "--token", "t"], "https://"),
])
def test_zipapp_bad_input_exit_1(zipapp_k3s, tmp_path, argv, word):
    env = {"PATH": os.environ["PATH"], "STANDIN_NODE_DIR": str(tmp_path)}
    p = subprocess.run([str(zipapp_k3s), *argv, *(["--data-dir", str(tmp_path)]
                        if argv[0] in ("server", "agent") else [])],
                       capture_output=True, text=True, timeout=30, env=env)
    assert p.returncode == 1 and word in p.stderr


# ------------------------------------------------------------------ install.sh
SECRET = "s3cr\"et$x`y\\z'q"


def _install(tmp, *args, **env):
    bindir = tmp / "bin"
    e = {"PATH": os.environ["PATH"], "INSTALL_K3S_BIN_DIR": str(bindir),
         "INSTALL_K3S_SYSTEMD_DIR": str(tmp / "systemd"), "INSTALL_K3S_SKIP_SYSTEMCTL": "true",
         "INSTALL_K3S_SKIP_DOWNLOAD": "true", "INSTALL_K3S_VERSION": "v1.31.5+k3s1", **env}
    return subprocess.run(["sh", str(PKG / "install.sh"), *args], capture_output=True,
                          text=True, env=e, timeout=60)


@pytest.fixture()
def fake_root(tmp_path):
    (tmp_path / "bin").mkdir()
    k3s = tmp_path / "bin" / "k3s"
    k3s.write_text("#!/bin/sh\necho fake\n")
    k3s.chmod(0o755)
    return tmp_path


def test_install_server_units_env_and_secret(fake_root):
    args = ["--tls-san", "k3s-balancer.lab.lan"]
    env = {"K3S_TOKEN": SECRET, "K3S_DATASTORE_ENDPOINT": f"mysql://k3s:{SECRET}@tcp(db:3306)/k3s",
           "INSTALL_K3S_EXEC": "server --node-taint CriticalAddonsOnly=true:NoExecute"}
    p = _install(fake_root, *args, **env)
    assert p.returncode == 0, p.stderr
    assert "s3cr" not in p.stdout + p.stderr
    unit = (fake_root / "systemd" / "k3s.service").read_text()
    for line in ["Type=notify", "TimeoutStartSec=0", "Restart=always", "RestartSec=5s",
                 f"EnvironmentFile=-{fake_root}/systemd/k3s.service.env",
                 f"ExecStart={fake_root}/bin/k3s \\"]:
        assert line in unit.splitlines()
    assert "server \\\n\t'--node-taint' \\\n\t'CriticalAddonsOnly=true:NoExecute' \\\n" \
           "\t'--tls-san' \\\n\t'k3s-balancer.lab.lan'" in unit
    env_file = fake_root / "systemd" / "k3s.service.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    lines = env_file.read_text().splitlines()
    assert 'K3S_TOKEN="s3cr\\"et\\$x\\`y\\\\z\'q"' in lines
    assert not any(x.startswith("INSTALL_K3S") for x in lines)
    again = _install(fake_root, *args, **env)
    assert "No change detected so skipping service start" in again.stdout
    changed = _install(fake_root, *args, **{**env, "K3S_TOKEN": "other"})
    assert "No change detected" not in changed.stdout


def test_install_agent_from_k3s_url(fake_root):
    p = _install(fake_root, K3S_URL="https://k3s-balancer.lab.lan:6443", K3S_TOKEN=SECRET)
    assert p.returncode == 0, p.stderr
    unit = (fake_root / "systemd" / "k3s-agent.service").read_text()
    assert f"ExecStart={fake_root}/bin/k3s \\\n    agent\n" in unit
    assert (fake_root / "bin" / "k3s-agent-uninstall.sh").exists()
    uninstall = (fake_root / "bin" / "k3s-agent-uninstall.sh").read_text()
    assert "rm -rf /etc/rancher/k3s" in uninstall and "/etc/rancher/node" not in uninstall.replace(
        "/etc/rancher/node (node password) is kept", "")
    assert "s3cr" not in p.stdout + p.stderr


@pytest.mark.parametrize("env,word", [
    ({"INSTALL_K3S_SKIP_DOWNLOAD": "false"}, "cannot download"),
    ({"K3S_URL": "http://vip:6443", "K3S_TOKEN": "x"}, "Only https://"),
    ({"K3S_URL": "https://vip:6443"}, "K3S_TOKEN or K3S_TOKEN_FILE is not defined"),
])
def test_install_refuses(fake_root, env, word):
    p = _install(fake_root, **env)
    assert p.returncode == 1 and word in p.stderr


def test_install_needs_the_binary(tmp_path):
    p = _install(tmp_path)
    assert p.returncode == 1 and "Executable k3s binary not found" in p.stderr


def test_kine_connects_in_clear_without_tls_files_and_verified_with_them(monkeypatch, tmp_path):
    """kine registers no TLS config without datastore-cafile/-certfile/-keyfile: the
    stand-in must not try TLS then (recent pymysql would, and the "TLS requested" check
    refused every plain datastore: [lab] the guide's settings never started)."""
    import pymysql

    seen = []

    class Probe(pymysql.connections.Connection):
        def __init__(self, **kw):
            super().__init__(defer_connect=True, **kw)
            seen.append(self.ssl)

    monkeypatch.setattr(kine, "tls_connection", lambda: Probe)
    dsn = config.parse_dsn("mysql://k3s:pw@tcp(db.example:3306)/k3s")
    kine.Kine(dsn)._connect("k3s")
    from tasks.db import tls

    ca = tmp_path / "ca.crt"
    ca.write_bytes(tls.new_ca().cert_pem)
    kine.Kine(dsn, ssl={"ca": str(ca)})._connect("k3s")
    assert seen == [False, True]
