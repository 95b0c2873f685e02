"""The lab's package cache: one apt-cacher-ng per lab, on the operator address, with its
own folders under .lab/<name>/acng; every host's apt goes through it."""
from __future__ import annotations

import socket
from pathlib import Path

from ..core.errors import StepFailed
from ..core.inventory import Inventory
from ..core.run import poll
from .containers import write
from .mirrors import ACNG_PORT, Stanza, main_mirror, security_mirror
from .names import lab_name, state_dir
from .procs import kill, pid_alive, procs_of, spawn_detached, stop, wait_gone


def render_acng_conf(state: Path, bind: str, port: int, security: str = "") -> str:
    """apt-cacher-ng config of one lab instance (its own dirs, bound to the operator side)."""
    lines = [
        f"CacheDir: {state / 'cache'}",
        f"LogDir: {state / 'log'}",
        "SupportDir: /usr/lib/apt-cacher-ng",
        f"PidFile: {state / 'acng.pid'}",
        f"SocketPath: {state / 'acng.socket'}",
        f"BindAddress: {bind}",
        f"Port: {port}",
        "ForeGround: 1",
        "Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian",
        "ReportPage: acng-report.html",
        "ExThreshold: 4",
        "PassThroughPattern: ^$",
    ]
    if security:
        lines.append("Remap-secdeb: security.debian.org deb.debian.org/debian-security "
                     f"/debian-security ; {security}/")
    return "\n".join(lines) + "\n"


def acng_dir(inv: Inventory) -> Path:
    return state_dir(inv) / "acng"


def acng_pids(inv: Inventory) -> list[int]:
    return procs_of("apt-cacher-ng", f"/.lab/{lab_name(inv)}/acng/conf")


def acng_answers(inv: Inventory) -> bool:
    try:
        socket.create_connection((inv.lab["operator_address"], ACNG_PORT), timeout=1).close()
        return True
    except OSError:
        return False


def ensure_acng(inv: Inventory, stanzas: list[Stanza]) -> bool:
    """apt-cacher-ng configured and answering; restarted when its config changed."""
    d = acng_dir(inv)
    conf_dir = d / "conf"
    for sub in ("conf", "cache", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    conf = render_acng_conf(d, inv.lab["operator_address"], ACNG_PORT,
                            security_mirror(stanzas))
    changed = write(conf_dir, "acng.conf", conf)
    changed |= write(conf_dir, "backends_debian", main_mirror(stanzas) + "/\n")
    pids = acng_pids(inv)
    if pids and not changed and acng_answers(inv):
        return False
    kill(pids)
    wait_gone(pids, 5)
    pid = spawn_detached(["apt-cacher-ng", "-c", str(conf_dir)], d / "log" / "stdout.log")
    met, _ = poll(lambda: acng_answers(inv) or not pid_alive(pid), timeout=10, interval=0.1)
    if not (met and acng_answers(inv)):
        raise StepFailed(f"apt-cacher-ng did not start on {inv.lab['operator_address']}:"
                         f"{ACNG_PORT}; see {d / 'log'}. A machine-wide apt-cacher-ng on "
                         f"*:{ACNG_PORT} takes the port: stop it (/etc/init.d/apt-cacher-ng "
                         "stop); scripts/install-lab-deps.sh disables it")
    return True


def stop_acng(inv: Inventory) -> None:
    stop(acng_pids(inv))
