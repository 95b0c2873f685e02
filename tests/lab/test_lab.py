"""The real lab: containers in network namespaces (root, systemd-nspawn, nftables).

Runs its own lab instance ("la" + 3 random characters, 10.78.0.0/24 when free: tests/lab/labid.py; inventory in a temp folder) so it never
touches the shipped lab ("kha"). The session fixture tears it down even when tests fail.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tasks.core import inventory
from tasks.lab import aptcache, containers, image, labnet, network, procs
from tasks.core.errors import Refused
from tests.lab import labid

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("systemd-nspawn"),
                       reason="needs root and systemd-nspawn (scripts/install-lab-deps.sh)"),
]

NAME, NET = labid.claim("la", "10.78.0")  # unique per run

INVENTORY = f"""
[lab]
enabled = true
name = "{NAME}"
subnet = "{NET}.0/24"
operator_address = "{NET}.1"

[ssh]
key = ".lab/ssh/id_ed25519"
known_hosts = ".lab/ssh/known_hosts"
connect_timeout = 5

[secrets]
file = ".lab/secrets.toml"

[vips.api]
address = "{NET}.100"
name = "k3s-balancer"
interface = "host0"
virtual_router_id = 3
priorities = [100, 90]

[hosts.k3s-balancer-01]
address = "{NET}.11"
roles = ["k3s-balancer"]

[hosts.k3s-balancer-02]
address = "{NET}.12"
roles = ["k3s-balancer"]

[hosts.k3s-db-01]
address = "{NET}.31"
roles = ["db"]

[hosts.k3s-db-02]
address = "{NET}.32"
roles = ["db"]

