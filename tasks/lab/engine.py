"""Bringing a lab instance up, down, and reading its status.

`up` converges every piece (state folder, image, keys, switch, apt cache, each host's
link, overlay, files and container) and is a no-op when the lab is already there; `down`
removes everything the lab name owns on this machine, found by name.

  <inventory dir>/.lab/<name>/   state, mode 0700: the hosts' overlays hold their files
                                 (database data, replication passwords) under the very
                                 uids of this machine's users
  /run/k3s-ha-labs/<name>.owner  the inventory file that started the lab
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from ..core.errors import Refused, StepFailed
from ..core.inventory import Host, Inventory
from ..core.run import fan_out
from ..core.secrets import confirm, interactive
from ..core.ssh import lab_route_ok
from . import access, aptcache, containers, faults, mirrors, network
from .airgap import ensure_airgap
from .image import ensure_image, purge_images
from .names import Log, host_ns, lab_name, require_lab, state_dir, switch_ns
from .procs import kill

OWNERS = Path("/run/k3s-ha-labs")  # <name>.owner: the inventory file that started the lab


def each(items: list[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """fn on every item in parallel (tasks.core.run.fan_out); the results in order, or the
    first failure raised once every item finished."""
    results = fan_out(items, fn)
    for ok, val in results.values():
        if not ok:
            raise val
    return [results[it][1] for it in items]


# ------------------------------------------------------------------ who owns the name
class Claim(Enum):
    FREE = "free"    # no lab of this name runs: take it
    OURS = "ours"    # started from this inventory
    OTHER = "other"  # running, started from another inventory file


def claim_of(owner: str, me: str, running: bool) -> Claim:
    if owner == me:
        return Claim.OURS
    return Claim.OTHER if owner and running else Claim.FREE


def _owner_file(name: str) -> Path:
    return OWNERS / f"{name}.owner"


def take_over(inv: Inventory, log: Log, yes: bool = False) -> bool:
    """Record this inventory as the owner of the lab name. A running lab of the same name
    started from another inventory file is only stopped after the operator agreed."""
    name, me = lab_name(inv), str(inv.path.resolve())
    try:
        owner = _owner_file(name).read_text().strip()
    except OSError:
        owner = ""
    claim = claim_of(owner, me, switch_ns(name) in network.list_netns())
    if claim is Claim.OTHER:
        why = f"lab {name} is running, started from another inventory: {owner}"
        if not interactive(yes):
            raise Refused(f"{why}; refusing to stop it ({'--yes' if yes else 'no terminal'}). "
                          f"Fix: stop it first (K3S_HA_INVENTORY={owner} fab lab.down), or "
                          f"give {inv.path} another [lab] name to run both side by side")
        if not confirm(f"{why}. Stop that lab and start {name} from {me}?", default=False):
            raise Refused(f"{why}; left running. Fix: give {inv.path} another [lab] name")
        log(f"lab {name}: stopping the lab started from {owner}")
        sweep(inv)
    if claim is not Claim.OURS:
        OWNERS.mkdir(parents=True, exist_ok=True)
        _owner_file(name).write_text(me + "\n")
    return claim is Claim.OTHER


def make_private(inv: Inventory) -> None:
    """.lab/ and .lab/<name>/ mode 0700 (fixes an existing lab too)."""
    d = state_dir(inv)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    for p in (d.parent, d):
        os.chmod(p, 0o700)


# ------------------------------------------------------------------ up
@dataclass
class UpResult:
    changed: bool
    hosts: int
    seconds: float
    image_built: bool


def _host_files(inv: Inventory, pubkey: str, stanzas: list[mirrors.Stanza]) -> dict[str, str]:
    """What every host gets written into it: path in the host -> content."""
    apt_proxy = mirrors.render_apt_proxy(inv.lab["operator_address"], mirrors.ACNG_PORT,
                                         mirrors.machine_check_valid_until())
    return {
        "etc/hosts": containers.render_hosts(inv),
        "etc/apt/apt.conf.d/01lab-proxy": apt_proxy,
        "etc/apt/sources.list.d/debian.sources": mirrors.render_sources(stanzas,
                                                                        inv.lab["suite"]),
        "root/.ssh/authorized_keys": pubkey,
    }


def _prepare_host(inv: Inventory, h: Host, image: Path, files: dict[str, str]) -> bool:
    """One host converged: link, switch port, overlay, files, container booted."""
    changed = containers.ensure_host_net(inv, h)
    changed |= faults.restore_port(inv, h.name)
    changed |= containers.ensure_overlay(inv, h, image)
    changed |= containers.ensure_files(inv, h, files)
    changed |= containers.ensure_started(inv, h)
    return changed


def _wait_or_reboot(inv: Inventory, h: Host, image: Path, files: dict[str, str],
                    timeout: float, log: Log) -> None:
    """sshd answering; a host whose boot stalled is booted once more before failing ([lab]
    one container of ten, once in a full test run, never answered in 120 s)."""
    try:
        containers.wait_ssh(inv, h.name, timeout)
        return
    except StepFailed as e:
        tail = containers.console_tail(inv, h.name)
        log(f"lab {lab_name(inv)}: {e}; booting {h.name} once more. Its console ended "
            f"with:\n{tail}")
    containers.stop_host(inv, h.name)
    _prepare_host(inv, h, image, files)
    try:
        containers.wait_ssh(inv, h.name, timeout)
    except StepFailed as e:
        raise StepFailed(f"{e}; its console ended with:\n{containers.console_tail(inv, h.name)}"
                         ) from None


def up(inv: Inventory, log: Log = print, ssh_timeout: float = 120,
       yes: bool = False) -> UpResult:
    """Bring the lab to its declared state; a no-op when it is already there."""
    require_lab(inv)
    t0 = time.monotonic()
    network.check_subnet(inv)
    changed = take_over(inv, log, yes)
    make_private(inv)
    image, built = ensure_image(inv, log)
    key = access.ensure_ssh_key(inv)
    changed |= built | access.ensure_secrets(inv)
    changed |= ensure_airgap(inv, log)
    stanzas = mirrors.mirror_sources(mirrors.machine_sources_text(), inv.lab["mirror"])
    files = _host_files(inv, key.with_name(key.name + ".pub").read_text(), stanzas)
    changed |= containers.raise_inotify_limits()
    changed |= network.ensure_switch(inv)
    changed |= aptcache.ensure_acng(inv, stanzas)
    hosts = list(inv.hosts)
    changed |= any(each(hosts, lambda h: _prepare_host(inv, inv.host(h), image, files)))
    changed |= faults.clear_all_loss(inv)
    access.collect_host_keys(inv)
    each(hosts, lambda h: _wait_or_reboot(inv, inv.host(h), image, files, ssh_timeout, log))
    secs = time.monotonic() - t0
    what = f"up in {secs:.1f}s" if changed else "up, nothing to do"
    log(f"lab {lab_name(inv)}: {len(hosts)} hosts {what}")
    return UpResult(changed=changed, hosts=len(hosts), seconds=secs, image_built=built)


# ------------------------------------------------------------------ down
def sweep(inv: Inventory) -> None:
    """Kill and remove every container, mount, netns, veth and apt-cacher-ng of the lab
    name, found by name (whatever inventory file started them)."""
    name = lab_name(inv)
    prefix = host_ns(name, "")
    stale = [ns[len(prefix):] for ns in network.list_netns() if ns.startswith(prefix)]
    hosts = list(dict.fromkeys(list(inv.hosts) + stale))
    each(hosts, lambda h: containers.stop_host(inv, h))
    # containers whose netns is already gone: find them by their nspawn command line
    for h in hosts:
        kill(containers.nspawn_pids(inv, h))
    containers.unmount_overlays(name)
    for h in hosts:
        network.delete_host_ns(inv, h)
    aptcache.stop_acng(inv)
    network.teardown_switch(inv)


def _rmdir_if_empty(d: Path) -> None:
    if d.exists() and not any(d.iterdir()):
        d.rmdir()


def down(inv: Inventory, purge: bool = False, log: Log = print) -> None:
    """Remove every container, mount, namespace, veth and process of this lab instance."""
    require_lab(inv)
    name = lab_name(inv)
    sweep(inv)
    _owner_file(name).unlink(missing_ok=True)
    _rmdir_if_empty(OWNERS)
    access.forget_host_keys(inv)
    if state_dir(inv).exists():
        shutil.rmtree(state_dir(inv))
    _rmdir_if_empty(state_dir(inv).parent)
    if not network.list_netns():  # the last lab on this machine: put the machine back
        containers.restore_inotify_limits()
    network.release_netns_mount()
    log(f"lab {name}: down")
    if purge:
        for p in purge_images():
            log(f"lab {name}: removed image {p}")


# ------------------------------------------------------------------ status
@dataclass
class HostStatus:
    name: str
    address: str
    running: bool
    pid: int | None
    ssh: bool
    port: network.Port


def status(inv: Inventory) -> list[HostStatus]:
    """Each host as the machine shows it: init process, switch port, sshd answering."""
    require_lab(inv)

    def one(name: str) -> HostStatus:
        h = inv.host(name)
        pid = containers.init_pid(inv, h.name)
        ssh = (pid is not None and lab_route_ok(inv, h.address)
               and containers.ssh_banner(h.address, h.ssh_port))
        return HostStatus(h.name, h.address, pid is not None, pid, ssh,
                          network.port_state(inv, h.name))

    return each(list(inv.hosts), one)
