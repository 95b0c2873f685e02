"""The lab's hosts as containers: each an overlay on the cached image (plus the files the
lab writes into it), booted by systemd-nspawn in the host's namespace; found, stopped and
waited for by their processes, never by a pid file.

  <inventory dir>/.lab/<name>/hosts/<host>/   upper/work/merged overlay, console.log
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from ..core.errors import InputError, StepFailed
from ..core.inventory import Host, Inventory
from ..core.run import poll
from . import network
from .access import check_route
from .names import HOST_KEY_TYPES, host_dir, host_ns, lab_name, require_lab
from .procs import (kill, mounts, pids_in_netns, procs, procs_of, run, spawn_detached,
                    wait_gone)

# systemd in every container takes inotify instances: Debian's 128 per user is exhausted
# by ~12 booted hosts ("Failed to create inotify object: Too many open files", no sshd)
INOTIFY_LIMITS = {"fs.inotify.max_user_instances": 8192,
                  "fs.inotify.max_user_watches": 524288}
INOTIFY_SAVED = Path("/run/k3s-ha-lab-sysctl.json")


# ------------------------------------------------------------------ files (pure renderers)
def render_hosts(inv: Inventory) -> str:
    """/etc/hosts of every lab host: every host and VIP as `ADDR NAME NAME.domain`."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", ""]
    for h in inv.hosts.values():
        lines.append(f"{h.address}\t{h.name} {inv.fqdn(h.name)}".rstrip())
    for v in inv.vips.values():
        if v.name:
            lines.append(f"{v.address}\t{v.name} {inv.fqdn(v.name)}")
    return "\n".join(lines) + "\n"


def safe_mount_path(p: Path) -> str:
    s = str(p)
    if any(ch in s for ch in ",:\\ \n"):
        raise InputError(f"{s}: overlay paths cannot contain ',', ':', spaces or backslashes. "
                         "Fix: move the inventory to a plain path")
    return s


