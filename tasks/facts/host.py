"""Host facts for the preflight: read-only probes and the pure parsers behind them.

Each probe runs one read-only command (`sh(..., write=False)`, so it also runs in dry
run) and hands its output to a pure parser, tested with real outputs: listening sockets
with the systemd unit owning each (`ss -Hltnp` + /proc/PID/cgroup), swap (/proc/swaps),
the clock (`date +%s.%N` between two readings of the operator's clock), links
(`ip -j link`), addresses (`ip -o addr`), free disk (`df -PB1`), name resolution
(`getent ahosts`), package sources (the InRelease files apt would fetch, downloaded by
apt's own `apt-helper` into a temporary folder) and a multicast exchange between a
balancer pair (a UDP datagram to VRRP's group 224.0.0.18, which keepalived ignores).
"""
from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass

from fabric import Connection

from ..core.ssh import sh

# ---------------------------------------------------------------- listening sockets
_USERS = re.compile(r'\("([^"]+)",pid=(\d+)')


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    process: str = ""
    pid: int = 0
    unit: str = ""  # the systemd unit running the process, e.g. haproxy.service


def parse_ss(text: str) -> list[Listener]:
    """`ss -Hltnp` lines -> Listeners (one per socket; the first process named)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or parts[0] not in ("LISTEN", "UNCONN"):
            continue
        local = parts[3]
        addr, _, port = local.rpartition(":")
        if not port.isdigit():
            continue
        m = _USERS.search(line)
        out.append(Listener(addr.strip("[]"), int(port), m.group(1) if m else "",
                            int(m.group(2)) if m else 0))
    return out


def parse_cgroup_unit(text: str) -> str:
    """The systemd unit in a /proc/PID/cgroup (v1 or v2): the last `*.service` or
    `*.scope` path element, '' when none."""
    units = re.findall(r"/([^/\s]+\.(?:service|scope))(?=/|$)", text, re.M)
    return units[-1] if units else ""


def listeners(conn: Connection) -> list[Listener]:
    """TCP listening sockets, each with the systemd unit of its process (one round trip:
    ss, then each listening pid's cgroup)."""
    out = sh(conn, LISTENERS_SCRIPT, write=False).stdout  # ss failing: an error, not none
    ss_text, _, cgroups = out.partition(CGROUPS_MARK + "\n")
    socks = parse_ss(ss_text)
    units = {int(k): parse_cgroup_unit(v) for k, v in _sections(cgroups).items()
             if k.isdigit()}
    return [Listener(s.address, s.port, s.process, s.pid, units.get(s.pid, "")) for s in socks]


CGROUPS_MARK = "@@cgroups"
LISTENERS_SCRIPT = ('s=$(ss -Hltnp) || exit; printf "%s\\n" "$s"; echo ' + CGROUPS_MARK + '; '
                    'for p in $(printf "%s\\n" "$s" | grep -o "pid=[0-9]*" | cut -d= -f2 | '
                    'sort -u); do echo "@$p"; cat "/proc/$p/cgroup" 2>/dev/null; done')


def _sections(text: str) -> dict[str, str]:
    """'@KEY' lines start a section: {KEY: its lines}."""
    out: dict[str, list[str]] = {}
    key = None
    for line in text.splitlines():
        if line.startswith("@"):
            key = line[1:].strip()
            out[key] = []
        elif key is not None:
            out[key].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


# ---------------------------------------------------------------- swap, disk, clock
def parse_swaps(text: str) -> list[str]:
    """/proc/swaps -> the active swap devices/files (header skipped)."""
    return [ln.split()[0] for ln in text.splitlines()[1:] if ln.strip()]


def parse_df_free(text: str) -> int:
    """`df -PB1 PATH` -> bytes available to unprivileged users on PATH's filesystem."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return int(lines[-1].split()[3])


@dataclass(frozen=True)
class ClockSample:
    """The host's clock read between two readings of the operator's clock."""
    remote: float
    local_before: float
    local_after: float

    @property
    def offset(self) -> float:
        """Seconds the host is ahead of the operator (negative: behind)."""
        return self.remote - (self.local_before + self.local_after) / 2

    @property
    def uncertainty(self) -> float:
        """Half the round trip: the offset is exact within this."""
        return (self.local_after - self.local_before) / 2


def clock(conn: Connection) -> ClockSample:
    """The host's wall clock via `date +%s.%N` (found through the login PATH, so a
    PATH-first `date` shim can stand in for a skewed clock in the lab). Asked on a
    connection already open (preflight's basics ran on it): the round trip bounds the
    error, with no handshake in it."""
    before = time.time()
    out = sh(conn, "date +%s.%N", write=False).stdout
    after = time.time()
    return ClockSample(float(out.strip()), before, after)


def swaps(conn: Connection) -> list[str]:
    return parse_swaps(sh(conn, "cat /proc/swaps", write=False).stdout)


def free_bytes(conn: Connection, path: str = "/var/lib") -> int:
    return parse_df_free(sh(conn, f"df -PB1 {shlex.quote(path)}", write=False).stdout)


# ---------------------------------------------------------------- links, addresses
@dataclass(frozen=True)
class Link:
    name: str
    up: bool
    multicast: bool


def parse_links(text: str) -> dict[str, Link]:
    """`ip -j link` -> {name: Link}."""
    out = {}
    for item in json.loads(text or "[]"):
        flags = item.get("flags", [])
        out[item["ifname"]] = Link(item["ifname"], "UP" in flags, "MULTICAST" in flags)
    return out


def parse_addrs(text: str) -> dict[str, str]:
    """`ip -o addr` -> {IPv4/IPv6 address: interface}."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("inet", "inet6"):
            out[parts[3].split("/")[0]] = parts[1].split("@")[0]
    return out


def links(conn: Connection) -> dict[str, Link]:
    return parse_links(sh(conn, "ip -j link", write=False).stdout)


def addrs(conn: Connection) -> dict[str, str]:
    return parse_addrs(sh(conn, "ip -o addr", write=False).stdout)


# ---------------------------------------------------------------- name resolution
def parse_getent(text: str) -> list[str]:
    """`getent ahosts NAME` -> its addresses, in order, once each."""
    return list(dict.fromkeys(ln.split()[0] for ln in text.splitlines() if ln.strip()))


def resolve(conn: Connection, names: list[str]) -> dict[str, list[str]]:
    """{name: addresses} as the host's resolver (nsswitch: /etc/hosts, DNS) sees them;
    [] for a name that does not resolve (getent exits 2)."""
    if not names:
        return {}
    script = "; ".join(f"echo @{shlex.quote(n)}; getent ahosts {shlex.quote(n)}"
                       for n in names)
    found = _sections(sh(conn, script, write=False, warn=True).stdout)
    return {n: parse_getent(found.get(n, "")) for n in names}


# ---------------------------------------------------------------- one round trip
@dataclass(frozen=True)
class Basics:
    """What the preflight asks every host, read in one round trip."""
    uid: str
    os_release: str
    swaps: list[str]
    addrs: dict[str, str]
    links: dict[str, Link]
    names: dict[str, list[str]]
    free: int | None


def basics_script(names: list[str], df_path: str | None) -> str:
    parts = ["echo @id; id -u", "echo @os; cat /etc/os-release", "echo @swaps; cat /proc/swaps",
             "echo @addrs; ip -o addr", "echo @links; ip -j link"]
    parts += [f"echo @df; df -PB1 {shlex.quote(df_path)}"] if df_path else []
    parts += [f"echo {shlex.quote('@name ' + n)}; getent ahosts {shlex.quote(n)}"
              for n in names]
    return "; ".join(parts)


def parse_basics(text: str, names: list[str]) -> Basics:
    found = _sections(text)
    return Basics(uid=found.get("id", "").strip(), os_release=found.get("os", ""),
                  swaps=parse_swaps(found.get("swaps", "")),
                  addrs=parse_addrs(found.get("addrs", "")),
                  links=parse_links(found.get("links", "")),
                  names={n: parse_getent(found.get(f"name {n}", "")) for n in names},
                  free=parse_df_free(found["df"]) if found.get("df") else None)


def basics(conn: Connection, names: list[str], df_path: str | None = None
           ) -> tuple[int, str, Basics]:
    """(exit code, stderr, Basics): id, os-release, swaps, addresses, links, names and the
    free disk at df_path, in one round trip."""
    res = sh(conn, basics_script(names, df_path), write=False, warn=True)
    return res.exited, res.stderr, parse_basics(res.stdout, names)


# ---------------------------------------------------------------- package sources
def parse_print_uris(text: str) -> list[str]:
    """`apt-get update --print-uris` -> the InRelease/Release URIs (one per suite)."""
    uris = re.findall(r"^'([^']+)'", text, re.M)
    return [u for u in uris if u.endswith(("/InRelease", "/Release"))]


@dataclass(frozen=True)
class SourceCheck:
    uri: str
    ok: bool
    error: str = ""


# apt's own retry settings apply; two more tries 0.3 s apart ride out a proxy that
# failed two clients refreshing the same file at once (apt-cacher-ng 3.7.4, README: lab).
# Every suite is fetched at once, in one round trip: `@N RC` then that fetch's output.
_FETCH_FN = ('d=$(mktemp -d); trap \'rm -rf "$d"\' EXIT; '
             'f() { for i in 1 2 3; do /usr/lib/apt/apt-helper download-file "$1" "$d/f$2" '
             '>"$d/o$2" 2>&1 && { echo 0 >"$d/rc$2"; return; }; sleep 0.3; done; '
             'echo 1 >"$d/rc$2"; }; ')


def fetch_script(uris: list[str]) -> str:
    """One shell command fetching every URI in parallel, each result a `@N RC` section."""
    starts = " ".join(f"f {shlex.quote(u)} {i} &" for i, u in enumerate(uris))
    shows = "; ".join(f'echo "@{i} $(cat "$d/rc{i}" 2>/dev/null || echo 1)"; '
                      f'cat "$d/o{i}" 2>/dev/null' for i in range(len(uris)))
    return f"{_FETCH_FN}{starts} wait; {shows}"


def parse_fetches(text: str, uris: list[str]) -> list[SourceCheck]:
    """fetch_script's output -> one SourceCheck per URI (no section: not fetched)."""
    found = {k.split()[0]: (k.split()[-1], v) for k, v in _sections(text).items()}
    out = []
    for i, uri in enumerate(uris):
        rc, output = found.get(str(i), ("1", "no result (timed out?)"))
        out.append(SourceCheck(uri, rc == "0",
                               "" if rc == "0" else fetch_error(output)[-240:]))
    return out


def fetch_error(output: str) -> str:
    """The line of apt-helper's output that says why (E: Failed to fetch ... / Err:)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    why = [ln for ln in lines if "Failed to fetch" in ln or ln.startswith("Err")]
    return (why or lines or ["no output"])[-1]


def package_sources(conn: Connection, timeout: int = 20) -> list[SourceCheck]:
    """Fetch each suite's InRelease the way apt would (its own transport, proxy and
    auth settings, via apt-helper) into a temporary folder: proves each source answers
    without touching /var/lib/apt/lists or taking apt's lock."""
    res = sh(conn, "apt-get -q -o Debug::NoLocking=1 update --print-uris", write=False,
             warn=True, timeout=30)
    uris = parse_print_uris(res.stdout)
    if res.exited != 0 or not uris:
        return [SourceCheck("(apt sources)", False,
                            (res.stderr or res.stdout or "no sources configured").strip()[-200:])]
    r = sh(conn, fetch_script(uris), write=False, warn=True, timeout=timeout)
    return parse_fetches(r.stdout, uris)


