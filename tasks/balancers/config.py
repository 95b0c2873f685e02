"""Pure rendering for the balancers: haproxy.cfg and keepalived.conf from the inventory, and
the line a validator rejected. No I/O except reading the templates in files/.
"""
from __future__ import annotations

import re
from typing import Any

from ..core import render
from ..core.errors import InputError
from ..core.inventory import K3S_API_PORT, Host, Inventory, Vip
from ..facts.datastore import WRITER_HEADER
from ..facts.haproxy import ADMIN_SOCKET
from ..facts.vrrp import priorities

NOTIFY_SCRIPT = "/etc/keepalived/k3s-ha-notify.sh"
# written by haproxy.service itself (HAPROXY_DROPIN): 1 once HAProxy stopped, 0 once started
HAPROXY_DOWN_FILE = "/run/k3s-ha-haproxy.down"
HAPROXY_DROPIN = "/etc/systemd/system/haproxy.service.d/k3s-ha-keepalived.conf"
PROXY = {"api": "k3s-api", "db": "k3s-db"}  # HAProxy frontend/backend and VRRP instance names
# The readyz check's files on the API balancers (checkcert.py installs them). HAProxy reads
# them as root at start/reload, before it drops to user haproxy: 0600 root is enough.
CHECK_DIR = "/etc/haproxy/k3s-api-check"
CHECK_CA = f"{CHECK_DIR}/server-ca.crt"   # the k3s server CA: the API's certificate chain
CHECK_PEM = f"{CHECK_DIR}/client.pem"     # client certificate + key (k3s client CA)
API_CHECKS = {
    "httpchk": (["option httpchk GET /ping", "http-check expect status 200"],
                "check check-ssl verify none"),
    "ssl-hello-chk": (["option ssl-hello-chk"], "check"),
    "tcp-check": (["option tcp-check"], "check"),
    # HAProxy 2.6 configuration manual, 5.2 server options: `check-ssl` runs the check over
    # TLS on a plain (mode tcp) server line, with that line's `verify`, `ca-file` and `crt`
    # (the client certificate presented). /readyz goes to kube-apiserver (k3s's own router
    # only answers /ping and /cacerts), so an API server that hangs fails it.
    "readyz": (["option httpchk GET /readyz", "http-check expect status 200"],
               f"check check-ssl verify required ca-file {CHECK_CA} crt {CHECK_PEM}"),
}
READYZ_PENDING = "httpchk"  # what `readyz` renders until the check certificate is installed


def pair_keys(inv: Inventory, host: Host) -> list[str]:
    """The VIP keys ("api", "db") whose pair `host` belongs to, in inventory order."""
    return [k for k, v in inv.vips.items() if host.has(v.role)]


def balancer_keys(inv: Inventory, host: Host) -> list[str]:
    """pair_keys, refusing a host that is in no pair."""
    keys = pair_keys(inv, host)
    if not keys:
        raise InputError(f"{host.name} is not a balancer (roles: {', '.join(host.roles)})")
    return keys


def balancer_hosts(inv: Inventory, role: str = "all") -> list[Host]:
    if role not in ("api", "db", "all"):
        raise InputError(f"--role {role!r}: use api, db or all")
    keys = ("api", "db") if role == "all" else (role,)
    return [h for h in inv.hosts.values() if any(k in keys for k in pair_keys(inv, h))]


def api_check(inv: Inventory, check_cert: bool) -> str:
    """The API check rendered: the inventory's, except `readyz` before its certificate is
    on the balancer (HAProxy refuses a config naming a missing crt): /ping until then."""
    want = inv.balancers["api_health_check"]
    return READYZ_PENDING if want == "readyz" and not check_cert else want


