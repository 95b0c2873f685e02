"""Adopting a cluster built BY HAND from the guide (a lab of this run's own, 10.77.90.0/24
when free, the guide's ten hosts): balancers and databases are set up with the guide's own
commands and files, then `fab cluster.adopt` reports the differences and `fab cluster.deploy --yes` takes over while
both VIPs are probed and both replicas sampled. The two k3s servers are built by hand too,
the guide's way: the installer (the k3s-ha stand-in's install.sh, NOT k3s, run as the upstream
one would be in an airgap install) with K3S_DATASTORE_ENDPOINT, the token and
`server --tls-san ... --node-taint ...`; deploy must take them over without restarting k3s
(MainPIDs compared) and without changing the token. The agents are installed by deploy.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tasks.core import inventory
from tasks.db import session as _db  # noqa: F401  (before facts.mysql: import cycle)
from tasks.facts.mysql import parse_replica_status, parse_text_status
from tasks.lab import labnet
from tests.lab import labid
from tests.lab.guide_haproxy import STATS
from tests.lab.test_cluster_lab import TIMINGS, fab, guide_inventory, ok, secrets, ssh

pytestmark = pytest.mark.lab
NAME, SUBNET = labid.claim("ad", "10.77.90")  # unique per run
VRIDS = (95, 96)
DBS = ("k3s-db-01", "k3s-db-02")

KEEPALIVED = """vrrp_script check_haproxy_stats {
        script "/usr/bin/curl 127.0.0.1:9000/stats"
        interval 2
}
vrrp_instance k3s-balancer {
        state STATE
        interface host0
        virtual_router_id VRID
        priority PRIO
        advert_int 1
        authentication {
              auth_type PASS
              auth_pass k3s
        }
        virtual_ipaddress {
              VIP/24
        }
        track_script {
              check_haproxy_stats
        }
}
"""
API_CFG = STATS + """
frontend k3s
  bind *:6443
  use_backend k3s

backend k3s
  mode tcp
  option ssl-hello-chk
  server k3s-server-01 k3s-server-01.lab.lan:6443 check
  server k3s-server-02 k3s-server-02.lab.lan:6443 check backup
"""
DB_CFG = STATS + """
frontend k3s-db
  bind *:3306
  mode tcp
  use_backend k3s-db

backend k3s-db
  mode tcp
  option mysql-check user haproxy-check
  server k3s-db-01 k3s-db-01.lab.lan:3306 check on-marked-up shutdown-backup-sessions rise 30
  server k3s-db-02 k3s-db-02.lab.lan:3306 check backup rise 30