[hosts.k3s-server-01]
address = "{NET}.41"
roles = ["k3s-server"]
"""


def snapshot(name: str) -> dict[str, set[str]]:
    """What a lab instance can leave behind on the machine: links, namespaces, mounts and
    processes named after it (other engineers run other labs and tools meanwhile)."""
    links = {ln.split()[1].split("@")[0].rstrip(":") for ln in
             subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
             .splitlines()}
    return {
        "links": {x for x in links if x.startswith(name + "-")},
        "netns": {x for x in network.list_netns() if x.startswith(name + "-")},
        "mounts": {m for m in procs.mounts()
                   if f"/.lab/{name}/" in m or m.startswith(f"/run/netns/{name}-")},
        "procs": {f"{p.pid} {p.cmd}" for p in procs.procs() if name in p.cmd},
    }


LIMITS: dict[str, str] = {}  # the machine's own inotify limits, when the session saw them


def inotify_limits() -> dict[str, str]:
    return {k: containers.sysctl_path(k).read_text().strip() for k in labnet.INOTIFY_LIMITS}


@pytest.fixture(scope="session")
def lab(request):
    # a folder everyone may read, like a checkout in a home folder (pytest's own tmp
    # folder is private, which would hide defect 7)
    d = Path(tempfile.mkdtemp(prefix=f"{NAME}-inv-"))
    os.chmod(d, 0o755)
    path = d / "hosts.toml"
    path.write_text(INVENTORY)
    inv = inventory.load(path)
    labnet.down(inv, log=lambda _: None)  # leftovers of a killed earlier run
    before = snapshot(NAME)
    # the inotify limits are the machine's own only while no lab at all is up
    LIMITS.update(inotify_limits() if not network.list_netns() else {})

    def teardown() -> None:
        labnet.down(inv, log=lambda _: None)
        shutil.rmtree(d, ignore_errors=True)
        if LIMITS and not network.list_netns():  # the last lab down puts the limits back
            assert inotify_limits() == LIMITS, LIMITS

    request.addfinalizer(teardown)
    res = labnet.up(inv, log=print)
    print(f"lab {NAME} up in {res.seconds:.1f}s (image built: {res.image_built})")
    return inv, before


def ssh(inv, host: str, cmd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(labnet.ssh_argv(inv, host, [cmd]), capture_output=True, text=True,
                          timeout=timeout)


def fab(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`fab ARGS` with this inventory, no K3S_HA_* secrets and no terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("K3S_HA_")}
    env["K3S_HA_INVENTORY"] = str(path)
    return subprocess.run([sys.executable, "-m", "fabric", *args], env=env, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                          cwd=Path(__file__).resolve().parents[2])


def connects(addr: str, n: int, timeout: float = 0.8) -> int:
    """How many of n TCP connects to :22 succeed. 0.8 s: well above a connect on a loaded
    2-core machine, below the kernel's first SYN retransmission (1 s), so a dropped SYN
    still counts as a failure."""
    ok = 0
    for _ in range(n):
        try:
            socket.create_connection((addr, 22), timeout=timeout).close()
            ok += 1
        except OSError:
            pass
    return ok


def test_operator_interface_and_route(lab):
    inv, _ = lab
    out = subprocess.run(["ip", "-o", "route", "get", f"{NET}.31"], capture_output=True,
                         text=True).stdout
    assert f"dev {NAME}-op" in out
    labnet.check_route(inv, f"{NET}.31")
    with pytest.raises(Refused):
        labnet.check_route(inv, "192.0.2.1")


def test_every_host_answers_ssh_with_strict_host_keys(lab):
    inv, _ = lab
    known = labnet.known_hosts_path(inv).read_text()
    ed_keys = set()
    for h in inv.hosts.values():
        lines = [ln for ln in known.splitlines() if ln.startswith(h.address + " ")]
        assert len(lines) == len(labnet.HOST_KEY_TYPES), h.name
        ed_keys |= {ln.split()[2] for ln in lines if "ed25519" in ln}
        r = ssh(inv, h.name, "hostname; getent hosts k3s-balancer.lab.lan k3s-db-02")
        assert r.returncode == 0, r.stderr
        out = r.stdout.split()
        assert out[0] == h.name
        assert f"{NET}.100" in out and f"{NET}.32" in out
    assert len(ed_keys) == len(inv.hosts)  # every host has its own host key
    assert not list(labnet.image_path(inv).glob("etc/ssh/ssh_host_*"))  # image carries none


def test_wrong_host_key_is_refused(lab, tmp_path):
    inv, _ = lab
    h = inv.host("k3s-db-01")
    other = inv.host("k3s-db-02")
    kh = tmp_path / "kh"
    kh.write_text("\n".join(ln.replace(other.address, h.address, 1) for ln in
                            labnet.known_hosts_path(inv).read_text().splitlines()
                            if ln.startswith(other.address + " ")) + "\n")
    argv = [a if not a.startswith("UserKnownHostsFile=") else f"UserKnownHostsFile={kh}"
            for a in labnet.ssh_argv(inv, h.name, ["true"])]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in r.stderr


def test_secrets_file_created_private(lab):
    inv, _ = lab
    path = inv.resolve_path(inv.secrets["file"])
    assert (path.stat().st_mode & 0o777) == 0o600
    import tomllib

    vals = tomllib.loads(path.read_text())
    assert set(vals) == set(labnet.SECRET_KEYS) and all(len(v) >= 24 for v in vals.values())


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True,
                          text=True, timeout=30)


def test_state_folder_is_private_to_root(lab):
    """Defect 7: the hosts' overlays hold their files under this machine's uids; nobody
    else may list or read anything below .lab/, also for a lab started before the fix."""
    inv, _ = lab
    state = labnet.state_dir(inv)
    upper = labnet.host_dir(inv, "k3s-db-01") / "upper"
    assert as_nobody("ls", str(inv.path.parent)).returncode == 0  # the checkout is readable
    for d in (state.parent, state):
        os.chmod(d, 0o755)  # as an earlier version left it
    labnet.up(inv, log=print)
    for d in (state.parent, state):
        assert oct(d.stat().st_mode & 0o777) == oct(0o700), d
    for target in (state.parent, state, state / "hosts", upper, upper / "etc"):
        r = as_nobody("ls", str(target))
        assert r.returncode != 0 and "Permission denied" in r.stderr, (target, r)
    r = as_nobody("cat", str(upper / "etc" / "hostname"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, r


def test_up_refuses_to_stop_the_same_lab_name_of_another_inventory(lab, tmp_path):
    """Defect 6: another inventory file with the same [lab] name never stops this lab
    unasked: --yes or no terminal refuse (exit 2) naming this lab's inventory."""
    inv, _ = lab
    path = tmp_path / "same-name.toml"
    path.write_text(INVENTORY)
    other = inventory.load(path)
    with pytest.raises(Refused, match=re.escape(str(inv.path.resolve()))):
        labnet.up(other, log=print, yes=True)
    p = fab(path, "lab.up")
    assert p.returncode == 2, p.stdout + p.stderr
    assert str(inv.path.resolve()) in p.stderr and "fab lab.down" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert not labnet.state_dir(other).exists()  # nothing half-applied
    assert all(s.running and s.ssh for s in labnet.status(inv))  # this lab did not notice