def _api_proxy(inv: Inventory, check_cert: bool = False) -> dict[str, Any]:
    b = inv.balancers
    check = api_check(inv, check_cert)
    lines, opts = API_CHECKS[check]
    servers = []
    for i, h in enumerate(inv.with_role("k3s-server")):
        backup = b["api_backend"] == "primary-backup" and i > 0
        servers.append({"name": h.name, "address": inv.fqdn(h.name), "port": K3S_API_PORT,
                        "options": opts + (" backup" if backup else "")})
    how = ("one primary, the others backup" if b["api_backend"] == "primary-backup"
           else "round-robin across every server")
    return {"name": PROXY["api"], "port": b["api_port"], "balance": "roundrobin",
            "check": lines, "servers": servers, "extra": ["option redispatch"],
            # a refused or reset connection marks the server down at once and the retry goes
            # to the next one ([lab] drill: a stopped k3s server cost 10.5 s of API outage
            # with inter 2s fall 3); checks catch what never answers within ~2 s
            "default_server": "inter 1s fall 2 rise 2 observe layer4 error-limit 1 "
                              "on-error mark-down",
            "comment": f"k3s API: :{b['api_port']} to the k3s servers' :{K3S_API_PORT}, {how}, "
                       f"check {check}" + ("" if check == b["api_health_check"] else
                                           " (readyz configured: no check certificate yet, "
                                           "fab balancers.api-check-cert)")}


DB_PEERS = "k3s-db-peers"
DB_PEERS_PORT = 10000
# One entry (key 1) whose gpt0 holds the writer's server id, synced between the db
# balancers: a response from a server sets it (overwrites: a `stick on` entry is never
# overwritten, [lab] it brought the old writer back), a request uses it while that server
# is UP, else `balance first` picks the first UP (= eligible) server.
# size 2, not 1: a peer update is decoded into a new entry before the existing one is
# looked up, and a full `nopurge` table refuses that entry, so the update is dropped
# (HAProxy 2.6 peers.c peer_treat_updatemsg -> stksess_new; [lab] with size 1 only the
# first value ever reached the other balancer). The spare slot is never used by a key.
# A response sets the entry only while it names no UP server: a late answer on a
# connection routed before a switch ([lab] db.switchover) never takes the writes back.
DB_STICK = ["stick-table type integer size 2 nopurge store gpt0 peers " + DB_PEERS,
            "tcp-request content track-sc0 int(1)"]


def _held(h: Host) -> str:
    """The ACL 'the writer entry names `h` and HAProxy has it UP'."""
    return f"{{ sc0_get_gpt0 eq {h.server_id} }} {{ srv_is_up({PROXY['db']}/{h.name}) }}"


def _db_proxy(inv: Inventory) -> dict[str, Any]:
    """The datastore backend. With the http check (default): a sticky writer. The stick
    table (one entry, synced between the db balancers) holds the server taking writes; it
    changes only when that server fails its check, and then to the first server whose
    replication-aware check passes: no failback. With mysql-check (the guide): primary +
    backup, a returning primary takes the writes back after `rise` checks."""
    d, b = inv.db, inv.balancers
    sticky = d["health_check"] == "http"
    if sticky:  # each check tells the db's health daemon which server the entry holds
        lines, port = ["option httpchk", "http-check send meth GET uri / hdr "
                       f"{WRITER_HEADER} %[int(1),table_gpt0({PROXY['db']})]",
                       "http-check expect status 200"], f" port {d['health_port']}"
    else:
        lines, port = [f"option mysql-check user {d['check_user']} post-41"], ""
    servers = []
    for i, h in enumerate(inv.with_role("db")):
        role = (f"id {h.server_id}" if sticky else
                "on-marked-up shutdown-backup-sessions" if i == 0 else "backup")
        servers.append({"name": h.name, "address": inv.fqdn(h.name), "port": d["port"],
                        "options": f"check{port} {role}{_db_proxy_protocol(inv)}"})
    how = ("the writer held in a stick table shared by the db balancers, no failback"
           if sticky else "one writer at a time (primary + backup)")
    dbs = inv.with_role("db")
    use = ["tcp-response content sc-set-gpt0(0) srv_id unless "
           + " or ".join(_held(h) for h in dbs)] + [
        f"use-server {h.name} if {_held(h)}" for h in dbs]
    return {"name": PROXY["db"], "port": b["db_port"], "balance": "first",
            "check": lines, "servers": servers, "extra": DB_STICK + use if sticky else [],
            "default_server": f"inter {d['check_inter_ms']}ms{_fastinter(d) if sticky else ''} "
                              f"fall {d['fall']} rise {d['rise']} on-marked-down shutdown-sessions",
            "comment": f"datastore: :{b['db_port']} to {how}, check {d['health_check']}"}


