"""The preflight (`cluster.check`): what breaks a deploy, found on every host before
anything changes.

`run_checks(r)` reads each host's facts in parallel (read-only probes, tasks/facts/host.py),
runs the multicast exchange within each balancer pair and looks for anything already
answering at the VIPs, then turns the facts into one Finding (OK / WARN / ERROR, message,
fix) per host x check with the pure verdicts in `verdicts`. `print_report` shows the table
and, below it, every finding that is not OK with its fix.
"""
from __future__ import annotations

import secrets as _random
import socket
from dataclasses import dataclass, field

from fabric import Connection
from tabulate import tabulate

from ..balancers.config import db_peers
from ..core.cli import say
from ..core.inventory import Host, Inventory, Vip
from ..core.run import Run, fan_out
from ..core.errors import ConnectError, InputError, K3sHaError, StepFailed
from ..core.ssh import lab_route_ok, parse_os_release
from ..facts import host as facts
from ..facts import vrrp
from . import verdicts as v
from .verdicts import Finding, Level

CHECKS = ("ssh", "os", "names", "clock", "swap", "ports", "disk", "packages",
          "vip interface", "multicast", "vip free")


@dataclass
class Report:
    """One Finding per (row, check); rows are hosts in the inventory's order, then VIPs."""
    rows: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], Finding] = field(default_factory=dict)
    unreachable: dict[str, BaseException] = field(default_factory=dict)  # host -> why

    def add(self, row: str, check: str, finding: Finding) -> None:
        if row not in self.rows:
            self.rows.append(row)
        self.cells[(row, check)] = finding

    def at(self, level: Level) -> list[tuple[str, str, Finding]]:
        return [(r, c, f) for (r, c), f in self.cells.items() if f.level is level]

    @property
    def errors(self) -> list[tuple[str, str, Finding]]:
        return self.at(Level.ERROR)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class HostFacts:
    host: Host
    error: BaseException | None = None  # unreachable or not root: no other fact
    os: dict[str, str] = field(default_factory=dict)
    names: dict[str, list[str]] = field(default_factory=dict)
    clock: facts.ClockSample | None = None
    swaps: list[str] = field(default_factory=list)
    listeners: list[facts.Listener] = field(default_factory=list)
    free: int | None = None
    sources: list[facts.SourceCheck] = field(default_factory=list)
    links: dict[str, facts.Link] = field(default_factory=dict)
    addrs: dict[str, str] = field(default_factory=dict)


def is_balancer(h: Host) -> bool:
    return h.has("k3s-balancer") or h.has("db-balancer")


def gather(r: Run, h: Host) -> HostFacts:
    """Every fact the verdicts need from one host (read-only)."""
    try:
        return _gather(r, h, r.conn(h))
    except Exception as e:  # ConnectError/StepFailed name the host, the cause and the fix
        return HostFacts(h, error=e)


def _gather(r: Run, h: Host, conn: Connection) -> HostFacts:
    names = list(v.names_needed(r.inv, h))
    code, err, b = facts.basics(conn, names, "/var/lib" if h.has("db") else None)
    if b.uid != "0":
        raise StepFailed(f"{h.name}: cannot run commands as root (sudo -n failed: "
                         f"{(err or f'exit {code}').strip()[:200]}). Fix: log in as root or "
                         "give the SSH user passwordless sudo")
    f = HostFacts(h, os=parse_os_release(b.os_release), clock=facts.clock(conn),
                  names=b.names, swaps=b.swaps, addrs=b.addrs, free=b.free)
    f.listeners = facts.listeners(conn)
    if is_balancer(h) or h.has("db"):
        f.sources = facts.package_sources(conn)
    if is_balancer(h):
        f.links = b.links
    return f