def test_package_installs_through_the_cache(lab):
    inv, _ = lab
    # retried under timeout like the tasks do (README: apt-cacher-ng trap)
    r = ssh(inv, "k3s-db-02", "(timeout -k 5 60 apt-get update -q || timeout -k 5 120 "
            "apt-get update -q) && DEBIAN_FRONTEND=noninteractive "
            "apt-get install -y -q --no-install-recommends lsof && lsof -v 2>&1 | head -2")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    log = (labnet.state_dir(inv) / "acng" / "log" / "apt-cacher.log").read_text()
    assert re.search(rf"\|{re.escape(inv.host('k3s-db-02').address)}\|.*lsof_.*\.deb", log)


def test_a_hung_index_update_is_stopped_on_the_host_and_retried(lab, monkeypatch):
    """ensure_packages against the apt hang seen behind apt-cacher-ng (README): the first
    `apt-get update` never returns; the task stops it on the host, retries and installs,
    leaving no process behind."""
    from tasks.core import ops
    from tasks.core import ssh as rssh

    inv, _ = lab
    host = "k3s-server-01"
    shim = ("#!/bin/sh\n# first call hangs like apt 2.6 after the apt-cacher-ng race\n"
            "if [ ! -e /run/apt-hung-once ]; then touch /run/apt-hung-once; "
            "exec sleep 1000; fi\nexec /usr/bin/apt-get \"$@\"\n")
    r = subprocess.run(labnet.ssh_argv(inv, host, [
        "rm -f /run/apt-hung-once; cat > /usr/local/sbin/apt-get && "
        "chmod 755 /usr/local/sbin/apt-get"]), input=shim, capture_output=True, text=True,
        timeout=30)
    assert r.returncode == 0, r.stderr
    monkeypatch.setattr(ops, "APT_UPDATE_TIMEOUTS", (5, 120))
    conn = rssh.connect(inv, inv.host(host))
    rssh.open_checked(conn)
    try:
        t0 = time.monotonic()
        assert ops.ensure_packages(conn, ["lsof"]) is True
        took = time.monotonic() - t0
    finally:
        conn.close()
        ssh(inv, host, "rm -f /usr/local/sbin/apt-get")
    out = ssh(inv, host, "test -e /run/apt-hung-once && echo HUNG-ONCE; "
                         "pgrep -a 'sleep|apt' || echo NOTHING-LEFT; lsof -v 2>&1 | head -1")
    assert "HUNG-ONCE" in out.stdout, out.stdout            # the shim really hung once
    assert "NOTHING-LEFT" in out.stdout, out.stdout        # stopped on the host, not here
    assert "lsof" in out.stdout and took < 120, (took, out.stdout)


def test_power_off_and_on_keeps_files(lab):
    inv, _ = lab
    h = inv.host("k3s-db-01")
    assert ssh(inv, h.name, "echo kept > /root/marker && sync").returncode == 0
    t = time.monotonic()
    labnet.power_off(inv, h.name)
    assert time.monotonic() - t < 5
    assert not labnet.is_running(inv, h.name)
    assert connects(h.address, 3, 0.5) == 0
    labnet.power_on(inv, h.name, timeout=60)
    assert labnet.is_running(inv, h.name)
    r = ssh(inv, h.name, "cat /root/marker")
    assert r.returncode == 0 and r.stdout.strip() == "kept"