# ------------------------------------------------------------------ overlays and files
def write(root: Path, rel: str, content: str, mode: int = 0o644) -> bool:
    """Write root/rel unless identical; refuses paths that resolve outside root."""
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    real_parent = os.path.realpath(path.parent)
    if not (real_parent + "/").startswith(os.path.realpath(root) + "/"):
        raise StepFailed(f"{path}: resolves outside the container root; refusing to write")
    try:
        if path.read_text() == content and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    if path.is_symlink():
        path.unlink()
    tmp = path.with_name(f".{path.name}.lab-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, mode)
    tmp.replace(path)
    return True


def ensure_overlay(inv: Inventory, h: Host, image: Path) -> bool:
    d = host_dir(inv, h.name)
    merged = d / "merged"
    if str(merged) in mounts():
        return False
    for sub in ("upper", "work", "merged"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    opts = (f"lowerdir={safe_mount_path(image)},upperdir={safe_mount_path(d / 'upper')},"
            f"workdir={safe_mount_path(d / 'work')}")
    run(["mount", "-t", "overlay", f"{lab_name(inv)}-lab", "-o", opts, str(merged)])
    return True


def unmount_overlays(name: str) -> None:
    """Unmount every host overlay of the lab name (lazily when busy)."""
    for m in reversed(mounts()):
        if f"/.lab/{name}/hosts/" in m:
            run(["umount", m], check=False)
            if m in mounts():
                run(["umount", "-l", m], check=False)


def ensure_files(inv: Inventory, h: Host, files: dict[str, str]) -> bool:
    """Identity (machine id, host keys, hostname) and `files` (path -> text) in the host;
    `root/.ssh/authorized_keys` is written 0600 in a 0700 folder."""
    root = host_dir(inv, h.name) / "merged"
    changed = False
    mid = root / "etc" / "machine-id"
    if not mid.exists() or not mid.read_text().strip():
        changed |= write(root, "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    for t in HOST_KEY_TYPES:
        key = root / "etc" / "ssh" / f"ssh_host_{t}_key"
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", t, "-N", "", "-C", f"root@{h.name}", "-f", str(key)])
            changed = True
    changed |= write(root, "etc/hostname", h.name + "\n")
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    for rel, text in files.items():
        changed |= write(root, rel, text, 0o600 if rel.startswith("root/.ssh/") else 0o644)
    return changed


# ------------------------------------------------------------------ processes
def nspawn_pids(inv: Inventory, host: str) -> list[int]:
    return procs_of("systemd-nspawn",
                    f"--network-namespace-path=/run/netns/{host_ns(lab_name(inv), host)}")


def init_pid(inv: Inventory, host: str) -> int | None:
    """The container's init: the process in the host's netns whose parent is outside it."""
    pids = set(pids_in_netns(host_ns(lab_name(inv), host)))
    if not pids:
        return None
    for p in procs():
        if p.pid in pids and p.ppid not in pids:
            return p.pid
    return None


def is_running(inv: Inventory, host: str) -> bool:
    """True when the host's container init is alive."""
    require_lab(inv)
    inv.host(host)
    return init_pid(inv, host) is not None


def _uses_overlay(pid: int, upper: str, my_mnt: int) -> bool:
    try:
        if os.stat(f"/proc/{pid}/ns/mnt").st_ino == my_mnt:
            return False
        with open(f"/proc/{pid}/mountinfo") as f:
            return upper in f.read()
    except OSError:
        return False


def container_pids(inv: Inventory, host: str) -> list[int]:
    """Every process of the host's container, found by netns, by nspawn parentage and by
    its overlay (mountinfo), so a container survives none of: a deleted netns, a killed
    nspawn, a lost pid file."""
    found = set(pids_in_netns(host_ns(lab_name(inv), host)))
    nspawns = set(nspawn_pids(inv, host))
    upper = f"/.lab/{lab_name(inv)}/hosts/{host}/upper,"
    try:
        my_mnt = os.stat("/proc/self/ns/mnt").st_ino
    except OSError:
        my_mnt = 0
    for p in procs():
        if p.pid in found or p.pid in nspawns:
            continue
        if p.ppid in nspawns or _uses_overlay(p.pid, upper, my_mnt):
            found.add(p.pid)
    return sorted(found)


def start_host(inv: Inventory, h: Host) -> int:
    d = host_dir(inv, h.name)
    ns = host_ns(lab_name(inv), h.name)
    argv = ["systemd-nspawn", "-D", str(d / "merged"), "--boot", "--register=no",
            "--keep-unit", f"--network-namespace-path=/run/netns/{ns}",
            f"--machine={h.name}", "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no", "--console=read-only"]
    pid = spawn_detached(argv, d / "console.log")
    (d / "nspawn.pid").write_text(f"{pid}\n")
    return pid


def stop_host(inv: Inventory, host: str, timeout: float = 15) -> bool:
    """Kill the container (its init and everything in it), then its systemd-nspawn."""
    victims = container_pids(inv, host)
    nspawns = nspawn_pids(inv, host)
    if not victims and not nspawns:
        return False
    parents = {p.pid: p.ppid for p in procs()}
    kill([p for p in victims if parents.get(p) not in victims])  # the inits first
    kill(victims)
    if not wait_gone(victims, timeout):
        raise StepFailed(f"{host}: container processes {victims} survived SIGKILL")
    if not wait_gone(nspawns, 5):
        kill(nspawns)
        wait_gone(nspawns, 5)
    return True


def ensure_host_net(inv: Inventory, h: Host) -> bool:
    """The host's namespace and link; a broken one is rebuilt with the host stopped."""
    if network.host_net_ok(inv, h):
        return False
    stop_host(inv, h.name)
    network.rebuild_host_net(inv, h)
    return True


def ensure_started(inv: Inventory, h: Host) -> bool:
    """Boot the host unless its init is alive (a stale nspawn is stopped first)."""
    if init_pid(inv, h.name) is not None:
        return False
    stop_host(inv, h.name)
    start_host(inv, h)
    return True


def ssh_banner(address: str, port: int = 22, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def console_tail(inv: Inventory, host: str, lines: int = 15) -> str:
    """The last lines of the host's console log ('' when there is none)."""
    try:
        text = (host_dir(inv, host) / "console.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_ssh(inv: Inventory, host: str, timeout: float = 60) -> float:
    """Wait until the host's sshd sends its banner; returns seconds waited."""
    require_lab(inv)
    h = inv.host(host)
    check_route(inv, h.address)
    start = time.monotonic()
    met, _ = poll(lambda: ssh_banner(h.address, h.ssh_port, 1.0), timeout=timeout,
                  interval=0.2)
    if not met:
        raise StepFailed(f"{host} ({h.address}): SSH not answering after {timeout:.0f}s. "
                         f"See {host_dir(inv, host) / 'console.log'}")
    return time.monotonic() - start


# ------------------------------------------------------------------ machine limits
def sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def raise_inotify_limits() -> bool:
    """Raise the inotify limits for many booted systemds; the old values are saved once
    (INOTIFY_SAVED) and restored by the last lab going down."""
    current = {k: int(sysctl_path(k).read_text()) for k in INOTIFY_LIMITS}
    low = {k: v for k, v in INOTIFY_LIMITS.items() if current[k] < v}
    if not low:
        return False
    if not INOTIFY_SAVED.exists():
        INOTIFY_SAVED.write_text(json.dumps(current))
    for k, v in low.items():
        sysctl_path(k).write_text(f"{v}\n")
    return True


def restore_inotify_limits() -> None:
    try:
        saved = json.loads(INOTIFY_SAVED.read_text())
    except (OSError, ValueError):
        return
    for k, v in saved.items():
        if k in INOTIFY_LIMITS:
            sysctl_path(k).write_text(f"{int(v)}\n")
    INOTIFY_SAVED.unlink()
