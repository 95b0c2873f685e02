"""The k3s stand-in for real in the lab (instance "st" + 3 random characters,
10.77.40.0/24 when free): NOT k3s.

One MariaDB (plain apt + SQL on k3s-db-01; the db tasks are tested elsewhere), two servers
and one agent installed with the stand-in's install.sh and the zipapp from build(). Then:
kubectl (the machine's own) lists 3 nodes, a wrong token is refused, the kine rows are
contiguous, a rebuilt agent hits "Node password rejected" until its node is deleted,
the hang fault, an agent failing over between servers, and servers exiting ~10 s after the
datastore stops and coming back under systemd. The lab is torn down even on failure.

The build-up (datastore, first server, second server, agent) is four module fixtures, each
run once by whichever test needs it first, each recording what its test checks; a test
that breaks something puts it back, so the tests run in any order and alone.
"""
from __future__ import annotations

import calendar
import importlib.util
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tasks.core import inventory
from tasks.lab import labnet
from tests.lab import labid, labinv

pytestmark = pytest.mark.lab
PKG = Path(__file__).resolve().parents[2] / "tasks" / "lab" / "standin"
NAME, NET = labid.claim("st", "10.77.40")  # unique per run
DB, S1, S2, AGENT = "k3s-db-01", "k3s-server-01", "k3s-server-02", "k3s-agent-01"
HOSTS = {DB: (f"{NET}.31", "db"), "k3s-db-02": (f"{NET}.32", "db"),  # db-02: inventory rule
         S1: (f"{NET}.41", "k3s-server"), S2: (f"{NET}.42", "k3s-server"),
         AGENT: (f"{NET}.51", "k3s-agent")}
ADDR = {h: a for h, (a, _) in HOSTS.items()}
TIMINGS: dict[str, float] = {}


def _inventory(folder: Path) -> Path:
    hosts = {h: labinv.host(a, r) for h, (a, r) in HOSTS.items()}
    return labinv.write(folder, labinv.render(labinv.base(NAME, NET), hosts))


def _build(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("standin_build", PKG / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build(out)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    folder = tmp_path_factory.mktemp("khs")
    inv = inventory.load(_inventory(folder))
    try:
        t0 = time.monotonic()
        labnet.up(inv, log=lambda m: None)
        TIMINGS["lab up"] = time.monotonic() - t0
        yield inv, _build(folder / "build"), folder
    finally:
        labnet.down(inv, log=lambda m: None)
        print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f}s" for k, v in TIMINGS.items()))


def ssh(inv, host: str, cmd: str, input: str | bytes | None = None, timeout: float = 120,
        check: bool = True) -> subprocess.CompletedProcess:
    text = not isinstance(input, bytes)
    p = subprocess.run(labnet.ssh_argv(inv, host, [cmd]), input=input, capture_output=True,
                       text=text, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{host}: {cmd[:80]} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def wait_for(fn, timeout: float = 30.0, every: float = 0.5):
    end = time.monotonic() + timeout
    while True:
        val = fn()
        if val or time.monotonic() > end:
            return val
        time.sleep(every)


STATE: dict[str, object] = {}  # what the build-up fixtures made, once


def _install(inv, host: str, k3s: Path, env: dict[str, str], args: str) -> None:
    """Upload the zipapp and install.sh, install with SKIP_START, start with our timeout."""
    ssh(inv, host, "cat > /usr/local/bin/k3s && chmod 755 /usr/local/bin/k3s",
        input=k3s.read_bytes())
    ssh(inv, host, "cat > /root/install.sh", input=(PKG / "install.sh").read_text())
    exports = "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items())
    script = (f"set -a\n{exports}INSTALL_K3S_SKIP_DOWNLOAD=true\nINSTALL_K3S_SKIP_START=true\n"
              f"set +a\nsh /root/install.sh {args}\n")
    p = ssh(inv, host, "sh -s", input=script)  # secrets through stdin, never argv
    assert not any(v in p.stdout + p.stderr for k, v in env.items() if k != "K3S_URL")
    service = "k3s-agent" if "K3S_URL" in env else "k3s"
    ssh(inv, host, f"timeout 60 systemctl start {service}")


def kubectl(folder: Path, *args: str, server: str = S1, timeout: float = 20):
    kc = folder / f"kubeconfig-{server}"
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), "--request-timeout", "5s",
                           *args], capture_output=True, text=True, timeout=timeout)


