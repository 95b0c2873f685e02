"""Namespace `balancers`: the HAProxy + keepalived pairs in front of the k3s API and the datastore.

Configs are rendered from the inventory by pure functions (haproxy_config, keepalived_config),
validated on the host before they replace the live files (`haproxy -c -f`, `keepalived -t -f`),
and applied by a reload, never a restart. keepalived's notify script records each VRRP state
in /run/k3s-ha/vrrp-<instance>; `status` reads it with the VIP on the NIC and HAProxy's
runtime API (admin socket, `show stat`).
"""
from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

from fabric import Connection
from invoke import Context

from ..core import render
from ..core.errors import InputError, K3sHaError, StepFailed
from ..core.inventory import K3S_API_PORT, Host, Inventory, Vip
from ..core.run import FAILED, OK, Run, run_session
from ..core.cli import k3s_task, say, table
from ..core.ops import ensure_dir, ensure_file, ensure_packages, ensure_service
from ..core.ssh import sh
from ..facts.haproxy import ADMIN_SOCKET, ServerStat, show_stat

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
NOTIFY_SCRIPT = "/etc/keepalived/k3s-ha-notify.sh"
STATE_DIR = "/run/k3s-ha"
PACKAGES = ["haproxy", "keepalived", "curl", "socat"]
PROXY = {"api": "k3s-api", "db": "k3s-db"}  # HAProxy frontend/backend and VRRP instance names
H_DRY = "show what would change (unified diffs), change nothing"
H_YES = "never prompt (this namespace asks nothing; accepted for scripts)"
H_ROLE = "which pair: api (k3s API balancers), db (datastore balancers) or all"
API_CHECKS = {
    "httpchk": (["option httpchk GET /ping", "http-check expect status 200"],
                "check check-ssl verify none"),
    "ssl-hello-chk": (["option ssl-hello-chk"], "check"),
    "tcp-check": (["option tcp-check"], "check"),
}


# ------------------------------------------------------------------ rendering (pure)
def pair_keys(inv: Inventory, host: Host) -> list[str]:
    """The VIP keys ("api", "db") whose pair `host` belongs to, in inventory order."""
    return [k for k, v in inv.vips.items() if host.has(v.role)]


def balancer_hosts(inv: Inventory, role: str = "all") -> list[Host]:
    if role not in ("api", "db", "all"):
        raise InputError(f"--role {role!r}: use api, db or all")
    keys = ("api", "db") if role == "all" else (role,)
    return [h for h in inv.hosts.values() if any(k in keys for k in pair_keys(inv, h))]


def _api_proxy(inv: Inventory) -> dict[str, Any]:
    b = inv.balancers
    lines, opts = API_CHECKS[b["api_health_check"]]
    servers = []
    for i, h in enumerate(inv.with_role("k3s-server")):
        backup = b["api_backend"] == "primary-backup" and i > 0
        servers.append({"name": h.name, "address": inv.fqdn(h.name), "port": K3S_API_PORT,
                        "options": opts + (" backup" if backup else "")})
    how = ("one primary, the others backup" if b["api_backend"] == "primary-backup"
           else "round-robin across every server")
    return {"name": PROXY["api"], "port": b["api_port"], "balance": "roundrobin",
            "check": lines, "servers": servers,
            "comment": f"k3s API: :{b['api_port']} to the k3s servers' :{K3S_API_PORT}, {how}, "
                       f"check {b['api_health_check']}"}


def _db_proxy(inv: Inventory) -> dict[str, Any]:
    d, b = inv.db, inv.balancers
    if d["health_check"] == "http":
        lines, port = ["option httpchk GET /", "http-check expect status 200"], \
            f" port {d['health_port']}"
    else:
        lines, port = [f"option mysql-check user {d['check_user']} post-41"], ""
    servers = []
    for i, h in enumerate(inv.with_role("db")):
        role = ("on-marked-up shutdown-backup-sessions" if i == 0 else "backup")
        servers.append({"name": h.name, "address": inv.fqdn(h.name), "port": d["port"],
                        "options": f"check{port} {role} on-marked-down shutdown-sessions "
                                   f"rise {d['rise']}"})
    return {"name": PROXY["db"], "port": b["db_port"], "balance": "first",
            "check": lines, "servers": servers,
            "comment": f"datastore: :{b['db_port']} to one writer at a time (primary + backup), "
                       f"check {d['health_check']}"}


