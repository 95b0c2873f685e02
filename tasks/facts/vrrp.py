"""keepalived/VRRP as keepalived itself and the host report it (read-only).

One SSH command per balancer (`PROBE`) returns: whether haproxy and keepalived are active,
the host's clock, its IPv4 addresses (`ip -o -4 addr show`: who really holds a VIP), and
the VRRP part of keepalived's own data dump. keepalived writes the dump on SIGUSR1
(2.2.7, Debian 12: /tmp/keepalived.data; newer builds may use /run/keepalived/); the probe
removes the old dump, signals keepalived's main process and reads the new file, under a
lock so concurrent readers never read each other's half-written dump. Password lines are
dropped on the host: the guide's `auth_pass` never leaves it.

Nothing here reads a file k3s-ha wrote (the notify script's /run/k3s-ha/vrrp-* files are
not consulted): a reload that keeps an instance's state runs no notify script.

Typed results: `Balancer` per host (reachable, services, instances, addresses), `Member`
per host and pair, `PairVerdict` per pair (healthy / split brain / no holder / member
unreachable). `wait_settled` polls until every pair has its preferred holder.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from fabric import Connection

from ..core.errors import K3sHaError
from ..core.inventory import Host, Inventory, Vip
from ..core.run import Run, poll
from ..core.ssh import sh

DUMPS = ("/tmp/keepalived.data", "/run/keepalived/keepalived.data")
LOCK = "/run/lock/k3s-ha-keepalived-dump"

PROBE = r"""
for u in haproxy keepalived; do echo "@@active $u $(systemctl is-active $u)"; done
echo "@@now $(date +%s)"
echo "@@addr"; ip -o -4 addr show
echo "@@dump"
pid=$(systemctl show -p MainPID --value keepalived 2>/dev/null)
[ "${pid:-0}" -gt 0 ] || exit 0
exec 9>>LOCK; flock -w 10 9 || { echo "@@error lock busy"; exit 0; }
rm -f DUMPS; kill -USR1 "$pid" || exit 0
for i in $(seq 50); do
  for f in DUMPS; do
    if [ -s "$f" ]; then
      sleep 0.1  # written in one go by keepalived; wait for the last lines
      sed -n '/< VRRP Topology >/,/^------< VRRP [^T]/p' "$f" | grep -iv -e password -e auth_
      exit 0
    fi
  done
  sleep 0.1
done
echo "@@error no dump from keepalived (pid $pid) in 5 s"
""".replace("DUMPS", " ".join(DUMPS)).replace("LOCK", LOCK)


class VrrpState(enum.Enum):
    MASTER = "MASTER"
    BACKUP = "BACKUP"
    FAULT = "FAULT"
    INIT = "INIT"
    STOP = "STOP"               # keepalived says the instance is stopping
    STOPPED = "STOPPED"         # keepalived is not running on the host
    NO_INSTANCE = "none"        # keepalived runs without an instance for this VRID
    UNKNOWN = "unknown"         # keepalived runs but gave no readable dump
    UNREACHABLE = "unreachable"

    @classmethod
    def parse(cls, word: str) -> "VrrpState":
        try:
            return cls(word.strip().upper())
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True)
class Instance:
    """One vrrp_instance as keepalived's data dump shows it."""
    name: str
    vrid: int
    interface: str
    state: VrrpState
    last_transition: float   # epoch seconds, 0 when absent


def parse_data_dump(text: str) -> list[Instance]:
    """The VRRP instances of keepalived's data dump (SIGUSR1); incomplete ones left out."""
    out: list[Instance] = []
    cur: dict[str, str] = {}

    def close() -> None:
        if {"name", "vrid", "state"} <= cur.keys():
            out.append(Instance(cur["name"], int(cur["vrid"]), cur.get("interface", ""),
                                VrrpState.parse(cur["state"]),
                                float(cur.get("last", "0").split()[0] or 0)))
        cur.clear()

    keys = {"State": "state", "Virtual Router ID": "vrid", "Interface": "interface",
            "Last transition": "last"}
    for line in text.splitlines():
        if line.startswith("------<"):
            close()
            continue
        m = re.match(r"^ VRRP Instance = (\S+)\s*$", line)
        if m:
            close()
            cur["name"] = m.group(1)
            continue
        m = re.match(r"^   ([A-Za-z ]+?) = (.*)$", line)
        if cur and m and m.group(1) in keys and keys[m.group(1)] not in cur:
            cur[keys[m.group(1)]] = m.group(2).strip()
    close()
    return out


