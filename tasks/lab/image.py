"""The lab's host image: a debootstrapped Debian rootfs, cached per suite + package list
in IMAGE_CACHE (shared by every lab, the read-only lowerdir of every host's overlay)."""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterable

from ..core.errors import Refused
from ..core.inventory import Inventory
from .mirrors import machine_sources_text, main_mirror, mirror_sources
from .names import HOST_KEY_TYPES, Log, lab_name, quiet
from .procs import run

IMAGE_CACHE = Path(os.environ.get("K3S_HA_IMAGE_CACHE", "/var/cache/k3s-ha/images"))
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "curl",
                 "ca-certificates", "iproute2", "sudo")
# masked in the image: a timer holding the dpkg lock would break the tasks' apt-get
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service",
                "apt-daily-upgrade.service", "e2scrub_all.timer", "fstrim.timer")


def image_key(suite: str, packages: Iterable[str]) -> str:
    """Cache key of an image: suite + sorted package list."""
    pk = sorted(set(packages))
    digest = hashlib.sha256(("\n".join([suite] + pk)).encode()).hexdigest()[:12]
    return f"{suite}-{digest}"


def image_packages(inv: Inventory) -> list[str]:
    return sorted(set(BASE_PACKAGES) | {str(p) for p in inv.lab["extra_packages"]})


def image_path(inv: Inventory) -> Path:
    return IMAGE_CACHE / image_key(inv.lab["suite"], image_packages(inv))


def ensure_image(inv: Inventory, log: Log = quiet) -> tuple[Path, bool]:
    """The cached rootfs for this inventory's suite + packages; built when missing.

    Returns (path, built). Built into a temporary folder and renamed, under a lock, so
    concurrent labs never see a half-built image.
    """
    path = image_path(inv)
    if (path / "etc" / "os-release").exists():
        return path, False
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    with open(IMAGE_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / "etc" / "os-release").exists():
            return path, False
        tmp = path.with_name(path.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        mirror = main_mirror(mirror_sources(machine_sources_text(), inv.lab["mirror"]))
        pk = image_packages(inv)
        log(f"lab {lab_name(inv)}: building image {path.name} ({inv.lab['suite']}, "
            f"{len(pk)} packages) from {mirror}")
        run(["debootstrap", "--variant=minbase", f"--include={','.join(pk)}",
             inv.lab["suite"], str(tmp), mirror], timeout=1800)
        _finish_image(tmp)
        tmp.rename(path)
        return path, True


def _remove(p: Path) -> None:
    if p.exists() or p.is_symlink():
        p.unlink()


def _finish_image(root: Path) -> None:
    """Make a debootstrapped tree a neutral image: no host keys, no machine id, no DNS."""
    for p in (root / "etc" / "ssh").glob("ssh_host_*"):
        p.unlink()
    (root / "etc" / "machine-id").write_text("")
    _remove(root / "var" / "lib" / "dbus" / "machine-id")
    _remove(root / "etc" / "apt" / "sources.list")
    _remove(root / "etc" / "resolv.conf")
    (root / "etc" / "resolv.conf").write_text("# lab: no DNS; every lab name is in /etc/hosts\n")
    for unit in MASKED_UNITS:
        link = root / "etc" / "systemd" / "system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/dev/null")
    conf = root / "etc" / "ssh" / "sshd_config.d" / "10-lab.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("".join(f"HostKey /etc/ssh/ssh_host_{t}_key\n" for t in HOST_KEY_TYPES)
                    + "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                    "UseDNS no\n")
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
    for p in (root / "var" / "lib" / "apt" / "lists").glob("*_*"):
        p.unlink()


def purge_images() -> list[Path]:
    """Delete the image cache; refused while any overlay (of any lab) still uses it."""
    with open("/proc/self/mountinfo") as f:
        users = [ln.split()[4] for ln in f if f"lowerdir={IMAGE_CACHE}/" in ln]
    if users:
        raise Refused(f"the image cache {IMAGE_CACHE} is in use by {len(users)} running "
                      f"lab host(s) (e.g. {users[0]}). Fix: bring the other labs down first, "
                      "then purge")
    removed = []
    if IMAGE_CACHE.exists():
        for p in IMAGE_CACHE.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
                removed.append(p)
        shutil.rmtree(IMAGE_CACHE, ignore_errors=True)
        parent = IMAGE_CACHE.parent
        if parent.name == "k3s-ha" and parent.exists() and not any(parent.iterdir()):
            parent.rmdir()
    return removed
