"""cluster.deploy for real on the guide's ten hosts (a lab of this run's own, 10.77.80.0/24 when
free), with the k3s-ha stand-in (tasks/lab/standin: NOT k3s) as the k3s binary.

One module-scoped lab, always torn down: from freshly booted bare hosts `fab cluster.deploy
--yes` while every host's process list (and the operator's) is sampled, then
`cluster.status --strict`, a second deploy that changes nothing, the secret values searched
for in argv, journals and files, and every database account tried from an address it is not
granted to.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pymysql
import pytest

from tasks.core import inventory
from tasks.lab import labnet
from tests.lab import labdb, labid

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
NAME, SUBNET = labid.claim("cl", "10.77.80")  # unique per run
TIMINGS: dict[str, float] = {}
SECRET_NAMES = ("db_admin_password", "replication_password", "k3s_db_password", "k3s_token")


def guide_inventory(name: str = NAME, subnet: str = SUBNET, vrids: tuple[int, int] = (83, 84),
                    rise: int = 3) -> str:
    """The shipped hosts.toml (the guide's ten hosts) moved to this lab's name and subnet;
    rise lowered so the datastore VIP admits a writer in seconds, not a minute."""
    text = (ROOT / "hosts.toml").read_text()
    text = text.replace('name = "kha"', f'name = "{name}"').replace("10.77.0.", f"{subnet}.")
    text = text.replace(".lab/kha/airgap", f".lab/{name}/airgap")
    text = re.sub(r"(?m)^rise = \d+", f"rise = {rise}", text)
    text = re.sub(r"(?m)^virtual_router_id = 3$", f"virtual_router_id = {vrids[0]}", text)
    text = re.sub(r"(?m)^virtual_router_id = 4$", f"virtual_router_id = {vrids[1]}", text)
    assert f'name = "{name}"' in text and f"rise = {rise}" in text
    return text


def fab(inv, *args, timeout=900, label=""):
    e = {k: v for k, v in os.environ.items() if not k.startswith("K3S_HA_")}
    e["K3S_HA_INVENTORY"] = str(inv.path)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "fabric", *args], cwd=ROOT, env=e, text=True,
                       capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    TIMINGS[label or " ".join(args)] = time.monotonic() - t0
    return p


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-6000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def recap_changes(out: str) -> list[str]:
    """Every recap row (host + cells) that reports a change: a `changed` cell or changed=N>0."""
    rows = []
    for block in out.split("\nRECAP ")[1:]:
        for line in block.splitlines()[1:]:
            if not line.strip() or line.startswith(("=====", "no changes", "dry run")):
                if line.startswith("====="):
                    break
                continue
            m = re.search(r"changed=(\d+)", line)
            if "changed" in line.split() or (m and int(m.group(1)) > 0):
                rows.append(line)
    return rows


def secrets(inv) -> dict[str, str]:
    data = tomllib.loads(inv.resolve_path(inv.secrets["file"]).read_text())
    return {k: data[k] for k in SECRET_NAMES if data.get(k)}


def ssh(inv, host, cmd, check=True, timeout=120, input=None):
    p = subprocess.run(labnet.ssh_argv(inv, host, [cmd]), capture_output=True, text=True,
                       timeout=timeout, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"{host}: {cmd[:80]} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.stdout


# ------------------------------------------------------------------ argv sampling
SAMPLER = r"""
import os, sys, time
seen, end, n = set(), time.time() + 1500, 0
while time.time() < end:
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                a = open('/proc/%s/cmdline' % p, 'rb').read()
            except OSError:
                continue
            if a and a not in seen:
                seen.add(a)
                sys.stdout.write(a.replace(b'\0', b' ').decode('utf-8', 'replace') + '\n')
    n += 1
    if n % 40 == 0:
        sys.stdout.write('@@tick\n')
    sys.stdout.flush()
    time.sleep(0.05)
"""


class ArgvSampler:
    """One long-running SSH session per host (python3 reading /proc/*/cmdline every 50 ms,
    printing each distinct command line once) plus the same loop on this machine."""

    def __init__(self, inv, hosts: list[str]):
        self.procs = {h: subprocess.Popen(labnet.ssh_argv(inv, h, ["python3", "-u", "-c",
                                                                   f'"{_b64_exec()}"']),
                                          stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, text=True)
                      for h in hosts}
        self.lines: dict[str, set[str]] = {h: set() for h in [*hosts, "operator"]}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._read, args=(h, p), daemon=True)
                        for h, p in self.procs.items()]
        self.threads.append(threading.Thread(target=self._local, daemon=True))
        for t in self.threads:
            t.start()

    def _read(self, host, p):
        for line in p.stdout:
            if line != "@@tick\n":
                self.lines[host].add(line.rstrip("\n"))

    def _local(self):
        while not self.stop.is_set():
            for p in os.listdir("/proc"):
                if p.isdigit():
                    try:
                        a = Path(f"/proc/{p}/cmdline").read_bytes()
                    except OSError:
                        continue
                    self.lines["operator"].add(a.replace(b"\0", b" ").decode("utf-8", "replace"))
            time.sleep(0.05)

    def close(self):
        self.stop.set()
        for p in self.procs.values():
            p.terminate()
        for t in self.threads:
            t.join(timeout=10)


def _b64_exec() -> str:
    import base64
    code = base64.b64encode(SAMPLER.encode()).decode()
    return f"import base64; exec(base64.b64decode('{code}'))"


# ------------------------------------------------------------------ the lab
@pytest.fixture(scope="module")
def khc(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    folder = tmp_path_factory.mktemp("khc")
    (folder / "hosts.toml").write_text(guide_inventory())
    inv = inventory.load(folder / "hosts.toml")
    state: dict = {"inv": inv}
    try:
        t0 = time.monotonic()
        labnet.up(inv, log=lambda m: None)
        TIMINGS["lab up"] = time.monotonic() - t0
        sampler = ArgvSampler(inv, list(inv.hosts))
        try:
            state["deploy"] = fab(inv, "cluster.deploy", "--yes", label="cold deploy")
        finally:
            sampler.close()
        state["argv"] = sampler.lines
        yield state
    finally:
        labnet.down(inv, log=lambda m: None)
        print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f}s" for k, v in TIMINGS.items()))


def test_cold_deploy_then_status_strict(khc):
    out = ok(khc["deploy"])
    assert recap_changes(out), "a cold deploy changed nothing?"
    inv = khc["inv"]
    st = fab(inv, "cluster.status", "--strict", "--yes", label="status --strict")
    assert st.returncode == 0, st.stdout + st.stderr
    assert "no problem" in st.stdout, st.stdout


def test_status_strict_fails_on_a_stopped_keepalived_json_names_it(khc):
    ok(khc["deploy"])
    inv = khc["inv"]
    ssh(inv, "k3s-balancer-02", "systemctl stop keepalived")
    try:
        st = fab(inv, "cluster.status", "--strict", "--yes")
        js = fab(inv, "cluster.status", "--json", "--yes")
    finally:
        ssh(inv, "k3s-balancer-02", "systemctl start keepalived")
    assert st.returncode == 1, st.stdout + st.stderr
    assert "!! k3s-balancer-02" in st.stdout and "1 PROBLEM(S)" in st.stdout, st.stdout
    doc = json.loads(js.stdout)  # the whole stdout is the one JSON document
    assert js.returncode == 0 and doc["ok"] is False, js.stdout
    assert [(p["subject"], p["text"]) for p in doc["problems"]] == [
        ("k3s-balancer-02", "keepalived is inactive")], doc["problems"]
    assert not [n for n, v in secrets(inv).items() if v in js.stdout]


def test_second_deploy_changes_nothing(khc):
    ok(khc["deploy"])
    out = ok(fab(khc["inv"], "cluster.deploy", "--yes", label="no-op deploy"))
    print("\nno-op " + [ln for ln in out.splitlines() if "stage times" in ln][0])
    assert out.count("\nRECAP ") >= 8, out
    assert recap_changes(out) == [], "\n".join(recap_changes(out))


ALLOWED = (re.compile(r"^/etc/systemd/system/k3s[^/]*\.env$"),
           re.compile(r"^/var/lib/mysql/"),
           re.compile(r"^/var/lib/rancher/k3s/server/token$"),
           re.compile(r"^/var/lib/rancher/k3s/server/cred/passwd$"))
SEARCHED = "/etc /var/lib/rancher /root /tmp /var/log"


def test_no_secret_in_argv_journals_files_or_output(khc):
    ok(khc["deploy"])
    inv, vals = khc["inv"], secrets(khc["inv"])
    assert set(vals) == set(SECRET_NAMES), sorted(vals)
    argv = khc["argv"]
    assert any("mariadbd" in ln or "mysqld" in ln for ln in argv["k3s-db-01"]), "sampler blind"
    assert any("k3s" in ln for ln in argv["k3s-server-01"]), "sampler blind"
    hits = [f"argv on {h}: {name} in {ln[:120]!r}" for h, lines in argv.items()
            for ln in lines for name, v in vals.items() if v in ln]
    patterns = "\n".join(vals.values()) + "\n"
    allowed: list[str] = []
    for h in inv.hosts:
        journal = ssh(inv, h, "journalctl --no-pager -o cat", timeout=60)
        hits += [f"journal on {h}: {name}" for name, v in vals.items() if v in journal]
        files = ssh(inv, h, f"grep -rlF -f - {SEARCHED} 2>/dev/null; true", input=patterns)
        hits += [f"file on {h}: {f}" for f in files.split()
                 if not any(a.match(f) for a in ALLOWED)]
        allowed += [f"{h}:{f}" for f in files.split() if any(a.match(f) for a in ALLOWED)]
    d = khc["deploy"]
    hits += [f"fab output: {name}" for name, v in vals.items() if v in d.stdout + d.stderr]
    print("\nsecret values found only in the allowed files: " + ", ".join(allowed))
    assert hits == [], "\n".join(hits)


def _login(host, user, password, port=3306):
    try:
        pymysql.connect(host=host, port=port, user=user, password=password,
                        connect_timeout=5).close()
        return 0
    except pymysql.MySQLError as e:
        return e.args[0]


def test_accounts_refused_from_addresses_they_are_not_granted(khc):
    ok(khc["deploy"])
    inv, vals = khc["inv"], secrets(khc["inv"])
    accounts = {inv.db["user"]: vals["k3s_db_password"],
                inv.db["replication_user"]: vals["replication_password"],
                inv.db["check_user"]: "",
                "k3sha_admin": vals["db_admin_password"]}
    got = {(h.name, user): _login(h.address, user, pw)
           for h in inv.with_role("db") for user, pw in accounts.items()}
    # this machine (the lab's operator address) is none of the allowed addresses
    assert all(code in (1045, 1130) for code in got.values()), got
    # through the datastore VIP the database sees the client's own address (PROXY
    # protocol): refused from here (MariaDB drops a proxied client no account names before
    # its greeting: 2003 [lab]), accepted from a k3s server, over TLS with our CA
    assert _login(inv.vips["db"].address, inv.db["user"], vals["k3s_db_password"]) in (
        1045, 1130, 2003)
    with labdb.login_from(inv, "k3s-server-01") as db, db.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        who = cur.fetchone()[0]
        assert who == f"{inv.db['user']}@{inv.host('k3s-server-01').address}", who
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cur.fetchone()[1], "the session is not encrypted"