def test_partition_keeps_carrier_and_heals(lab):
    inv, _ = lab
    h = inv.host("k3s-db-02")
    ns = labnet.host_ns(NAME, h.name)
    labnet.partition(inv, h.name)
    try:
        assert connects(h.address, 3, 0.5) == 0
        link = json.loads(subprocess.run(["ip", "-j", "-n", ns, "link", "show", "host0"],
                                         capture_output=True, text=True).stdout)[0]
        assert "LOWER_UP" in link["flags"] and "NO-CARRIER" not in link["flags"]
        assert labnet.is_running(inv, h.name)
        assert [s.port for s in labnet.status(inv) if s.name == h.name] == ["partitioned"]
    finally:
        labnet.heal(inv, h.name)
    labnet.wait_ssh(inv, h.name, 10)


def test_link_down_is_carrier_loss(lab):
    inv, _ = lab
    h = inv.host("k3s-server-01")
    ns = labnet.host_ns(NAME, h.name)
    labnet.link_down(inv, h.name)
    try:
        link = json.loads(subprocess.run(["ip", "-j", "-n", ns, "link", "show", "host0"],
                                         capture_output=True, text=True).stdout)[0]
        assert "NO-CARRIER" in link["flags"]
        assert connects(h.address, 2, 0.5) == 0
    finally:
        labnet.link_up(inv, h.name)
    labnet.wait_ssh(inv, h.name, 10)


def test_loss_drops_roughly_that_share(lab):
    inv, _ = lab
    h = inv.host("k3s-server-01")
    assert connects(h.address, 5) == 5
    n = 200
    labnet.loss(inv, h.name, 30, direction="in")  # SYNs towards the host
    try:
        ok = connects(h.address, n)
    finally:
        labnet.clear_loss(inv, h.name)
    print(f"30% loss (in): {n - ok}/{n} connections failed")
    assert 0.15 * n <= n - ok <= 0.45 * n
    labnet.loss(inv, h.name, 100, direction="out")  # one way: replies never come back
    try:
        assert connects(h.address, 3) == 0
    finally:
        labnet.clear_loss(inv, h.name)
    assert connects(h.address, 20, 2.0) == 20


def test_vip_can_be_added_inside(lab):
    inv, _ = lab
    r = ssh(inv, "k3s-balancer-01", f"ip addr add {NET}.100/24 dev host0 && "
            f"ip addr del {NET}.100/24 dev host0")
    assert r.returncode == 0, r.stderr


def test_up_twice_is_a_noop_and_recovers_from_half_killed(lab, capsys):
    inv, _ = lab
    res = labnet.up(inv, log=print)
    assert not res.changed
    assert "nothing to do" in capsys.readouterr().out
    # break it the way a killed run would: apt-cacher-ng gone, a host powered off, another
    # host's systemd-nspawn killed alone (orphaned init), a switch port deleted
    procs.kill(aptcache.acng_pids(inv))
    labnet.power_off(inv, "k3s-balancer-01")
    procs.kill(containers.nspawn_pids(inv, "k3s-balancer-02"))
    subprocess.run(["ip", "-n", labnet.switch_ns(NAME), "link", "del",
                    labnet.host_port(inv, "k3s-db-02")], check=True)
    res = labnet.up(inv, log=print)
    assert res.changed
    assert all(s.running and s.ssh and s.port == "up" for s in labnet.status(inv))
    assert labnet.up(inv, log=print).changed is False


def test_second_instance_side_by_side_and_down_leaves_nothing(lab, tmp_path):
    inv, _ = lab
    other = labid.fresh_name("lx")
    clash = inventory.parse(INVENTORY.replace(f'name = "{NAME}"', f'name = "{other}"'),
                            tmp_path / "clash.toml")
    with pytest.raises(Refused, match=f"{NAME}-op"):
        labnet.up(clash, log=print)
    assert f"{other}-op" not in snapshot(other)["links"]
    name, net = labid.claim("lu", NET)  # another name on another free /24
    text = INVENTORY.replace(f'name = "{NAME}"', f'name = "{name}"').replace(NET + ".", net + ".")
    path = tmp_path / "second.toml"
    path.write_text(text)
    second = inventory.load(path)
    before = snapshot(name)
    try:
        labnet.up(second, log=print)
        assert ssh(second, "k3s-db-01", "hostname").stdout.strip() == "k3s-db-01"
        assert ssh(inv, "k3s-db-01", "hostname").returncode == 0
    finally:
        labnet.down(second, log=print)
    assert all(s.ssh for s in labnet.status(inv))  # the first lab did not notice
    # down leaves nothing of the second lab: links, namespaces, mounts, processes, state
    deadline = time.monotonic() + 10
    after = snapshot(name)
    while after["procs"] and time.monotonic() < deadline:
        time.sleep(0.2)
        after = snapshot(name)
    diff = {k: {"left": sorted(after[k] - before[k]), "gone": sorted(before[k] - after[k])}
            for k in before if after[k] != before[k]}
    assert not diff, diff
    assert not labnet.state_dir(second).exists()
    known = labnet.known_hosts_path(second)
    assert f"{net}.31" not in (known.read_text() if known.exists() else "")