"""
MYCNF = """[mysqld]
bind-address      = 0.0.0.0
server-id         = SID
log_bin           = /var/log/mysql/mysql-bin.log
relay-log         = /var/log/mysql/mysql-relay-bin.log
max_binlog_size   = 100M
log_slave_updates = 1
"""
APT = ("export DEBIAN_FRONTEND=noninteractive; for t in 60 180; do timeout $t apt-get update -q "
       "&& break; done; apt-get install -y -q ")


def adopt_inventory() -> str:
    text = guide_inventory(NAME, SUBNET, vrids=VRIDS)
    # the operator tells the inventory the guide's replication user (its password goes to
    # the secrets file, as the other secrets already there)
    text = text.replace('replication_user = "repl"', 'replication_user = "slave-user"')
    # the guide's cluster as it is: no TLS, no PROXY protocol (moving it to TLS restarts
    # k3s for its datastore-cafile and is a change of its own, not part of adopting it)
    text = re.sub(r"(?m)^tls = true\b", "tls = false", text, count=1)
    assert "tls = false" in text, "the shipped hosts.toml no longer sets [db] tls"
    return text.replace("\n[db]\n", "\n[db]\nproxy_protocol = false\n", 1)


def sql(inv, host, stmts: str) -> str:
    """As root over the socket; statements (and the passwords in them) on stdin."""
    return ssh(inv, host, "mysql -B", input=stmts)


def build_balancer(inv, h):
    pair = "api" if "k3s-balancer" in h.roles else "db"
    vip = inv.vips[pair]
    first = inv.with_role(vip.role)[0].name == h.name
    ssh(inv, h.name, APT + "haproxy keepalived curl", timeout=600)
    conf = (KEEPALIVED.replace("STATE", "MASTER" if first else "BACKUP")
            .replace("VRID", str(vip.virtual_router_id)).replace("PRIO", "100" if first else "90")
            .replace("VIP", vip.address))
    ssh(inv, h.name, "cat > /etc/keepalived/keepalived.conf", input=conf)
    ssh(inv, h.name, "cat > /etc/haproxy/haproxy.cfg", input=API_CFG if pair == "api" else DB_CFG)
    ssh(inv, h.name, "systemctl enable -q keepalived haproxy && systemctl restart haproxy "
                     "keepalived")


def build_db(inv, h):
    ssh(inv, h.name, APT + "mariadb-server", timeout=600)
    ssh(inv, h.name, "cat > /etc/mysql/mariadb.conf.d/60-guide.cnf",
        input=MYCNF.replace("SID", str(h.server_id)))
    # Debian 12's MariaDB logs to the journal and has no /var/log/mysql (the guide's MySQL has)
    ssh(inv, h.name, "install -d -o mysql -g adm /var/log/mysql && systemctl restart mariadb")
    pw = secrets(inv)["replication_password"]
    sql(inv, h.name, f"CREATE USER 'slave-user'@'%' IDENTIFIED BY '{pw}';\n"
                     "GRANT REPLICATION SLAVE ON *.* TO 'slave-user'@'%'; FLUSH PRIVILEGES;\n")


def change_master(inv, replica, source):
    st = parse_text_status(sql(inv, source.name, "SHOW MASTER STATUS;\n"))[0]
    pw = secrets(inv)["replication_password"]
    sql(inv, replica.name, f"CHANGE MASTER TO master_host='{source.address}', master_port=3306, "
                           f"master_user='slave-user', master_password='{pw}', "
                           f"master_log_file='{st['File']}', master_log_pos={st['Position']};\n"
                           "START SLAVE;\n")


def replica(inv, host):
    return parse_replica_status(parse_text_status(
        ssh(inv, host, "mysql -e 'SHOW SLAVE STATUS\\G'")))


def guide_k3s_env(inv) -> str:
    """The guide's installer environment (on stdin, never in argv): datastore endpoint through
    the datastore VIP's name, the token, the flags in INSTALL_K3S_EXEC; --tls-san for each name
    the inventory serves the API under (the VIP's name, FQDN and address)."""
    s = secrets(inv)
    vip = inv.vips["api"]
    sans = " ".join(f"--tls-san {n}" for n in (f"{vip.name}.lab.lan", vip.name, vip.address))
    return (f"K3S_DATASTORE_ENDPOINT='mysql://k3s:{s['k3s_db_password']}@tcp("
            f"{inv.vips['db'].name}.lab.lan:3306)/k3s'\nK3S_TOKEN='{s['k3s_token']}'\n"
            f"INSTALL_K3S_SKIP_DOWNLOAD=true\nINSTALL_K3S_EXEC='server {sans} "
            "--node-taint CriticalAddonsOnly=true:NoExecute'\n")


def build_k3s_server(inv, h):
    """Binary and install.sh copied over (airgap), the installer run, k3s Ready."""
    folder = inv.resolve_path(inv.cluster["airgap_dir"])
    for local, remote, mode in ((folder / "k3s", "/usr/local/bin/k3s", "755"),
                                (folder / "install.sh", "/root/install.sh", "700")):
        with open(local, "rb") as f:
            subprocess.run(labnet.ssh_argv(inv, h, [f"cat > {remote} && chmod {mode} {remote}"]),
                           stdin=f, check=True, timeout=120, capture_output=True)
    ssh(inv, h, "set -a; . /dev/stdin; set +a; sh /root/install.sh", input=guide_k3s_env(inv),
        timeout=300)
    end = time.monotonic() + 120
    while [h, "Ready"] not in [ln.split()[:2] for ln in ssh(
            inv, h, f"k3s kubectl get node {h}", check=False).splitlines()]:
        assert time.monotonic() < end, f"{h}: k3s built by hand is not Ready"
        time.sleep(2)


def k3s_state(inv):
    """Each server's k3s MainPID and the sha256 of its token file."""
    return {h: ssh(inv, h, "systemctl show -p MainPID --value k3s; "
                           "sha256sum /var/lib/rancher/k3s/server/token").split()[:2]
            for h in ("k3s-server-01", "k3s-server-02")}


def build_by_hand(inv):
    bal = inv.with_role("k3s-balancer") + inv.with_role("db-balancer")
    dbs = inv.with_role("db")
    with ThreadPoolExecutor(6) as ex:
        list(ex.map(lambda h: build_balancer(inv, h), bal))
        list(ex.map(lambda h: build_db(inv, h), dbs))
    change_master(inv, dbs[1], dbs[0])
    change_master(inv, dbs[0], dbs[1])
    kpw = secrets(inv)["k3s_db_password"]
    sql(inv, DBS[0], "CREATE USER 'haproxy-check'@'%' IDENTIFIED VIA mysql_native_password "
                     "USING '';\nCREATE DATABASE k3s;\n"
                     f"CREATE USER 'k3s'@'%' IDENTIFIED BY '{kpw}';\n"
                     "GRANT ALL PRIVILEGES ON k3s.* TO 'k3s'@'%' WITH GRANT OPTION;\n"
                     "CREATE TABLE k3s.before_adopt (id INT PRIMARY KEY, v VARCHAR(20));\n"
                     "INSERT INTO k3s.before_adopt VALUES (1,'a'),(2,'b'),(3,'c');\n")
    for d in DBS:
        ssh(inv, d, "mysqladmin flush-hosts")
    for d in DBS:
        r = replica(inv, d)
        assert r.io_running == "Yes" and r.sql_running == "Yes", (d, r)
    wait_db_vip(inv)
    for h in ("k3s-server-01", "k3s-server-02"):  # the guide: the first, then the second
        build_k3s_server(inv, h)


def wait_db_vip(inv, timeout=180):
    """The guide's HAProxy admits a db server after 30 good checks (rise 30, 2 s apart)."""
    end = time.monotonic() + timeout
    while True:
        out = ssh(inv, DBS[0], "MYSQL_PWD=\"$(cat)\" mysql -h %s -u k3s -NBe 'SELECT 1' k3s"
                  % inv.vips["db"].address, check=False, input=secrets(inv)["k3s_db_password"])
        if out.strip() == "1":
            return
        assert time.monotonic() < end, "the guide's datastore VIP admits no server"
        time.sleep(3)


class Probe:
    """TCP connects to both VIPs every 0.2 s (a VIP that answers); on each VIP's holder, a
    long-running SSH loop printing whether its NIC still carries the VIP every 0.2 s (the
    VIP never left it); SHOW SLAVE STATUS on both dbs every 0.5 s."""

    def __init__(self, inv, holders: dict[str, str]):
        self.inv, self.stop = inv, threading.Event()
        self.vip_fail: dict[str, list[float]] = {"api": [], "db": []}
        self.lost: dict[str, list[float]] = {"api": [], "db": []}
        self.rep: dict[str, list] = {d: [] for d in DBS}
        self.loops = {k: subprocess.Popen(labnet.ssh_argv(inv, h, [
            f"while :; do ip -o -4 addr show | grep -qF ' {inv.vips[k].address}/' && echo y "
            "|| echo n; sleep 0.2; done"]), stdout=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL) for k, h in holders.items()}
        self.threads = [threading.Thread(target=self._vip, args=(k, p), daemon=True)
                        for k, p in (("api", 6443), ("db", 3306))]
        self.threads += [threading.Thread(target=self._held, args=(k,), daemon=True)
                         for k in holders]
        self.threads += [threading.Thread(target=self._rep, args=(d,), daemon=True) for d in DBS]
        for t in self.threads:
            t.start()

    def _vip(self, key, port):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                socket.create_connection((self.inv.vips[key].address, port), 1).close()
            except OSError:
                self.vip_fail[key].append(t)
            time.sleep(0.2)

    def _held(self, key):
        for line in self.loops[key].stdout:
            if line.strip() == "n":
                self.lost[key].append(time.monotonic())

    def _rep(self, host):
        while not self.stop.is_set():
            try:
                self.rep[host].append(replica(self.inv, host))
            except AssertionError:
                pass
            time.sleep(0.5)

    def close(self):
        self.stop.set()
        for p in self.loops.values():
            p.terminate()
        for t in self.threads:
            t.join(timeout=30)


def longest_gap(fails: list[float], every: float = 0.2) -> float:
    """Longest run of consecutive failed probes, in seconds."""
    best, run, last = 0.0, 0.0, None
    for t in fails:
        run = run + (t - last) if last is not None and t - last < every * 3 + 1.2 else every
        best, last = max(best, run), t
    return best


@pytest.fixture(scope="module")
def khg(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    folder = tmp_path_factory.mktemp("khg")
    (folder / "hosts.toml").write_text(adopt_inventory())
    inv = inventory.load(folder / "hosts.toml")
    try:
        labnet.up(inv, log=lambda m: None)
        t0 = time.monotonic()
        build_by_hand(inv)
        TIMINGS["built by hand"] = time.monotonic() - t0
        yield inv
    finally:
        labnet.down(inv, log=lambda m: None)
        print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f}s" for k, v in TIMINGS.items()))


def test_adopt_reports_then_deploy_takes_over(khg):
    inv = khg
    p = fab(inv, "cluster.adopt", "--yes", label="adopt")
    out = p.stdout
    print(out)
    assert p.returncode == 0, out + p.stderr
    assert "haproxy.cfg" in out and "differs (hand-written)" in out, out
    assert "auth PASS" in out and "account slave-user" in out, out
    assert "logs in anew" in out and "keep (no reset, no re-point)" in out, out
    assert "config.yaml" in out and "no restart" in out, out
    holders = {k: [h.name for h in inv.with_role(v.role) if v.address in ssh(
        inv, h.name, "ip -o -4 addr show")] for k, v in inv.vips.items()}
    assert all(len(x) == 1 for x in holders.values()), holders
    before = {d: replica(inv, d) for d in DBS}
    k3s_before = k3s_state(inv)
    probe = Probe(inv, {k: v[0] for k, v in holders.items()})
    try:
        dep = fab(inv, "cluster.deploy", "--yes", label="deploy over the hand-built cluster")
    finally:
        probe.close()
    ok(dep)
    gaps = {k: longest_gap(v) for k, v in probe.vip_fail.items()}
    print(f"\nVIP probe failures: { {k: len(v) for k, v in probe.vip_fail.items()} }, "
          f"longest gap {gaps}")
    lost = {k: longest_gap(v) for k, v in probe.lost.items()}
    print(f"VIP not on its holder's NIC: { {k: len(v) for k, v in probe.lost.items()} } "
          f"samples, longest {lost}")
    assert all(g <= 3.0 for g in gaps.values()), gaps
    assert all(g <= 1.0 for g in lost.values()), f"a VIP left its holder: {lost}"
    after = {k: [h.name for h in inv.with_role(v.role) if v.address in ssh(
        inv, h.name, "ip -o -4 addr show")] for k, v in inv.vips.items()}
    assert after == holders, (holders, after)
    for d in DBS:
        seen = [before[d]] + probe.rep[d] + [replica(inv, d)]
        assert all(s.configured for s in seen), f"{d}: replication was reset (not configured)"
        # a sample while mysqld (re)starts shows no position yet: not a reset
        files = [(s.relay_source_log_file, s.exec_pos) for s in seen if s.relay_source_log_file]
        assert files == sorted(files), f"{d}: Exec_Master_Log_Pos went back: {files}"
        stopped = [s for s in seen if s.io_running != "Yes" or s.sql_running != "Yes"]
        print(f"{d}: {len(seen)} samples, {len(stopped)} with a thread not running")
        assert len(stopped) <= 20, f"{d}: replication threads stopped for ~{len(stopped) / 2} s"
        assert seen[-1].io_running == "Yes" and seen[-1].sql_running == "Yes", seen[-1]
        rows = sql(inv, d, "SELECT COUNT(*) FROM k3s.before_adopt;\n").split()
        assert rows[-1] == "3", (d, rows)
    k3s_after = k3s_state(inv)
    why = {h: ssh(inv, h, "journalctl -u k3s --no-pager -o cat | grep -E 'exiting|Starting k3s'",
                  check=False)[-600:] for h in k3s_after}
    assert k3s_after == k3s_before, ("k3s restarted or its token changed", k3s_before,
                                     k3s_after, why, [ln for ln in dep.stdout.splitlines()
                                                      if "k3s-server" in ln])
    assert "k3s kept running" in dep.stdout and "not yet in effect" not in dep.stdout, dep.stdout
    for h in ("k3s-server-01", "k3s-server-02"):  # config.yaml now ours, and the unit as built
        assert "tls-san" in ssh(inv, h, "cat /etc/rancher/k3s/config.yaml")
    st = fab(inv, "cluster.status", "--strict", "--yes")
    assert st.returncode == 0, st.stdout + st.stderr