def run_checks(r: Run) -> Report:
    """Every check on every host (in parallel), nothing changed: the Report."""
    inv = r.inv
    hosts = list(inv.hosts.values())
    got = r.each(hosts, lambda _c, h: gather(r, h), connect_first=False)
    all_facts = {h.name: got[h.name] for h in hosts}
    report = Report()
    for h in hosts:
        _host_findings(inv, all_facts[h.name], report)
    reachable = {n: f for n, f in all_facts.items() if f.error is None}
    if not reachable:
        return report
    for name, finding in v.clock_findings({n: f.clock for n, f in reachable.items()
                                           if f.clock}).items():
        report.add(name, "clock", finding)
    vips = list(inv.vips.values())
    done = fan_out(vips, lambda vip: _vip_findings(r, vip, all_facts),
                   parallel=disjoint([{h.name for h in inv.with_role(x.role)} for x in vips]))
    for vip in vips:
        ok, found = done[vip]
        if not ok:
            raise found
        for row, check, finding in found:
            report.add(row, check, finding)
    return report


def disjoint(pairs: list[set[str]]) -> bool:
    """The VIPs' checks may run side by side (each waits on its pair's answers): no
    balancer serves two VIPs, as one host runs one multicast exchange at a time (pure)."""
    return sum(map(len, pairs)) == len(set().union(*pairs))


def _host_findings(inv: Inventory, f: HostFacts, report: Report) -> None:
    h = f.host
    if f.error:
        report.unreachable[h.name] = f.error
        report.add(h.name, "ssh", v.unreachable_finding(str(f.error)))
        return
    report.add(h.name, "ssh", v.ok("reachable as root"))
    report.add(h.name, "os", v.os_finding(f.os))
    report.add(h.name, "names", v.names_finding(h.name, v.names_needed(inv, h), f.names))
    report.add(h.name, "swap", v.swap_finding(h, f.swaps))
    report.add(h.name, "ports", v.ports_finding(h.name, ports_needed(inv, h), f.listeners))
    if f.free is not None:
        report.add(h.name, "disk", v.disk_finding(f.free))
    if f.sources:
        report.add(h.name, "packages", v.sources_finding(f.sources))


def ports_needed(inv: Inventory, h: Host) -> dict[int, str]:
    """The ports the host's roles listen on, plus HAProxy's peers port on a db balancer
    that shares the writer's table (http check)."""
    peers = db_peers(inv, h)
    extra = {peers["port"]: "HAProxy peers (the db writer's table)"} if peers else {}
    return v.ports_needed(inv, h) | extra


def _vip_findings(r: Run, vip: Vip, all_facts: dict[str, HostFacts]
                 ) -> list[tuple[str, str, Finding]]:
    """The VIP's interface on each of its balancers, multicast within the pair, and
    whether anything but our balancers already holds or answers at the address."""
    members = [all_facts[h.name] for h in r.inv.with_role(vip.role)
               if all_facts[h.name].error is None]
    out, with_iface = [], []
    for f in members:
        found = v.interface_finding(vip, f.links)
        out.append((f.host.name, "vip interface", found))
        if found.level is not Level.ERROR:
            with_iface.append(f.host)
    holders = tuple(n for n, f in all_facts.items() if vip.address in f.addrs)
    # the multicast exchange (4 s) and the TCP probes (up to 2 s each) run side by side
    jobs = {"multicast": lambda: _multicast(r, vip, with_iface) if len(with_iface) >= 2 else {},
            "answering": lambda: () if holders else _answering(r, vip, with_iface)}
    done = fan_out(list(jobs), lambda k: jobs[k]())
    failed = [val for ok, val in done.values() if not ok]
    if failed:
        raise failed[0]
    out += [(name, "multicast", finding) for name, finding in done["multicast"][1].items()]
    seen = v.VipSeen(holders, done["answering"][1])
    out.append((f"vip {vip.key} {vip.address}", "vip free",
                v.vip_free_finding(vip, [h.name for h in r.inv.with_role(vip.role)], seen)))
    return out


