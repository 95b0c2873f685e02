"""k3s namespace for real in the lab (instance "k3" + 3 random characters, 10.77.30.0/24
when free), with the k3s-ha stand-in (tasks/lab/standin: NOT k3s) that lab.up builds into
the airgap folder.

The fixture brings up its own lab, deploys balancers and databases with the existing tasks
through `fab`, waits for the datastore VIP to take writes, and always tears the lab down.
The k3s tier is built by three module fixtures, each run once by whichever test needs it
first and recorded for the test that checks it: `servers` (install-server, with `ps`
sampled on the first server meanwhile), `agents` (join-agent), `agent3` (a host added to
the inventory, joined with --host). A test that breaks a node puts it back, so the tests
run in any order and alone; every k3s step is a `fab` subprocess with --yes and the
secrets from the lab's secrets file.
"""
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tasks.core import inventory
from tasks.core import ssh as cssh
from tasks.core.run import poll
from tasks.db import session as dbtasks
from tasks.facts.k3s import parse_nodes
from tasks.k3s.token import parse_token
from tasks.lab import labnet
from tests.lab import labdb
from tests.lab.labdb import secret
from tests.lab.kh3_inventory import (AGENT3, AGENTS, DBS, SERVERS, API_VIP,
                                     write_inventory)

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
TIMINGS: dict[str, float] = {}
S1, S2 = SERVERS
A1, A2 = AGENTS
DEPLOY = ("balancers.deploy", "db.install", "db.secure", "db.configure", "db.replicate",
          "db.users", "db.health")  # db.health: the replication-aware check is the default


@contextmanager
def timed(label):
    t0 = time.monotonic()
    try:
        yield
    finally:
        TIMINGS[label] = time.monotonic() - t0


def fab(inv, *args, env=None, timeout=600, label=""):
    """`fab ARGS` on this inventory, K3S_HA_* of this shell left out (secrets: the file)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("K3S_HA_")}
    with timed(label or " ".join(args)):
        return subprocess.run([sys.executable, "-m", "fabric", *args], cwd=ROOT, text=True,
                              env={**clean, "K3S_HA_INVENTORY": str(inv.path), **(env or {})},
                              capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def recap(out: str) -> list[str]:
    """The recap table's cells (`changed` is a cell; `changed=0` in the totals is not)."""
    assert "RECAP" in out, out
    return out.split("RECAP", 1)[1].split()