def haproxy_config(inv: Inventory, host: Host) -> str:
    """haproxy.cfg for `host`: one frontend/backend per pair it belongs to."""
    keys = pair_keys(inv, host)
    if not keys:
        raise InputError(f"{host.name} is not a balancer (roles: {', '.join(host.roles)})")
    proxies = [_api_proxy(inv) if k == "api" else _db_proxy(inv) for k in keys]
    return render.render("haproxy.cfg.j2", host=host.name, b=inv.balancers, proxies=proxies,
                         admin_socket=ADMIN_SOCKET)


def _num(x: float) -> str:
    return f"{x:g}"


def vrrp_instance(inv: Inventory, host: Host, key: str) -> dict[str, Any]:
    vip: Vip = inv.vips[key]
    members = inv.with_role(vip.role)
    prios = list(vip.priorities) or [max(1, 100 - 10 * i) for i in range(len(members))]
    idx = [m.name for m in members].index(host.name)
    prio = prios[idx]
    fast = inv.balancers["fast_mode"]
    state = "MASTER" if prio == max(prios) and not fast else "BACKUP"
    peers = [m.address for m in members if m.name != host.name] \
        if inv.balancers["unicast"] else []
    return {"name": PROXY[key], "state": state, "interface": vip.interface,
            "vrid": vip.virtual_router_id, "priority": prio, "src": host.address,
            "peers": peers, "vip": vip.cidr,
            "comment": f"{'k3s API' if key == 'api' else 'datastore'} VIP "
                       f"{vip.address}{' (' + inv.fqdn(vip.name) + ')' if vip.name else ''}"}


def keepalived_config(inv: Inventory, host: Host) -> str:
    """keepalived.conf for `host`: one vrrp_instance per pair it belongs to."""
    keys = pair_keys(inv, host)
    if not keys:
        raise InputError(f"{host.name} is not a balancer (roles: {', '.join(host.roles)})")
    b = inv.balancers
    return render.render(
        "keepalived.conf.j2", host=host.name, fast_mode=b["fast_mode"],
        stats_port=b["stats_port"], interval=int(b["check_interval"]),
        timeout=max(2, int(b["check_interval"])), fall=b["check_fall"], rise=b["check_rise"],
        advert_int=_num(b["advert_int"]), garp_master_refresh=b["garp_master_refresh"],
        notify=NOTIFY_SCRIPT, instances=[vrrp_instance(inv, host, k) for k in keys])


def notify_script() -> str:
    return (render.FILES_DIR / "keepalived-notify.sh").read_text()


# ------------------------------------------------------------------ parsing (pure)
_LINE_RES = (re.compile(r"\[[^\]\s]+:(\d+)\]"),        # haproxy: parsing [FILE:23] : ...
             re.compile(r"\([^)\s]+: Line (\d+)\)"))   # keepalived: (FILE: Line 23) ...


def failed_line(output: str, content: str) -> str:
    """'line N: <text>' for the first line a validator complained about, or ''."""
    lines = content.splitlines()
    for rx in _LINE_RES:
        for m in rx.finditer(output):
            n = int(m.group(1))
            if 1 <= n <= len(lines):
                return f"line {n}: {lines[n - 1].strip()}"
    return ""


def parse_vrrp_file(text: str, now: int) -> tuple[str, str]:
    """(state, how long ago) from /run/k3s-ha/vrrp-NAME ("MASTER 1700000000")."""
    parts = text.split()
    if not parts:
        return "unknown", "-"
    ago = f"{max(0, now - int(parts[1]))}s" if len(parts) > 1 and parts[1].isdigit() else "-"
    return parts[0], ago


def holds_address(ip_addr_output: str, address: str) -> bool:
    """True when `ip -o addr show` lists `address` on some interface."""
    return any(f"inet {address}/" in ln for ln in ip_addr_output.splitlines())


@dataclass
class Seen:
    """One balancer's view of one pair."""
    host: str
    key: str
    reachable: bool
    vrrp: str = "-"
    since: str = "-"
    holds: bool = False
    haproxy: str = "-"
    keepalived: str = "-"
    error: str = ""


def verdict(vip: Vip, seen: list[Seen]) -> tuple[bool, str]:
    """(healthy, sentence) for one pair: exactly one holder and every member answering."""
    holders = [s.host for s in seen if s.holds]
    lost = [s.host for s in seen if not s.reachable]
    if len(holders) > 1:
        return False, (f"SPLIT BRAIN: {vip.address} is held by {len(holders)} balancers at "
                       f"once: {', '.join(holders)}")
    if not holders:
        extra = f" ({', '.join(lost)} unreachable)" if lost else ""
        return False, f"NO HOLDER: no reachable balancer holds {vip.address}{extra}"
    if lost:
        return False, (f"{vip.address} held by {holders[0]}; {', '.join(lost)} unreachable: if "
                       "it is running but cut off it may hold the VIP too (split brain not "
                       "excluded)")
    return True, f"{vip.address} held by {holders[0]}"


