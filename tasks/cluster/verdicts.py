"""The preflight's verdicts: pure functions from host facts to a typed Finding with its fix.

No SSH here: `preflight` gathers the facts (tasks/facts/host.py) and calls these; the
unit tests call them with real command outputs.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..core.inventory import Host, Inventory, Vip, role_ports
from ..facts.host import ClockSample, Link, Listener, SourceCheck


class Level(Enum):
    OK = "ok"
    WARN = "WARN"
    ERROR = "ERROR"


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str
    fix: str = ""


def ok(message: str) -> Finding:
    return Finding(Level.OK, message)


def unreachable_finding(error: str) -> Finding:
    """A host not reachable as root: the error's own 'Fix:' part becomes the fix."""
    msg, _, fix = error.splitlines()[0].partition(" Fix: ")
    return Finding(Level.ERROR, msg.rstrip(". ") if fix else msg,
                   fix or "SSH as root (or passwordless sudo) must work before any other check")


# ---------------------------------------------------------------- OS
SUPPORTED = {"debian": ("11", "12", "13"), "ubuntu": ("20.04", "22.04", "24.04")}
RHEL_LIKE = ("rhel", "centos", "rocky", "almalinux", "fedora", "ol")
OS_FIX = "use Debian 11/12/13 or Ubuntu 20.04/22.04/24.04 (the tested releases)"


def os_finding(osr: dict[str, str]) -> Finding:
    """/etc/os-release values -> supported (OK), untested (WARN) or unknown (ERROR)."""
    dist, ver = osr.get("ID", ""), osr.get("VERSION_ID", "")
    pretty = osr.get("PRETTY_NAME") or f"{dist} {ver}".strip() or "unknown"
    ids = (dist + " " + osr.get("ID_LIKE", "")).split()
    if ver in SUPPORTED.get(dist, ()):
        return ok(pretty)
    if dist in SUPPORTED or any(i in SUPPORTED for i in ids):
        return Finding(Level.WARN, f"{pretty}: apt-based but not a tested release", OS_FIX)
    if any(i in RHEL_LIKE for i in ids):
        return Finding(Level.WARN, f"{pretty}: RHEL family (dnf) is not tested", OS_FIX)
    return Finding(Level.ERROR, f"unsupported OS: {pretty} (ID={dist or '?'})", OS_FIX)


# ---------------------------------------------------------------- names
def vip_name(inv: Inventory, key: str) -> dict[str, str]:
    """{NAME.domain: address} for a VIP that configs reach by name ({} if by address)."""
    vip = inv.vips.get(key)
    return {inv.fqdn(vip.name): vip.address} if vip and vip.name else {}


def names_needed(inv: Inventory, host: Host) -> dict[str, str]:
    """Every name this host's configs use -> the address the inventory expects:
    HAProxy backends by NAME.domain (API balancers: the k3s servers; datastore balancers:
    the databases), k3s servers reach the datastore VIP by name, agents the API VIP."""
    want: dict[str, str] = {}
    if host.has("k3s-balancer"):
        want |= {inv.fqdn(s.name): s.address for s in inv.with_role("k3s-server")}
    if host.has("db-balancer"):
        want |= {inv.fqdn(d.name): d.address for d in inv.with_role("db")}
    if host.has("k3s-server"):
        want |= vip_name(inv, "db")
    if host.has("k3s-agent"):
        want |= vip_name(inv, "api")
    return want


def names_finding(host: str, want: dict[str, str], got: dict[str, list[str]]) -> Finding:
    if not want:
        return ok("no names used")
    missing = [n for n in want if not got.get(n)]
    wrong = [f"{n} -> {', '.join(got[n])} (inventory: {a})" for n, a in want.items()
             if got.get(n) and a not in got[n]]
    if not missing and not wrong:
        return ok(f"{len(want)} names resolve")
    lines = "; ".join(f"{want[n]} {n}" for n in missing + [w.split()[0] for w in wrong])
    parts = ([f"does not resolve: {', '.join(missing)}"] if missing else []) + \
            ([f"resolves elsewhere: {'; '.join(wrong)}"] if wrong else [])
    return Finding(Level.ERROR, "; ".join(parts),
                   f"add to DNS or to /etc/hosts on {host}: {lines}")