def ssh(inv, host, cmd, check=True, timeout=120):
    p = subprocess.run(labnet.ssh_argv(inv, host, [cmd]), capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"{host}: {cmd[:80]} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def wait_for(fn, timeout=60.0, every=1.0):
    """fn() until truthy (tasks.core.run.poll: an exception is "not yet" until the end)."""
    return poll(fn, timeout=timeout, interval=every)[1]


def writer_answers(inv) -> bool:
    """The datastore VIP takes a write as the k3s user from a k3s server, over TLS (what
    k3s itself will do; with PROXY protocol the grant names the k3s servers)."""
    try:
        with labdb.login_from(inv, SERVERS[0], database="k3s") as db, db.cursor() as cur:
            cur.execute("SELECT @@read_only")
            return cur.fetchone()[0] == 0
    except Exception:  # noqa: BLE001 - not up yet (refused, SSH, TLS): poll again
        return False


@pytest.fixture(scope="module")
def kh3(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    inv = inventory.load(write_inventory(tmp_path_factory.mktemp("kh3")))
    try:
        with timed("lab up"):
            labnet.up(inv, log=lambda m: None)
        for task in DEPLOY:
            ok(fab(inv, task, "--yes"))
        with timed("datastore writer"):
            assert wait_for(lambda: writer_answers(inv), timeout=90), "datastore VIP: no writer"
        yield inv
    finally:  # torn down whatever happened; agent-03 added to the inventory or not
        labnet.down(inventory.load(inv.path), log=lambda m: None)
        print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f}s" for k, v in TIMINGS.items()))


@pytest.fixture
def lab(kh3):
    """The inventory as it is now (the agent3 fixture adds a host to it)."""
    return inventory.load(kh3.path)


BUILT: dict[str, object] = {}


@pytest.fixture(scope="module")
def servers(kh3):
    """k3s.install-server, once, with `ps -eo args` sampled on the first server meanwhile:
    (its output, the snapshots)."""
    if "servers" not in BUILT:
        seen: list[str] = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                seen.append(ssh(kh3, S1, "ps -eo args", check=False, timeout=20))
                time.sleep(0.3)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            p = fab(kh3, "k3s.install-server", "--yes")
        finally:
            stop.set()
            t.join()
        BUILT["servers"] = (p, seen)
    p, seen = BUILT["servers"]
    ok(p)
    return p.stdout, seen


@pytest.fixture(scope="module")
def agents(servers, kh3):
    """k3s.join-agent of the inventory's agents, once: its output."""
    if "agents" not in BUILT:
        BUILT["agents"] = fab(kh3, "k3s.join-agent", "--yes")
    return ok(BUILT["agents"])


@pytest.fixture(scope="module")
def agent3(agents, kh3):
    """A host added to the inventory and booted, then `--host nope` (refused) and
    `--host k3s-agent-03`, once: (the refused run, the join's output)."""
    if "agent3" not in BUILT:
        write_inventory(kh3.path.parent, with_agent3=True)
        inv = inventory.load(kh3.path)
        labnet.up(inv, log=lambda m: None)
        BUILT["agent3"] = (fab(inv, "k3s.join-agent", "--host", "nope", "--yes"),
                           fab(inv, "k3s.join-agent", "--host", AGENT3, "--yes"))
    refused, joined = BUILT["agent3"]
    return refused, ok(joined)


def k3s_hosts(inv):
    return [h.name for h in inv.with_role("k3s-server") + inv.with_role("k3s-agent")]


def nodes(inv, via=S1):
    return {n.name: n for n in parse_nodes(ssh(inv, via, "k3s kubectl get nodes -o json"))}


def main_pids(inv, hosts):
    return {h: ssh(inv, h, f"systemctl show -p MainPID --value "
                           f"{'k3s' if h in SERVERS else 'k3s-agent'}").strip() for h in hosts}


TAINT = "CriticalAddonsOnly=true:NoExecute"


# ------------------------------------------------------------------ servers
def test_airgap_folder_holds_the_standin(lab):
    k3s = lab.resolve_path(lab.cluster["airgap_dir"]) / "k3s"
    out = subprocess.run([str(k3s), "--version"], capture_output=True, text=True).stdout
    assert "k3s-ha lab stand-in, NOT k3s" in out, out


def test_standin_on_a_host_loads_its_modules_from_bytecode(lab, servers):
    """The host's own python3 (Debian 12's) takes the zipapp's .pyc, not its .py: no
    compiling on every `k3s ...` start (lab stand-in, NOT k3s)."""
    files = ssh(lab, S1, "python3 -c 'import sys; sys.path.insert(0, \"/usr/local/bin/k3s\"); "
                         "import standin.agent, standin.kubectl, pymysql; print(standin.agent."
                         "__file__, standin.kubectl.__file__, pymysql.__file__)'")
    assert len(files.split()) == 3 and all(f.endswith(".pyc") for f in files.split()), files


def test_install_server_both_ready_and_tainted_no_secret_in_argv(lab, servers):
    out, seen = servers
    assert "changed" in recap(out)
    ns = nodes(lab)
    for s in SERVERS:
        assert ns[s].is_ready and TAINT in ns[s].taints and ns[s].is_server, ns[s]
    secrets = [secret(lab, "k3s_db_password"), secret(lab, "k3s_token")]
    assert len(seen) > 5 and any("k3s server" in s for s in seen), "ps sampler saw nothing"
    assert not [s for s in secrets if any(s in snap for snap in seen)], "secret in argv"
    journal = ssh(lab, S1, "journalctl --no-pager -o cat")
    assert not [s for s in secrets if s in journal], "secret in the journal"
    assert not [s for s in secrets if s in out]
    modes = ssh(lab, S1, "stat -c '%a %n' /etc/systemd/system/k3s.service.env "
                         "/etc/rancher/k3s/config.yaml /etc/rancher/node/password")
    assert [ln.split()[0] for ln in modes.splitlines()] == ["600"] * 3, modes
    assert not [s for s in secrets if s in ssh(lab, S1, "cat /etc/rancher/k3s/config.yaml")]
    # enabled by our start, not the installer (INSTALL_K3S_SKIP_ENABLE): k3s comes back
    # after a reboot
    assert [ssh(lab, s, "systemctl is-enabled k3s").strip() for s in SERVERS] == \
        ["enabled"] * 2


def test_join_agent_status_four_ready_servers_tainted(lab, agents):
    assert "changed" in recap(agents)
    out = ok(fab(lab, "k3s.status", "--yes"))
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("k3s-")}
    assert sorted(rows) == sorted(k3s_hosts(lab)), out  # agent-03 too once it was added
    for name, line in rows.items():
        assert " True " in f" {line} ", line
        assert (TAINT in line) == (name in SERVERS), line