# ------------------------------------------------------------------ steps on a host
def install_config(conn: Connection, path: str, content: str, validate: str,
                   mode: str = "0644") -> bool:
    """ensure_file with a validator; on rejection the message names the offending line."""
    try:
        return ensure_file(conn, path, content, mode=mode, validate=validate)
    except StepFailed as e:
        where = failed_line(str(e), content)
        if where:
            raise StepFailed(f"{e}\n    in the rendered {path}, {where}") from None
        raise


def _install(r: Run, conn: Connection, h: Host) -> None:
    r.step(h, "packages", lambda: ensure_packages(conn, PACKAGES))


def _configure(r: Run, conn: Connection, h: Host) -> None:
    inv = r.inv
    hcfg, kcfg = haproxy_config(inv, h), keepalived_config(inv, h)
    r.step(h, "/etc/keepalived", lambda: ensure_dir(conn, "/etc/keepalived"))
    nch = r.step(h, "notify script", lambda: ensure_file(conn, NOTIFY_SCRIPT, notify_script(),
                                                         mode="0755"))
    hch = r.step(h, "haproxy.cfg", lambda: install_config(conn, HAPROXY_CFG, hcfg,
                                                          "haproxy -c -f %s"))
    kch = r.step(h, "keepalived.conf", lambda: install_config(conn, KEEPALIVED_CONF, kcfg,
                                                              "keepalived -t -f %s"))
    r.step(h, "haproxy running", lambda: ensure_service(conn, "haproxy", changed_inputs=hch,
                                                        reload=True))
    r.step(h, "keepalived running", lambda: ensure_service(
        conn, "keepalived", changed_inputs=kch or nch, reload=True))


def observe(conn: Connection, inv: Inventory, h: Host) -> tuple[list[Seen], list[ServerStat]]:
    """Read-only: VRRP state, VIP, services and HAProxy's servers on one balancer."""
    def active(unit: str) -> str:
        return sh(conn, f"systemctl is-active {unit}", warn=True, write=False).stdout.strip() \
            or "unknown"

    hap, kad = active("haproxy"), active("keepalived")
    addrs = sh(conn, "ip -o addr show", warn=True, write=False).stdout
    now = int(sh(conn, "date +%s", write=False).stdout.strip() or 0)
    seen = []
    for key in pair_keys(inv, h):
        state_file = shlex.quote(f"{STATE_DIR}/vrrp-{PROXY[key]}")
        raw = sh(conn, f"cat {state_file}", warn=True, write=False).stdout
        state, since = parse_vrrp_file(raw, now)
        if kad != "active":
            state, since = "STOPPED", "-"
        seen.append(Seen(h.name, key, True, state, since, holds_address(addrs, inv.vips[key].address),
                         hap, kad))
    stats: list[ServerStat] = []
    if hap == "active":
        stats = show_stat(conn) or []
    return seen, stats


def pair_states(r: Run, hosts: list[Host]) -> tuple[dict[str, list[Seen]], dict[str, list[ServerStat]]]:
    """Observe every balancer; an unreachable one is reported, never fatal."""
    inv = r.inv
    by_key: dict[str, list[Seen]] = {k: [] for k in inv.vips}
    servers: dict[str, list[ServerStat]] = {}

    def one(conn: Any, h: Host) -> tuple[list[Seen], list[ServerStat]]:
        try:
            return observe(r.conn(h), inv, h)
        except K3sHaError as e:
            return [Seen(h.name, k, False, "unreachable", error=str(e).splitlines()[0])
                    for k in pair_keys(inv, h)], []

    for name, (seen, stats) in r.each(hosts, one, connect_first=False).items():
        servers[name] = stats
        for s in seen:
            by_key[s.key].append(s)
    return by_key, servers


def preferred(inv: Inventory, key: str, seen: list[Seen]) -> str:
    """The member that should hold the VIP: highest priority among the healthy ones."""
    vip = inv.vips[key]
    names = [m.name for m in inv.with_role(vip.role)]
    prios = list(vip.priorities) or [100 - 10 * i for i in range(len(names))]
    healthy = {s.host for s in seen if s.reachable and s.vrrp in ("MASTER", "BACKUP")}
    ranked = sorted((p, n) for p, n in zip(prios, names) if n in healthy)
    return ranked[-1][1] if ranked else ""