# ---------------------------------------------------------------- clock
CLOCK_WARN_S = 2.0    # time sync missing: certificates and tokens soon disagree
CLOCK_ERROR_S = 30.0  # freshly issued certificates/tokens are "not yet valid" elsewhere
CLOCK_FIX = ("enable time sync (systemd-timesyncd or chrony) on every host and on this "
             "machine: timedatectl set-ntp true")


def clock_findings(samples: dict[str, ClockSample]) -> dict[str, Finding]:
    """Per host: its offset against the operator and against the hosts' median, less the
    measuring error (half the round trip); over 2 s WARN, over 30 s ERROR."""
    if not samples:
        return {}
    median = statistics.median(s.offset for s in samples.values())
    out = {}
    for name, s in samples.items():
        vs_op = abs(s.offset) - s.uncertainty
        vs_hosts = abs(s.offset - median) - s.uncertainty
        worst = max(vs_op, vs_hosts)
        msg = (f"{s.offset:+.1f} s vs the operator, {s.offset - median:+.1f} s vs the hosts' "
               f"median (+-{s.uncertainty:.2f} s)")
        if worst > CLOCK_ERROR_S:
            out[name] = Finding(Level.ERROR, msg, CLOCK_FIX)
        elif worst > CLOCK_WARN_S:
            out[name] = Finding(Level.WARN, msg, CLOCK_FIX)
        else:
            out[name] = ok(msg)
    return out


# ---------------------------------------------------------------- swap, disk
def swap_finding(host: Host, swaps: list[str]) -> Finding:
    if not swaps:
        return ok("off")
    if not (host.has("k3s-server") or host.has("k3s-agent")):
        return ok(f"on ({', '.join(swaps)}); not a k3s node")
    return Finding(Level.WARN, f"swap on ({', '.join(swaps)}): the kubelet refuses to start "
                   "with swap by default",
                   "swapoff -a and remove the swap line from /etc/fstab (or set the kubelet's "
                   "failSwapOn: false knowingly)")


GIB = 1 << 30
DISK_ERROR, DISK_WARN = 2 * GIB, 10 * GIB


def disk_finding(free: int, path: str = "/var/lib") -> Finding:
    """MySQL's data dir lives under /var/lib: under 2 GiB ERROR, under 10 GiB WARN."""
    msg = f"{free / GIB:.1f} GiB free on {path}"
    fix = f"free space or grow the filesystem holding {path}/mysql (at least 10 GiB)"
    if free < DISK_ERROR:
        return Finding(Level.ERROR, msg + " (MySQL needs 2 GiB to start safely)", fix)
    if free < DISK_WARN:
        return Finding(Level.WARN, msg + " (the k3s datastore grows with the cluster)", fix)
    return ok(msg)


# ---------------------------------------------------------------- ports
# a port held by one of these systemd units is our own deployed service, not a clash
OUR_UNITS = ("haproxy.service", "mariadb.service", "mysql.service", "mysqld.service",
             "k3s.service", "k3s-agent.service", "k3s-ha-db-health.service")


def ports_needed(inv: Inventory, host: Host) -> dict[int, str]:
    out: dict[int, str] = {}
    for role in host.roles:
        out |= role_ports(inv, role)
    return out


def ports_finding(host: str, needed: dict[int, str], socks: list[Listener]) -> Finding:
    if not needed:
        return ok("no ports needed")
    taken = []
    for port, what in sorted(needed.items()):
        for s in socks:
            if s.port == port and s.unit not in OUR_UNITS:
                taken.append((port, what, _who(s)))
                break
    if not taken:
        return ok("free or ours: " + ", ".join(str(p) for p in sorted(needed)))
    msg = "; ".join(f"{p} ({what}) is taken by {who}" for p, what, who in taken)
    return Finding(Level.ERROR, msg, f"stop that service on {host} (ss -ltnp shows it) or "
                   "change the port in the inventory ([balancers] / [db])")