def _multicast(r: Run, vip: Vip, pair: list[Host]) -> dict[str, Finding]:
    unicast = bool(r.inv.balancers["unicast"])
    tokens = {h.name: _random.token_hex(6) for h in pair}
    if unicast:
        return v.multicast_findings(vip, True, {}, tokens, {})
    # a pair already running proves it: no 4 s exchange needed
    seen = vrrp.members(r.inv, vrrp.observe_all(r, pair)).get(vip.key, [])
    if v.adverts_flow(seen):
        return {h.name: v.ok("keepalived's own adverts flow (one MASTER holds the VIP)")
                for h in pair}

    def one(h: Host) -> set[str]:
        return facts.multicast_exchange(r.conn(h), vip.interface, tokens[h.name])

    results = fan_out(pair, one)
    heard = {h.name: val for h, (ok, val) in results.items() if ok}
    errors = {h.name: str(val) for h, (ok, val) in results.items() if not ok}
    return v.multicast_findings(vip, False, heard, tokens, errors)


def _answering(r: Run, vip: Vip, balancers: list[Host]) -> tuple[str, ...]:
    """Where a TCP connect to the VIP (port 22: sshd answers on most machines; a refusal
    counts too) was answered: from this machine and from one of the VIP's balancers (on
    the VIP's own link, where an ARP answer is what matters)."""
    probes = {}
    if not r.inv.is_lab or lab_route_ok(r.inv, vip.address):  # lab traffic stays in the lab
        probes["this machine"] = lambda: local_tcp_answers(vip.address, 22)
    if balancers:
        probes[balancers[0].name] = lambda: facts.tcp_answers(r.conn(balancers[0]),
                                                              vip.address, 22)
    done = fan_out(list(probes), lambda k: probes[k]())
    return tuple(k for k, (ok, val) in done.items() if ok and val)


def local_tcp_answers(address: str, port: int, timeout: float = 2.0) -> bool:
    """Accepted or refused: a machine holds the address. Timeout/unreachable: nobody."""
    import errno

    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((address, port)) in (0, errno.ECONNREFUSED)


def raise_for(report: Report) -> None:
    """The exit after the report: hosts not reachable as root fail as any task's hosts do
    (exit 3 when none could be reached at all, else 1, each named with its fix); other
    ERRORs are refused input (exit 2); WARN and OK pass."""
    if report.unreachable:
        codes = {getattr(e, "exit_code", 1) for e in report.unreachable.values()}
        lines = [f"{len(report.unreachable)} host(s) failed:"]
        lines += [f"  {e}" if str(e).startswith(h) else f"  {h}: {e}"
                  for h, e in report.unreachable.items()]
        err: K3sHaError = ConnectError("\n".join(lines)) if codes == {3} else \
            StepFailed("\n".join(lines))
        raise err
    if report.errors:
        raise InputError(f"preflight: {len(report.errors)} error(s), each listed above with "
                         "its fix; nothing was changed. Fix them, then run fab cluster.check "
                         "again")


# ---------------------------------------------------------------- output
def report_table(report: Report) -> str:
    """Host x check: ok / WARN / ERROR ('' where a check does not apply)."""
    checks = [c for c in CHECKS if any(k[1] == c for k in report.cells)]
    rows = [[row] + [report.cells[(row, c)].level.value if (row, c) in report.cells else ""
                     for c in checks] for row in report.rows]
    return tabulate(rows, headers=["host"] + checks, tablefmt="simple")


def report_details(report: Report) -> list[str]:
    """One line per WARN/ERROR finding, with its fix."""
    out = []
    for level in (Level.ERROR, Level.WARN):
        for row, check, f in report.at(level):
            out.append(f"  {level.value:<5} {row} [{check}]: {f.message}"
                       + (f"\n        Fix: {f.fix}" if f.fix else ""))
    return out


def print_report(report: Report) -> None:
    say("\nPREFLIGHT\n" + report_table(report))
    details = report_details(report)
    if details:
        say("\n" + "\n".join(details))
    n_err, n_warn = len(report.errors), len(report.at(Level.WARN))
    say(f"\npreflight: {n_err} error(s), {n_warn} warning(s)"
        + (": fix the errors before deploying" if n_err else ": ready to deploy"))