def _fastinter(d: dict[str, Any]) -> str:
    """Once a check failed, the next ones every 100 ms instead of `inter`: a dead writer's
    `fall` checks each still wait out the 0.5 s connect timeout (min(timeout connect,
    inter)) but no longer `inter` on top ([lab] fall 3 without it: a power cut cost 3.1 s
    of writes). A flap still needs `fall` failed checks in a row."""
    return f" fastinter {min(100, d['check_inter_ms'])}ms"


def _db_proxy_protocol(inv: Inventory) -> str:
    """[db] proxy_protocol (MariaDB): the client's address goes to the database in a PROXY
    v2 header; the mysql-check login sends one too (the http check goes to the health
    port, which takes none)."""
    if not inv.db["proxy_protocol"]:
        return ""
    return " send-proxy-v2" + (" check-send-proxy" if inv.db["health_check"] == "mysql-check"
                               else "")


def db_peers(inv: Inventory, host: Host) -> dict[str, Any] | None:
    """The `peers` section syncing the writer's stick table between the db balancers."""
    if inv.db["health_check"] != "http" or "db" not in pair_keys(inv, host):
        return None
    members = [{"name": h.name, "address": h.address}
               for h in inv.with_role(inv.vips["db"].role)]
    return {"name": DB_PEERS, "port": DB_PEERS_PORT, "members": members}


def haproxy_config(inv: Inventory, host: Host, check_cert: bool = False) -> str:
    """haproxy.cfg for `host`: one frontend/backend per pair it belongs to. check_cert: the
    readyz check's certificate is on the host (see api_check)."""
    keys = balancer_keys(inv, host)
    proxies = [_api_proxy(inv, check_cert) if k == "api" else _db_proxy(inv) for k in keys]
    return render.render("haproxy.cfg.j2", host=host.name, b=inv.balancers, proxies=proxies,
                         admin_socket=ADMIN_SOCKET, peers=db_peers(inv, host))


def _num(x: float) -> str:
    return f"{x:g}"


def vrrp_instance(inv: Inventory, host: Host, key: str) -> dict[str, Any]:
    vip: Vip = inv.vips[key]
    members = inv.with_role(vip.role)
    prios = priorities(inv, key)
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
    keys = balancer_keys(inv, host)
    b = inv.balancers
    return render.render(
        "keepalived.conf.j2", host=host.name, fast_mode=b["fast_mode"],
        stats_port=b["stats_port"], interval=int(b["check_interval"]),
        timeout=max(2, int(b["check_interval"])), fall=b["check_fall"], rise=b["check_rise"],
        advert_int=_num(b["advert_int"]), garp_master_refresh=b["garp_master_refresh"],
        notify=NOTIFY_SCRIPT, down_file=HAPROXY_DOWN_FILE,
        instances=[vrrp_instance(inv, host, k) for k in keys])


def haproxy_dropin() -> str:
    """The haproxy.service drop-in writing HAPROXY_DOWN_FILE when HAProxy starts and stops."""
    return (render.FILES_DIR / "haproxy-keepalived.conf").read_text()


def notify_script() -> str:
    return (render.FILES_DIR / "keepalived-notify.sh").read_text()


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