def _who(s: Listener) -> str:
    if not s.pid:
        return s.process or "a process"
    return f"{s.process} (pid {s.pid}{', ' + s.unit if s.unit else ''})"


# ---------------------------------------------------------------- VIPs
def interface_finding(vip: Vip, links: dict[str, Link]) -> Finding:
    link = links.get(vip.interface)
    have = ", ".join(n for n in links if n != "lo") or "none"
    if link is None:
        return Finding(Level.ERROR, f"no interface {vip.interface} for the {vip.key} VIP "
                       f"{vip.address} (interfaces: {have})",
                       f"set vips.{vip.key}.interface to the interface on the VIP's subnet "
                       f"(one of: {have})")
    if not link.up:
        return Finding(Level.WARN, f"{vip.interface} is down", f"ip link set {vip.interface} up")
    return ok(f"{vip.interface} up")


@dataclass(frozen=True)
class VipSeen:
    """Who holds a VIP's address (from `ip -o addr` on every host) and who answers at it."""
    holders: tuple[str, ...]        # inventory hosts with the address on an interface
    answers_from: tuple[str, ...]   # where a TCP connect to it was answered (accepted or refused)


def vip_free_finding(vip: Vip, balancers: list[str], seen: VipSeen) -> Finding:
    """ERROR when the VIP is in use by anything but this VIP's own balancers."""
    foreign = [h for h in seen.holders if h not in balancers]
    ours = [h for h in seen.holders if h in balancers]
    fix = (f"give vips.{vip.key}.address an unused address, or remove {vip.address} from the "
           "machine that holds it (ip addr del)")
    if foreign:
        return Finding(Level.ERROR, f"{vip.address} is held by {', '.join(foreign)}, not a "
                       f"{vip.role} of this VIP", fix)
    if ours:
        return ok(f"held by our balancer {', '.join(ours)}")
    if seen.answers_from:
        return Finding(Level.ERROR, f"{vip.address} already answers (seen from "
                       f"{', '.join(seen.answers_from)}) and no balancer of ours holds it", fix)
    return ok(f"{vip.address} free")


def adverts_flow(members: list[Any]) -> bool:
    """A running pair proves multicast itself (pure; members: facts.vrrp.Member): every
    member's keepalived is MASTER or BACKUP and exactly one holds the VIP. Without adverts
    both would turn MASTER and hold it."""
    states = {getattr(m.state, "value", "") for m in members}
    return (len(members) >= 2 and all(m.reachable for m in members)
            and states <= {"MASTER", "BACKUP"} and sum(1 for m in members if m.holds) == 1)


def multicast_findings(vip: Vip, unicast: bool, heard: dict[str, set[str]],
                       tokens: dict[str, str], errors: dict[str, str]) -> dict[str, Finding]:
    """Per balancer: did it hear every peer's multicast probe? (tokens: host -> its token)."""
    if unicast:
        return {h: ok("unicast VRRP configured") for h in tokens}
    out = {}
    fix = (f"allow multicast to 224.0.0.18 on {vip.interface} between the pair, or set "
           "[balancers] unicast = true (keepalived then sends to each peer's address)")
    for h in tokens:
        if h in errors:
            out[h] = Finding(Level.ERROR, f"multicast probe failed: {errors[h]}", fix)
            continue
        missing = [p for p, t in tokens.items() if p != h and t not in heard.get(h, set())]
        if missing:
            out[h] = Finding(Level.ERROR, f"heard no multicast from {', '.join(missing)} on "
                             f"{vip.interface} (VRRP would see no peer: both MASTER)", fix)
        else:
            out[h] = ok(f"multicast from the peer heard on {vip.interface}")
    return out


# ---------------------------------------------------------------- package sources
def sources_finding(checks: list[SourceCheck]) -> Finding:
    bad = [c for c in checks if not c.ok]
    if not bad:
        return ok(f"{len(checks)} sources answer")
    return Finding(Level.ERROR, "; ".join(f"{c.uri}: {c.error}" for c in bad),
                   "fix the apt sources or proxy (apt-get update shows the same error); the "
                   "deploy installs HAProxy, keepalived and MariaDB from them")