def test_added_host_joins_with_host_flag(lab, agent3):
    refused, out = agent3
    assert refused.returncode == 2 and AGENT3 in refused.stdout + refused.stderr, \
        refused.stdout + refused.stderr
    assert A1 not in recap(out) and AGENT3 in recap(out), "only the named host is touched"
    assert nodes(lab)[AGENT3].is_ready


def test_second_run_changes_nothing_and_restarts_nothing(lab, agent3):
    hosts = SERVERS + AGENTS + (AGENT3,)
    before = main_pids(lab, hosts)
    assert all(p not in ("", "0") for p in before.values()), before
    for task in ("k3s.install-server", "k3s.join-agent"):
        out = ok(fab(lab, task, "--yes", label=f"{task} (again)"))
        assert "changed" not in recap(out) and "no changes" in out, out
    assert main_pids(lab, hosts) == before


def test_kubeconfig_and_kubectl_through_the_api_vip(lab, agent3):
    kc = lab.path.parent / "admin.kubeconfig"
    out = ok(fab(lab, "k3s.kubeconfig", "--output", str(kc), "--yes"))
    assert kc.stat().st_mode & 0o777 == 0o600
    server = next(ln.split()[-1] for ln in kc.read_text().splitlines() if "server:" in ln)
    assert server in (f"https://{API_VIP}:6443", "https://k3s-balancer.lab.lan:6443"), server
    if API_VIP in server:  # the name does not resolve on this machine: said so, with the fix
        assert "k3s-balancer.lab.lan does not resolve on this machine" in out, out
    p = subprocess.run(["/usr/bin/kubectl", "--kubeconfig", str(kc), "get", "nodes"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    listed = {ln.split()[0] for ln in p.stdout.splitlines()[1:]}
    assert listed == set(SERVERS + AGENTS + (AGENT3,)), p.stdout


def test_node_rows_in_kine_on_both_databases(lab, agent3):
    want = {f"/registry/minions/{n}" for n in SERVERS + AGENTS + (AGENT3,)}

    sql = ("SELECT k.name FROM k3s.kine k JOIN (SELECT name, MAX(id) AS id FROM k3s.kine "
           "WHERE name LIKE '/registry/minions/%' GROUP BY name) m ON k.id = m.id "
           "WHERE k.deleted = 0")

    for db in DBS:
        conn = cssh.connect(lab, lab.host(db))
        cssh.open_checked(conn)
        sql_db = dbtasks.mysql_connect(conn, user="k3sha_admin", host="127.0.0.1",
                                       password=secret(lab, "db_admin_password"))
        try:
            def names():
                return {r["name"] for r in dbtasks.q(sql_db, sql)}

            assert wait_for(lambda: want <= names(), timeout=20), (db, names())
        finally:
            sql_db.close()
            conn.close()


# ------------------------------------------------------------------ remove, rebuild, token
def test_remove_node_then_join_again(lab, agents):
    ok(fab(lab, "k3s.remove-node", "--host", A2, "--yes"))
    assert A2 not in nodes(lab)
    assert ssh(lab, A2, "test -e /usr/local/bin/k3s-agent-uninstall.sh", check=False) == ""
    assert ssh(lab, A2, "systemctl is-active k3s-agent", check=False).strip() != "active"
    out = ok(fab(lab, "k3s.join-agent", "--host", A2, "--yes"))
    assert "changed" in recap(out)
    assert nodes(lab)[A2].is_ready


def test_rebuilt_agent_recovered_from_node_password_rejected(lab, agents):
    ssh(lab, A1, "/usr/local/bin/k3s-agent-uninstall.sh && rm -rf /etc/rancher/node")
    assert A1 in nodes(lab), "the old node object stays after a rebuild"
    p = fab(lab, "k3s.join-agent", "--host", A1, "--yes")
    out = ok(p)
    assert "forget old node" in out, out
    assert wait_for(lambda: nodes(lab)[A1].is_ready, timeout=30)


def test_changed_node_password_rejected_then_recovered(lab, agents):
    """A rebuilt host that kept a node password of its own: k3s rejects it at start; the
    task reads that from the journal, forgets the old node (--yes) and starts it again."""
    ssh(lab, A1, "/usr/local/bin/k3s-agent-uninstall.sh && "
                 "echo 0123456789abcdef0123456789abcdef > /etc/rancher/node/password")
    out = ok(fab(lab, "k3s.join-agent", "--host", A1, "--yes", label="join, password rejected"))
    assert "forget old node" in out, out
    assert "Node password rejected" in ssh(lab, A1, "journalctl -u k3s-agent -o cat --no-pager")
    assert nodes(lab)[A1].is_ready
    journal = ssh(lab, A1, "journalctl --no-pager -o cat")
    assert secret(lab, "k3s_token") not in journal


def nothing_installed(inv, host):
    present = ssh(inv, host, "test -e /usr/local/bin/k3s || test -e "
                             "/etc/systemd/system/k3s.service && echo present", check=False)
    return present.strip() == "" and \
        ssh(inv, host, "systemctl is-active k3s", check=False).strip() != "active"


def test_wrong_token_refused_before_anything_starts(lab, servers):
    held = parse_token(ssh(lab, S1, "cat /var/lib/rancher/k3s/server/token"))
    ok(fab(lab, "k3s.remove-node", "--host", S2, "--yes"))
    try:
        wrong_token_refused(lab, held)
    finally:  # the second server back, as the other tests expect it
        ok(fab(lab, "k3s.join-server", "--host", S2, "--yes", label="join-server, put back"))
    assert nodes(lab)[S2].is_ready


def wrong_token_refused(lab, held):
    ssh(lab, S2, "rm -f /usr/local/bin/k3s")
    assert nothing_installed(lab, S2)
    wrong = {"K3S_HA_K3S_TOKEN": "wrongtoken" + "0" * 22}
    # the first server runs with the cluster's token: the configured one is refused
    p = fab(lab, "k3s.join-server", "--host", S2, "--yes", env=wrong)
    out = p.stdout + p.stderr
    assert p.returncode == 2 and held.fingerprint() in out, out
    assert wrong["K3S_HA_K3S_TOKEN"] not in out and nothing_installed(lab, S2), out
    # a new first server (S2 listed first) with that token: the datastore's bootstrap key
    # is another token's, named by the fingerprint of the server that runs with it
    other = write_inventory(lab.path.parent, with_agent3=True, servers=(S2, S1),
                            name="s2-first.toml")
    p = fab(inventory.load(other), "k3s.install-server", "--yes", env=wrong,
            label="install-server, wrong token, new first server")
    out = p.stdout + p.stderr
    assert p.returncode == 2 and "bootstrap data already found" in out, out
    assert f"{held.fingerprint()}, as on {S1}" in out and nothing_installed(lab, S2), out