# ---------------------------------------------------------------- multicast between a pair
MCAST_GROUP = "224.0.0.18"  # VRRP's group: the same link-local path keepalived's adverts take
MCAST_PORT = 39112

_MCAST_SCRIPT = r"""
import socket, struct, sys, time
group, port, ifname, token, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
idx = socket.if_nametoindex(ifname)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((group, port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4si", socket.inet_aton(group), b"\0" * 4, idx))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, struct.pack("4s4si", b"\0" * 4, b"\0" * 4, idx))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
s.settimeout(0.2)
seen, end = set(), time.time() + secs
while time.time() < end:
    s.sendto(("k3s-ha-probe " + token).encode(), (group, port))
    try:
        data, src = s.recvfrom(200)
    except socket.timeout:
        continue
    words = data.decode(errors="replace").split()
    if len(words) == 2 and words[0] == "k3s-ha-probe" and words[1] != token and words[1] not in seen:
        seen.add(words[1])
        print("got", words[1], src[0], flush=True)
"""


def parse_mcast(text: str) -> set[str]:
    """The probe's output -> the peers' tokens it received."""
    return {ln.split()[1] for ln in text.splitlines() if ln.startswith("got ")}


def multicast_exchange(conn: Connection, interface: str, token: str,
                       seconds: float = 4.0) -> set[str]:
    """Run on each member of a pair at the same time: every member sends its token to
    224.0.0.18 from `interface` and listens for the others'; returns the tokens heard."""
    args = " ".join(shlex.quote(a) for a in
                    (MCAST_GROUP, str(MCAST_PORT), interface, token, str(seconds)))
    res = sh(conn, f"python3 -c {shlex.quote(_MCAST_SCRIPT)} {args}", write=False, warn=True,
             timeout=int(seconds) + 10)
    if res.exited != 0:
        raise RuntimeError((res.stderr or res.stdout).strip().splitlines()[-1:] or
                           [f"exit {res.exited}"])
    return parse_mcast(res.stdout)


# ---------------------------------------------------------------- something at an address
def tcp_answers(conn: Connection, address: str, port: int = 22) -> bool:
    """True when something at `address` answers a TCP connect from the host (accepted, or
    refused: either way a machine holds the address); False on timeout/unreachable."""
    code = ("import socket,sys,errno\n"
            "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
            "s.settimeout(2)\n"
            "e=s.connect_ex((sys.argv[1],int(sys.argv[2])))\n"
            "sys.exit(0 if e in (0,errno.ECONNREFUSED) else 1)\n")
    res = sh(conn, f"python3 -c {shlex.quote(code)} {shlex.quote(address)} {port}",
             write=False, warn=True, timeout=10)
    return res.exited == 0