def node_rows(folder: Path, server: str = S1) -> dict[str, list[str]]:
    p = kubectl(folder, "get", "nodes", server=server)
    return {line.split()[0]: line.split() for line in p.stdout.splitlines()[1:]}


# ------------------------------------------------------------------ deploy
@pytest.fixture(scope="module")
def datastore(lab):
    """MariaDB on k3s-db-01 with a k3s user, once."""
    if "endpoint" not in STATE:
        inv, _, _ = lab
        t0 = time.monotonic()
        ssh(inv, DB, "(timeout -k 5 60 apt-get update -q || timeout -k 5 120 apt-get update -q)"
            " && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
            "mariadb-server", timeout=400)
        ssh(inv, DB, "printf '[mysqld]\\nbind-address = 0.0.0.0\\n' > "
            "/etc/mysql/mariadb.conf.d/99-khs.cnf && systemctl restart mariadb")
        pw = "p@ss:w/rd-" + secrets.token_hex(6)  # ':' '@' '/' as operators' passwords have
        ssh(inv, DB, "mariadb", input=f"CREATE USER 'k3s'@'{NET}.%' IDENTIFIED BY '{pw}';\n"
            f"GRANT ALL ON k3s.* TO 'k3s'@'{NET}.%';\n")
        STATE["endpoint"] = f"mysql://k3s:{pw}@tcp({ADDR[DB]}:3306)/k3s"
        STATE["db_password"] = pw
        TIMINGS["mariadb"] = time.monotonic() - t0
    return STATE["endpoint"]


def _kubeconfig(inv, folder: Path, host: str) -> None:
    text = ssh(inv, host, "cat /etc/rancher/k3s/k3s.yaml").stdout
    path = folder / f"kubeconfig-{host}"
    path.write_text(text.replace("https://127.0.0.1:6443", f"https://{ADDR[host]}:6443"))
    path.chmod(0o600)


SERVER_ARGS = ("server --tls-san k3s-balancer.lab.lan --tls-san 10.77.40.100 "
               "--node-taint CriticalAddonsOnly=true:NoExecute")


@pytest.fixture(scope="module")
def first(lab, datastore):
    """The first server installed and started, once; its token in STATE."""
    if "token" not in STATE:
        inv, k3s, folder = lab
        t0 = time.monotonic()
        _install(inv, S1, k3s, {"K3S_DATASTORE_ENDPOINT": datastore}, SERVER_ARGS)
        TIMINGS["first server"] = time.monotonic() - t0
        STATE["token"] = ssh(inv, S1, "cat /var/lib/rancher/k3s/server/token").stdout.strip()
        _kubeconfig(inv, folder, S1)
    return STATE["token"]


@pytest.fixture(scope="module")
def second(lab, datastore, first):
    """A wrong token tried on the second server (kept for its test), then the second server
    installed with the right one, once."""
    if "wrong" not in STATE:
        inv, k3s, folder = lab
        ssh(inv, S2, "cat > /usr/local/bin/k3s && chmod 755 /usr/local/bin/k3s",
            input=k3s.read_bytes())
        STATE["wrong"] = ssh(inv, S2, "set -a; . /dev/stdin; timeout 30 k3s server "
                             "--data-dir /tmp/wrong", check=False,
                             input=f"K3S_DATASTORE_ENDPOINT='{datastore}'\n"
                                   "K3S_TOKEN=not-the-token\n")
        _install(inv, S2, k3s, {"K3S_DATASTORE_ENDPOINT": datastore, "K3S_TOKEN": first},
                 SERVER_ARGS)
        _kubeconfig(inv, folder, S2)
    return STATE["wrong"]


@pytest.fixture(scope="module")
def agent(lab, second, first):
    """The agent installed through the first server's address, once."""
    if "agent" not in STATE:
        inv, k3s, _ = lab
        _install(inv, AGENT, k3s, {"K3S_URL": f"https://{ADDR[S1]}:6443", "K3S_TOKEN": first},
                 "")
        STATE["agent"] = True



def test_datastore(lab, datastore):
    inv, _, _ = lab
    out = ssh(inv, DB, "mariadb -N", input="SELECT COUNT(*) FROM mysql.user WHERE user='k3s';"
              "\nSELECT @@bind_address;\n").stdout.split()
    assert out == ["1", "0.0.0.0"], out