def wait_settled(r: Run, hosts: list[Host], timeout: float = 20) -> dict[str, list[Seen]]:
    """Poll until each pair among `hosts` has one holder, the preferred one (or the timeout)."""
    end = time.monotonic() + timeout
    while True:
        by_key, _ = pair_states(r, hosts)
        bad = [k for k, seen in by_key.items() if seen and
               [s.host for s in seen if s.holds] != [preferred(r.inv, k, seen)]]
        if not bad or time.monotonic() > end:
            return by_key
        time.sleep(0.5)


def _check_settled(r: Run, hosts: list[Host]) -> None:
    by_key = wait_settled(r, hosts)
    problems = []
    for key, seen in by_key.items():
        if not seen:
            continue
        ok, text = verdict(r.inv.vips[key], seen)
        for s in seen:
            r.record(s.host, f"{key} VIP", OK if ok else FAILED,
                     "holder" if s.holds else "")
        say(f"  {key} pair: {text}")
        if not ok:
            problems.append(text)
    if problems:
        raise StepFailed("the balancers did not settle: " + "; ".join(problems))


# ------------------------------------------------------------------ tasks
@k3s_task(help={"dry": H_DRY, "yes": H_YES, "role": H_ROLE})
def install(c: Context, dry: bool = False, yes: bool = False, role: str = "all") -> None:
    """Install HAProxy, keepalived, curl and socat on the balancers."""
    with run_session(c, "balancers.install", dry=dry, yes=yes) as r:
        r.each(balancer_hosts(r.inv, role), lambda conn, h: _install(r, conn, h))


@k3s_task(help={"dry": H_DRY, "yes": H_YES, "role": H_ROLE})
def configure(c: Context, dry: bool = False, yes: bool = False, role: str = "all") -> None:
    """Render, validate and apply haproxy.cfg + keepalived.conf (reload only on change)."""
    with run_session(c, "balancers.configure", dry=dry, yes=yes) as r:
        hosts = balancer_hosts(r.inv, role)
        r.each(hosts, lambda conn, h: _configure(r, conn, h))
        if not r.dry:
            _check_settled(r, hosts)


@k3s_task(help={"dry": H_DRY, "yes": H_YES, "role": H_ROLE})
def deploy(c: Context, dry: bool = False, yes: bool = False, role: str = "all") -> None:
    """install + configure, then wait until each pair has exactly one VIP holder."""
    with run_session(c, "balancers.deploy", dry=dry, yes=yes) as r:
        hosts = balancer_hosts(r.inv, role)

        def one(conn: Connection, h: Host) -> None:
            _install(r, conn, h)
            _configure(r, conn, h)

        r.each(hosts, one)
        if not r.dry:
            _check_settled(r, hosts)


@k3s_task(help={"dry": "accepted for symmetry: status only reads", "yes": H_YES,
                "role": H_ROLE,
                "strict": "exit 1 when a pair has two holders (split brain), none, or an "
                          "unreachable member"})
def status(c: Context, dry: bool = False, yes: bool = False, role: str = "all",
           strict: bool = False) -> None:
    """Per balancer: VRRP state, VIP held, HAProxy/keepalived up, each backend server's check."""
    with run_session(c, "balancers.status", yes=yes) as r:
        hosts = balancer_hosts(r.inv, role)
        by_key, servers = pair_states(r, hosts)
        rows = []
        for key, seen in by_key.items():
            for s in seen:
                rows.append({"balancer": s.host, "pair": key, "VRRP": s.vrrp, "since": s.since,
                             "VIP": "HOLDS" if s.holds else "-", "haproxy": s.haproxy,
                             "keepalived": s.keepalived})
        say("\n" + table(rows, ["balancer", "pair", "VRRP", "since", "VIP", "haproxy",
                                "keepalived"]))
        for h in hosts:
            stats = servers.get(h.name) or []
            lost = [s for ss in by_key.values() for s in ss if s.host == h.name and s.error]
            say(f"\n{h.name}:")
            if lost:
                say(f"  unreachable: {lost[0].error}")
            elif not stats:
                say("  no HAProxy runtime data (HAProxy down or admin socket missing)")
            else:
                say(table([{"backend": s.proxy, "server": s.server,
                            "role": "backup" if s.backup else "primary", "state": s.status,
                            "last check": s.check, "since change": s.since} for s in stats],
                          ["backend", "server", "role", "state", "last check", "since change"]))
        say("")
        bad = []
        for key, seen in by_key.items():
            if not seen:
                continue
            ok, text = verdict(r.inv.vips[key], seen)
            say(f"{key} pair: {text}")
            if not ok:
                bad.append(f"{key}: {text}")
        if bad and strict:
            raise StepFailed("balancer pair problem(s): " + " | ".join(bad))