def addresses(ip_addr_output: str) -> frozenset[str]:
    """IPv4 addresses in `ip -o -4 addr show` output."""
    return frozenset(re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/", ip_addr_output))


@dataclass(frozen=True)
class Balancer:
    """What one balancer host shows: services, VIP addresses, keepalived's instances."""
    host: str
    reachable: bool = True
    error: str = ""
    haproxy: str = "-"
    keepalived: str = "-"
    now: int = 0
    addresses: frozenset[str] = frozenset()
    instances: tuple[Instance, ...] = ()
    dump_error: str = ""

    def instance(self, vip: Vip) -> Instance | None:
        for i in self.instances:
            if i.vrid == vip.virtual_router_id and i.interface in ("", vip.interface):
                return i
        return None

    def state(self, vip: Vip) -> VrrpState:
        if not self.reachable:
            return VrrpState.UNREACHABLE
        if self.keepalived != "active":
            return VrrpState.STOPPED
        inst = self.instance(vip)
        if inst:
            return inst.state
        return VrrpState.UNKNOWN if self.dump_error or not self.instances \
            else VrrpState.NO_INSTANCE

    def holds(self, vip: Vip) -> bool:
        return vip.address in self.addresses


def parse_probe(host: str, text: str) -> Balancer:
    """`PROBE`'s output on `host` as a Balancer (pure)."""
    active: dict[str, str] = {}
    now, section, errors = 0, "", []
    chunks: dict[str, list[str]] = {"addr": [], "dump": []}
    for line in text.splitlines():
        if line.startswith("@@active "):
            _, unit, state = (line.split() + ["unknown"])[:3]
            active[unit] = state
        elif line.startswith("@@now "):
            now = int(line.split()[1]) if line.split()[1:] and line.split()[1].isdigit() else 0
        elif line.startswith("@@error "):
            errors.append(line[8:])
        elif line in ("@@addr", "@@dump"):
            section = line[2:]
        elif section:
            chunks[section].append(line)
    dump = "\n".join(chunks["dump"])
    instances = tuple(parse_data_dump(dump))
    if not errors and active.get("keepalived") == "active" and "VRRP Topology" not in dump:
        errors.append("no VRRP data in keepalived's dump")
    return Balancer(host, True, "", active.get("haproxy", "unknown"),
                    active.get("keepalived", "unknown"), now,
                    addresses("\n".join(chunks["addr"])), instances, "; ".join(errors))


def observe(conn: Connection, host: str) -> Balancer:
    """Probe one balancer (raises K3sHaError when it cannot be reached)."""
    return parse_probe(host, sh(conn, PROBE, warn=True, write=False, timeout=30).stdout)


def observe_all(r: Run, hosts: list[Host]) -> dict[str, Balancer]:
    """Every host probed in parallel; an unreachable one is a Balancer(reachable=False)."""
    def one(_: Any, h: Host) -> Balancer:
        try:
            return observe(r.conn(h), h.name)
        except K3sHaError as e:
            return Balancer(h.name, reachable=False, error=str(e).splitlines()[0])

    return r.each(hosts, one, connect_first=False)


# ------------------------------------------------------------------ per pair (pure)
@dataclass(frozen=True)
class Member:
    """One balancer's part in one pair."""
    host: str
    key: str
    reachable: bool
    state: VrrpState
    holds: bool
    since: str = "-"
    haproxy: str = "-"
    keepalived: str = "-"
    error: str = ""


def member(b: Balancer, key: str, vip: Vip) -> Member:
    inst = b.instance(vip) if b.reachable else None
    since = f"{max(0, b.now - int(inst.last_transition))}s" \
        if inst and inst.last_transition and b.now else "-"
    return Member(b.host, key, b.reachable, b.state(vip), b.reachable and b.holds(vip),
                  since, b.haproxy, b.keepalived, b.error or b.dump_error)


def pair_hosts(inv: Inventory, key: str) -> list[Host]:
    return inv.with_role(inv.vips[key].role)


def members(inv: Inventory, views: dict[str, Balancer]) -> dict[str, list[Member]]:
    """{pair key: its members in inventory order}, for the hosts that were observed."""
    return {key: [member(views[h.name], key, vip) for h in pair_hosts(inv, key)
                  if h.name in views]
            for key, vip in inv.vips.items()}


class PairHealth(enum.Enum):
    HEALTHY = "healthy"
    SPLIT_BRAIN = "split brain"
    NO_HOLDER = "no holder"
    MEMBER_UNREACHABLE = "member unreachable"


@dataclass(frozen=True)
class PairVerdict:
    key: str
    address: str
    health: PairHealth
    holders: tuple[str, ...] = ()
    unreachable: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.health is PairHealth.HEALTHY

    @property
    def text(self) -> str:
        lost = ", ".join(self.unreachable)
        if self.health is PairHealth.SPLIT_BRAIN:
            return (f"SPLIT BRAIN: {self.address} is held by {len(self.holders)} balancers at "
                    f"once: {', '.join(self.holders)}")
        if self.health is PairHealth.NO_HOLDER:
            return f"NO HOLDER: no reachable balancer holds {self.address}" + \
                (f" ({lost} unreachable)" if lost else "")
        if self.health is PairHealth.MEMBER_UNREACHABLE:
            return (f"{self.address} held by {self.holders[0]}; {lost} unreachable: if it is "
                    "running but cut off it may hold the VIP too (split brain not excluded)")
        return f"{self.address} held by {self.holders[0]}"


def verdict(key: str, vip: Vip, seen: Iterable[Member]) -> PairVerdict:
    """Exactly one holder and every member answering is healthy; anything else is named."""
    seen = list(seen)
    holders = tuple(s.host for s in seen if s.holds)
    lost = tuple(s.host for s in seen if not s.reachable)
    if len(holders) > 1:
        health = PairHealth.SPLIT_BRAIN
    elif not holders:
        health = PairHealth.NO_HOLDER
    elif lost:
        health = PairHealth.MEMBER_UNREACHABLE
    else:
        health = PairHealth.HEALTHY
    return PairVerdict(key, vip.address, health, holders, lost)


def priorities(inv: Inventory, key: str) -> list[int]:
    """VRRP priority of each member of the pair, in inventory order (default 100, 90, ...)."""
    n = len(pair_hosts(inv, key))
    return list(inv.vips[key].priorities) or [max(1, 100 - 10 * i) for i in range(n)]


def preferred(inv: Inventory, key: str, seen: Iterable[Member]) -> str:
    """The member that should hold the VIP: highest priority among the healthy ones."""
    names = [m.name for m in pair_hosts(inv, key)]
    prios = priorities(inv, key)
    healthy = {s.host for s in seen
               if s.reachable and s.state in (VrrpState.MASTER, VrrpState.BACKUP)}
    ranked = sorted((p, n) for p, n in zip(prios, names) if n in healthy)
    return ranked[-1][1] if ranked else ""


def settled(inv: Inventory, by_key: dict[str, list[Member]]) -> bool:
    """Every observed pair has one holder, the preferred one."""
    return all([s.host for s in seen if s.holds] == [preferred(inv, k, seen)]
               for k, seen in by_key.items() if seen)


def wait_settled(r: Run, hosts: list[Host], timeout: float = 20) -> dict[str, list[Member]]:
    """Poll until each pair among `hosts` has its preferred holder (or the timeout)."""
    _, by_key = poll(lambda: members(r.inv, observe_all(r, hosts)), timeout=timeout,
                     until=lambda m: settled(r.inv, m))
    return by_key


# ------------------------------------------------------------------ for other namespaces
def vip_holder(r: Run, vip: Vip) -> tuple[Host | None, str]:
    """(the member of `vip`'s pair whose NIC carries the VIP, or None, and why not).

    Reads `ip -o -4 addr show` only; the first holder in inventory order when several do
    (use `observe_all` + `verdict` to tell a split brain)."""
    why = []
    for h in r.inv.with_role(vip.role):
        try:
            out = sh(r.conn(h), "ip -o -4 addr show", warn=True, write=False).stdout
        except K3sHaError as e:
            why.append(f"{h.name}: {str(e).splitlines()[0]}")
            continue
        if vip.address in addresses(out):
            return h, ""
    return None, f"no reachable balancer holds {vip.address}" + \
        (f" ({'; '.join(why)})" if why else "")