def test_first_server(lab, first):
    inv, _, _ = lab
    modes = ssh(inv, S1, "stat -c '%a %n' /var/lib/rancher/k3s/server/token "
                "/etc/rancher/k3s/k3s.yaml /etc/rancher/node/password "
                "/etc/systemd/system/k3s.service.env; "
                "readlink /var/lib/rancher/k3s/server/node-token").stdout.split("\n")
    assert all(m.startswith("600 ") for m in modes[:4]), modes
    assert modes[4] == "token"
    assert re.fullmatch(r"K10[0-9a-f]{64}::server:[0-9a-f]{32}", first)
    journal = ssh(inv, S1, "journalctl -u k3s --no-pager").stdout
    assert "NOT k3s" in journal and STATE["db_password"] not in journal


def test_wrong_token_is_refused_then_second_server_joins(lab, second, first):
    inv, _, _ = lab
    assert second.returncode == 1
    assert "bootstrap data already found and encrypted with different token" in second.stderr
    same = ssh(inv, S2, "cat /var/lib/rancher/k3s/server/token").stdout.strip()
    assert same == first


def test_agent_joins_through_a_server_address(lab, agent):
    inv, _, _ = lab
    unit = ssh(inv, AGENT, "cat /etc/systemd/system/k3s-agent.service").stdout
    assert "Type=notify" in unit and "agent" in unit


def test_kubectl_from_the_operator_lists_three_nodes(lab, agent):
    _, _, folder = lab
    rows = wait_for(lambda: (lambda r: r if len(r) == 3 else None)(node_rows(folder)), 20)
    assert rows, kubectl(folder, "get", "nodes").stderr
    print("\n" + kubectl(folder, "get", "nodes", "-o", "wide").stdout)
    assert rows[S1][1:3] == ["Ready", "control-plane,master"]
    assert rows[S2][1:3] == ["Ready", "control-plane,master"]
    assert rows[AGENT][1:3] == ["Ready", "<none>"]
    assert all(r[4] == "v1.31.5+k3s1" for r in rows.values())
    items = json.loads(kubectl(folder, "get", "nodes", "-o", "json", server=S2).stdout)["items"]
    taints = {i["metadata"]["name"]: i["spec"].get("taints") for i in items}
    assert taints[S1] == [{"key": "CriticalAddonsOnly", "value": "true", "effect": "NoExecute"}]
    assert taints[AGENT] is None


def test_kine_rows_contiguous_with_unique_index(lab, agent):
    inv, _, _ = lab
    out = ssh(inv, DB, "mariadb -N k3s", input=(
        "SELECT COUNT(*), MIN(id), MAX(id) FROM kine;\n"
        "SELECT COUNT(*) FROM kine WHERE name = '/registry/minions/k3s-agent-01';\n"
        "SELECT non_unique FROM information_schema.STATISTICS WHERE table_schema='k3s' "
        "AND index_name='kine_name_prev_revision_uindex' LIMIT 1;\n")).stdout.split()
    count, lo, hi, agent_rows, non_unique = map(int, out)
    assert count == hi - lo + 1 and lo == 1  # every revision present (gaps would be filled)
    assert agent_rows >= 1 and non_unique == 0


def test_a_revision_gap_is_waited_for_then_filled(lab, second):
    """Skip two ids (as failed inserts do in InnoDB): the servers fill them with gap rows."""
    inv, _, _ = lab
    ssh(inv, DB, "mariadb k3s", input=(
        "SELECT MAX(id) + 3 INTO @n FROM kine;\n"
        "SET @s = CONCAT('ALTER TABLE kine AUTO_INCREMENT = ', @n);\n"
        "PREPARE st FROM @s; EXECUTE st;\n"))
    query = ("SELECT COUNT(*), MIN(id), MAX(id), SUM(name LIKE 'gap-%') FROM kine;\n")

    def filled():
        count, lo, hi, gaps = map(int, ssh(inv, DB, "mariadb -N k3s", input=query).stdout.split())
        return gaps >= 2 and count == hi - lo + 1
    assert wait_for(filled, 30, 1.0)
    assert "filled revision gap" in ssh(inv, S1, "journalctl -u k3s --no-pager").stdout + ssh(
        inv, S2, "journalctl -u k3s --no-pager").stdout



# ------------------------------------------------------------------ faults
def _journal(inv, host: str, unit: str, since: str) -> str:
    return ssh(inv, host, f"journalctl -u {unit} --no-pager --since @{since}", check=False).stdout