def test_non_root_user_works_through_sudo_and_without_it_is_named(lab):
    """The README's promise for real machines: a non-root SSH user with passwordless sudo
    runs every task (files owned by root, secrets through stdin); one without sudo fails
    cluster.check naming the host and the fix."""
    from tasks.core import ops
    from tasks.core import ssh as rssh

    inv, _ = lab
    setup = ("id ops >/dev/null 2>&1 || useradd -m -s /bin/bash {u}; "
             "install -d -m 700 -o {u} -g {u} /home/{u}/.ssh; "
             "install -m 600 -o {u} -g {u} /root/.ssh/authorized_keys /home/{u}/.ssh/")
    for host, user in (("k3s-db-01", "ops"), ("k3s-db-02", "nosudo")):
        res = ssh(inv, host, f"id {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}; "
                             + setup.split("; ", 1)[1].format(u=user))
        assert res.returncode == 0, res.stderr
    ssh(inv, "k3s-db-01", "echo 'ops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/ops && "
                          "chmod 440 /etc/sudoers.d/ops")
    text = inv.path.read_text()
    text = text.replace('[hosts.k3s-db-01]\n', '[hosts.k3s-db-01]\nssh_user = "ops"\n')
    text = text.replace('[hosts.k3s-db-02]\n', '[hosts.k3s-db-02]\nssh_user = "nosudo"\n')
    path = inv.path.with_name("sudo.toml")
    path.write_text(text)
    sudo_inv = inventory.load(path)

    conn = rssh.connect(sudo_inv, sudo_inv.host("k3s-db-01"))
    rssh.open_checked(conn)
    try:
        assert rssh.sh(conn, "id -u", write=False).stdout.strip() == "0"
        assert ops.ensure_file(conn, "/etc/k3s-ha-sudo-test", "s3cret\n", mode="0600",
                                  secret=True)
        assert not ops.ensure_file(conn, "/etc/k3s-ha-sudo-test", "s3cret\n", mode="0600",
                                      secret=True)
        assert rssh.sh(conn, "cat > /root/from-stdin", stdin="via stdin").exited == 0
    finally:
        conn.close()
    out = ssh(inv, "k3s-db-01", "stat -c '%U %a' /etc/k3s-ha-sudo-test; cat /root/from-stdin")
    assert out.stdout.split("\n")[:2] == ["root 600", "via stdin"], out.stdout

    p = fab(path, "cluster.check")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "k3s-db-02: cannot run commands as root" in p.stderr and "passwordless sudo" in p.stderr
    assert "k3s-db-01" not in p.stderr and "Traceback" not in p.stderr


def test_extra_packages_build_their_own_cached_image(lab, tmp_path, monkeypatch):
    """[lab] extra_packages (the k3s stand-in will need python3 libraries) gives another
    cache key, a real debootstrap with the package in it, and a cache hit the second time."""
    monkeypatch.setattr(image, "IMAGE_CACHE", tmp_path / "images")
    text = INVENTORY.replace("[ssh]", 'extra_packages = ["python3-yaml"]\n\n[ssh]')
    path = tmp_path / "extra.toml"
    path.write_text(text)
    extra = inventory.load(path)
    base_inv, _ = lab
    assert labnet.image_path(extra).name != labnet.image_path(base_inv).name
    img, built = labnet.ensure_image(extra, log=print)
    assert built and img.parent == tmp_path / "images"
    status = (img / "var/lib/dpkg/status").read_text()
    assert re.search(r"Package: python3-yaml\nStatus: install ok installed", status)
    assert "Package: openssh-server" in status
    assert labnet.ensure_image(extra, log=print) == (img, False)