def test_rebuilt_agent_is_rejected_until_its_node_is_deleted(lab, agent):
    inv, _, folder = lab
    since = ssh(inv, AGENT, "date +%s").stdout.strip()
    ssh(inv, AGENT, "systemctl stop k3s-agent && rm -rf /etc/rancher/node && "
        "systemctl start --no-block k3s-agent")
    msg = "Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password'"
    assert wait_for(lambda: msg in _journal(inv, AGENT, "k3s-agent", since), 20)
    assert kubectl(folder, "delete", "node", AGENT).returncode == 0
    t0 = time.monotonic()
    assert wait_for(lambda: ssh(inv, AGENT, "systemctl is-active k3s-agent", check=False
                                ).stdout.strip() == "active", 30)
    TIMINGS["rejoin after delete node"] = time.monotonic() - t0
    assert wait_for(lambda: node_rows(folder).get(AGENT, [None, None])[1] == "Ready", 15)


def _ping(addr: str, timeout: float = 2.0, path: str = "/ping") -> str:
    import ssl

    ctx = ssl._create_unverified_context()
    try:
        with socket.create_connection((addr, 6443), timeout=timeout) as raw:
            with ctx.wrap_socket(raw) as s:  # the TLS handshake completes even when hung
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                          .encode())
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                return data.decode(errors="replace")
    except TimeoutError:
        return "timeout"


def test_hang_fault(lab, second):
    inv, _, folder = lab
    assert "pong" in _ping(ADDR[S1])
    ssh(inv, S1, "k3s standin-hang on")
    try:
        assert "pong" in _ping(ADDR[S1])  # k3s's own router answers /ping: not the API
        assert _ping(ADDR[S1], path="/readyz") == "timeout"
        assert kubectl(folder, "get", "nodes", timeout=90).returncode != 0
        assert kubectl(folder, "get", "nodes", server=S2).returncode == 0
        assert ssh(inv, S1, "systemctl is-active k3s").stdout.strip() == "active"
    finally:
        ssh(inv, S1, "k3s standin-hang off")
    assert "pong" in _ping(ADDR[S1])


def _heartbeat_age(folder: Path, server: str) -> float:
    node = json.loads(kubectl(folder, "get", "node", AGENT, "-o", "json", server=server).stdout)
    beat = node["status"]["conditions"][0]["lastHeartbeatTime"]
    return time.time() - calendar.timegm(time.strptime(beat, "%Y-%m-%dT%H:%M:%SZ"))


def test_agent_fails_over_between_servers(lab, agent):
    """Each server down in turn: the agent's heartbeat stays fresh through the other one."""
    inv, _, folder = lab
    for down, up in ((S1, S2), (S2, S1)):
        since = ssh(inv, AGENT, "date +%s").stdout.strip()
        ssh(inv, down, "systemctl stop k3s")
        try:
            time.sleep(12)  # two heartbeats at least
            assert _heartbeat_age(folder, up) < 10, f"{down} down: agent heartbeat is stale"
            if down == S2:  # the agent was on S2 (or moved there above): it must move back
                assert f"agent now talks to https://{ADDR[S1]}:6443" in _journal(
                    inv, AGENT, "k3s-agent", since)
        finally:
            ssh(inv, down, "timeout 60 systemctl start k3s")


def _main_pid(inv, host: str, unit: str) -> str:
    return ssh(inv, host, f"systemctl show -p MainPID --value {unit}").stdout.strip()


def test_datastore_down_servers_exit_and_come_back(lab, agent):
    inv, _, folder = lab
    before = {h: _main_pid(inv, h, "k3s") for h in (S1, S2)}
    agent_pid = _main_pid(inv, AGENT, "k3s-agent")
    ssh(inv, DB, "systemctl stop mariadb")
    t0 = time.monotonic()
    exited = {}
    try:
        while len(exited) < 2 and time.monotonic() - t0 < 30:
            for h in (S1, S2):
                if h not in exited and _main_pid(inv, h, "k3s") != before[h]:
                    exited[h] = time.monotonic() - t0
            time.sleep(0.5)
    finally:
        ssh(inv, DB, "systemctl start mariadb")
    TIMINGS["servers exit after db stop"] = max(exited.values(), default=-1)
    assert set(exited) == {S1, S2}, exited
    assert all(7 <= t <= 16 for t in exited.values()), exited
    assert _main_pid(inv, AGENT, "k3s-agent") == agent_pid  # agents keep running
    journal = _journal(inv, S1, "k3s", str(int(time.time()) - 60))
    assert "datastore unreachable for" in journal
    t1 = time.monotonic()
    assert wait_for(lambda: len([r for r in node_rows(folder).values() if r[1] == "Ready"]) == 3,
                    60, 1.0)
    TIMINGS["cluster back after db start"] = time.monotonic() - t1
