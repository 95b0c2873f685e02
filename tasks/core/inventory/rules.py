"""The validation rules: each rule is a pure function returning its problems (key path,
what is wrong, "Fix: ..."). Host and VIP rules see one table's checked values; the
inventory rules (`RULES`) see the whole Inventory after defaults were assigned."""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from .model import K3S_API_PORT, ROLES, VIP_ROLE, Inventory, role_ports
from .schema import FAILOVER_KINDS, suggest

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DURATION_RE = re.compile(r"^\d+(us|ms|s|m|h|d)?$")
IFNAME_RE = re.compile(r"^[^\s/:]{1,15}$")  # Linux: at most 15 bytes, no '/', ':' or space
SAFE_DB_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,4}$")
SERVER_ID_MAX = 4294967295


# ---------------------------------------------------------------- one host table
def host_name(name: str, seen_lower: dict[str, str]) -> list[str]:
    kp = f"hosts.{name}"
    out = []
    if not NAME_RE.match(name):
        out.append(f"{kp}: '{name}' is not a valid host name. Fix: use lower-case "
                   "letters, digits and '-', starting and ending with a letter or digit")
    if name.lower() in seen_lower:
        out.append(f"{kp}: duplicate host name (same as '{seen_lower[name.lower()]}'). "
                   "Fix: give every host its own name")
    return out


def host_address(kp: str, addr: str | None) -> list[str]:
    if not addr:
        return [f"{kp}.address: missing. Fix: add address = \"192.0.2.10\" "
                "(the host's IP address)"]
    if not _is_ip(addr):
        return [f"{kp}.address: '{addr}' is not an IP address. "
                "Fix: write the host's IPv4/IPv6 address, e.g. \"192.0.2.10\""]
    return []


def host_roles(kp: str, roles: list[Any] | None) -> list[str]:
    if roles is None:
        return [f"{kp}.roles: missing. Fix: add roles = [\"db\"] (any of {', '.join(ROLES)})"]
    out = []
    if not roles:
        out.append(f"{kp}.roles: empty. Fix: give at least one of {', '.join(ROLES)}")
    for i, r in enumerate(roles):
        if r not in ROLES:
            out.append(f"{kp}.roles[{i}]: unknown role '{r}'{suggest(str(r), ROLES)}. "
                       f"Fix: use one of {', '.join(ROLES)}")
    if len(set(roles)) != len(roles):
        out.append(f"{kp}.roles: a role is listed twice. Fix: list each role once")
    return out


def host_server_id(kp: str, sid: int | None) -> list[str]:
    if sid is None or 1 <= sid <= SERVER_ID_MAX:
        return []
    if sid == 0:
        return [f"{kp}.server_id: 0 is not a server id (MySQL/MariaDB replication refuses a "
                f"server with id 0). Fix: use 1-{SERVER_ID_MAX}, or remove server_id to "
                "number the db hosts by their order in the inventory"]
    return [f"{kp}.server_id: {sid} is out of range. Fix: use 1-{SERVER_ID_MAX}"]


# ---------------------------------------------------------------- one VIP table
def vip_address(kp: str, addr: str | None) -> list[str]:
    if not addr:
        return [f"{kp}.address: missing. Fix: add a free address in the "
                "balancers' subnet, e.g. address = \"192.0.2.100\""]
    if not _is_ip(addr):
        return [f"{kp}.address: '{addr}' is not an IP address. "
                "Fix: write a free IPv4 address in the balancers' subnet"]
    return []


def vip_router_id(kp: str, vrid: int | None) -> list[str]:
    if vrid is None:
        return [f"{kp}.virtual_router_id: missing. Fix: add a number 1-255, "
                "different for each VIP on the segment"]
    if not 1 <= vrid <= 255:
        return [f"{kp}.virtual_router_id: {vrid} is out of range. Fix: use 1-255"]
    return []


def vip_prefix(kp: str, prefix: int) -> list[str]:
    if not 0 < prefix <= 32:
        return [f"{kp}.prefix: {prefix} is out of range. Fix: use 1-32"]
    return []


def vip_interface(kp: str, name: str) -> list[str]:
    if not name:
        return [f"{kp}.interface: empty. Fix: name the balancers' network interface that "
                "carries the VIP, e.g. interface = \"eth0\" (see `ip -br link` on a balancer)"]
    if not IFNAME_RE.match(name):
        return [f"{kp}.interface: '{name}' is not a network interface name. Fix: use the "
                "name `ip -br link` shows on the balancers, e.g. \"eth0\" (at most 15 "
                "characters, no spaces, '/' or ':')"]
    return []


def vip_priority_values(kp: str, prios: list[Any]) -> list[str]:
    for i, p in enumerate(prios):
        if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= 254:
            return [f"{kp}.priorities[{i}]: {p!r} is not a priority. "
                    "Fix: use integers 1-254, highest for the preferred holder"]
    return []


def vip_priorities_differ(kp: str, prios: list[Any]) -> list[str]:
    if len(set(prios)) != len(prios):
        return [f"{kp}.priorities: two balancers share a priority. "
                "Fix: give each a different priority, e.g. [100, 90]"]
    return []


# ---------------------------------------------------------------- the whole inventory
def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def addresses(inv: Inventory) -> dict[str, str]:
    """address -> the first host that has it."""
    by_addr: dict[str, str] = {}
    for h in inv.hosts.values():
        by_addr.setdefault(h.address, h.name)
    return by_addr


def unique_addresses(inv: Inventory) -> list[str]:
    by_addr, out = addresses(inv), []
    for h in inv.hosts.values():
        if h.address and by_addr[h.address] != h.name:
            out.append(f"hosts.{h.name}.address: {h.address} is also the address of "
                       f"'{by_addr[h.address]}'. Fix: give every host its own address")
    return out


def required_roles(inv: Inventory) -> list[str]:
    if not inv.hosts:
        return []
    dbs, out = inv.with_role("db"), []
    if not dbs:
        out.append("hosts: no host has role 'db'. Fix: add roles = [\"db\"] to two hosts")
    elif len(dbs) != 2:
        out.append(f"hosts: {len(dbs)} hosts have role 'db' ({', '.join(h.name for h in dbs)}); "
                   "master-master replication needs exactly two. Fix: give role 'db' "
                   "to exactly two hosts")
    if not inv.with_role("k3s-server"):
        out.append("hosts: no host has role 'k3s-server'. Fix: add roles = [\"k3s-server\"] "
                   "to at least one host (two for HA)")
    return out


def server_ids(inv: Inventory) -> list[str]:
    ids: dict[int, str] = {}
    out = []
    for h in inv.with_role("db"):
        if h.server_id in ids:
            out.append(f"hosts.{h.name}.server_id: {h.server_id} is also the server_id of "
                       f"'{ids[h.server_id]}'. Fix: give each db host a unique server_id")
        ids.setdefault(h.server_id, h.name)
    for h in inv.hosts.values():
        if h.server_id and "db" not in h.roles:
            out.append(f"hosts.{h.name}.server_id: only db hosts have a server_id. "
                       "Fix: remove it or add role 'db'")
    return out


def kine_auto_increment(inv: Inventory) -> list[str]:
    return [f"db.{k}: must be 1, got {inv.db[k]}. k3s's datastore layer (kine) uses the "
            "auto-increment id as its revision and needs ids strictly +1 from a single "
            "writer; master-master here means one writer at a time, not 2/1 offsets. "
            f"Fix: remove db.{k} or set it to 1"
            for k in ("auto_increment_increment", "auto_increment_offset") if inv.db[k] != 1]


def vip_tables(inv: Inventory) -> list[str]:
    return [f"vips.{key}: missing, but hosts have role '{role}'. "
            f"Fix: add a [vips.{key}] table with address and virtual_router_id"
            for key, role in VIP_ROLE.items() if inv.with_role(role) and key not in inv.vips]


def vip_members(inv: Inventory) -> list[str]:
    """Each VIP has two or more holders, one priority per holder, all in the VIP's subnet."""
    out = []
    for key, v in inv.vips.items():
        members = inv.with_role(v.role)
        if len(members) < 2:
            out.append(f"vips.{key}: needs at least two hosts with role '{v.role}' for "
                       f"failover, found {len(members)}. Fix: give role '{v.role}' to two hosts")
        if v.priorities and len(v.priorities) != len(members):
            out.append(f"vips.{key}.priorities: {len(v.priorities)} priorities for "
                       f"{len(members)} '{v.role}' hosts. Fix: list one priority per host, "
                       "in the order the hosts appear")
        net = ipaddress.ip_network(f"{v.address}/{v.prefix}", strict=False)
        for h in members:
            if _is_ip(h.address) and ipaddress.ip_address(h.address) not in net:
                out.append(f"vips.{key}.address: {v.cidr} is outside the subnet of "
                           f"balancer '{h.name}' ({h.address}). Fix: pick a VIP in the "
                           "balancers' own subnet (VRRP works on one L2 segment)")
    return out


def vip_uniqueness(inv: Inventory) -> list[str]:
    """Own router id per VIP, own address per VIP, no VIP on a host's address."""
    by_addr = addresses(inv)
    vrids: dict[int, str] = {}
    out = []
    for key, v in inv.vips.items():
        if v.virtual_router_id in vrids:
            out.append(f"vips.{key}.virtual_router_id: {v.virtual_router_id} is also used "
                       f"by vips.{vrids[v.virtual_router_id]}. Fix: use a different id per VIP")
        vrids.setdefault(v.virtual_router_id, key)
        if v.address in by_addr:
            out.append(f"vips.{key}.address: {v.address} is the address of host "
                       f"'{by_addr[v.address]}'. Fix: use a free address")
    vaddrs = [v.address for v in inv.vips.values()]
    if len(set(vaddrs)) != len(vaddrs):
        out.append("vips: the API and datastore VIPs share an address. Fix: use two addresses")
    return out


def port_clashes(inv: Inventory) -> list[str]:
    """Hosts with several roles: no two services on one port."""
    out = []
    for h in inv.hosts.values():
        if "k3s-server" in h.roles and "k3s-agent" in h.roles:
            out.append(f"hosts.{h.name}.roles: a host is either a k3s-server or a "
                       "k3s-agent (servers run workloads' kubelet already). "
                       "Fix: keep one of the two roles")
            continue
        taken: dict[int, str] = {}
        for r in h.roles:
            for port, what in role_ports(inv, r).items():
                if port in taken and taken[port] != what and not what.startswith("HAProxy stats"):
                    fix = ("balancers.api_port = 7443 (collapsed topology)"
                           if port == K3S_API_PORT and "k3s-balancer" in h.roles
                           else "a different port in [balancers] or [db]")
                    out.append(f"hosts.{h.name}.roles: port {port} is wanted by both "
                               f"{taken[port]} and {what}. Fix: set {fix}")
                taken.setdefault(port, what)
    return out


def balancer_timing(inv: Inventory) -> list[str]:
    """HAProxy durations, VRRP advertisement interval, health check counts and interval."""
    b, out = inv.balancers, []
    for k in ("timeout_connect", "timeout_client", "timeout_server", "timeout_check"):
        if not DURATION_RE.match(b[k]):
            out.append(f"balancers.{k}: '{b[k]}' is not an HAProxy duration. "
                       "Fix: write e.g. \"5s\", \"30m\"")
    if b["fast_mode"]:
        if not 0.01 <= b["advert_int"] <= 40.95:
            out.append("balancers.advert_int: fast mode (VRRPv3) needs 0.01-40.95 s. "
                       "Fix: e.g. advert_int = 0.1")
    elif b["advert_int"] != int(b["advert_int"]) or not 1 <= b["advert_int"] <= 255:
        out.append(f"balancers.advert_int: {b['advert_int']} needs fast_mode = true "
                   "(VRRPv2 rounds to whole seconds). Fix: set fast_mode = true or use 1-255")
    for k in ("check_fall", "check_rise", "garp_master_refresh"):
        if b[k] < (0 if k == "garp_master_refresh" else 1):
            out.append(f"balancers.{k}: {b[k]} is too small. Fix: use a positive number")
    if b["check_interval"] < 1 or b["check_interval"] != int(b["check_interval"]):
        out.append(f"balancers.check_interval: {b['check_interval']} is not usable: "
                   "keepalived's vrrp_script interval is whole seconds, 1 or more. "
                   "Fix: e.g. check_interval = 1")
    return out


def balancer_ports(inv: Inventory) -> list[str]:
    b = inv.balancers
    out = [f"balancers.{k}: {b[k]} is not a port. Fix: use 1-65535"
           for k in ("api_port", "db_port", "stats_port") if not 1 <= b[k] <= 65535]
    if b["stats_port"] in (b["api_port"], b["db_port"]):
        out.append("balancers.stats_port: same as a frontend port. Fix: e.g. 9000")
    return out


def db_values(inv: Inventory) -> list[str]:
    d, out = inv.db, []
    if d["rise"] < 1:
        out.append("db.rise: must be at least 1. Fix: e.g. 3")
    if d["fall"] < 1:
        out.append("db.fall: must be at least 1. Fix: e.g. 2")
    if not 100 <= d["check_inter_ms"] <= 60000:
        out.append(f"db.check_inter_ms: {d['check_inter_ms']} is outside 100-60000. "
                   "Fix: e.g. 500")
    if d["semi_sync_timeout_ms"] < 1:
        out.append("db.semi_sync_timeout_ms: must be positive. Fix: e.g. 10000")
    if d["proxy_protocol"] and d["flavor"] == "mysql":
        out.append("db.proxy_protocol: MySQL has no PROXY protocol (MariaDB only). Fix: "
                   "remove db.proxy_protocol or set it to false (the k3s user is then "
                   "granted to the datastore balancers' addresses)")
    for k in ("database", "user", "replication_user", "check_user"):
        if not SAFE_DB_NAME_RE.match(d[k]):
            out.append(f"db.{k}: '{d[k]}' is not a safe name. Fix: use letters, "
                       "digits, '_' or '-', at most 32 characters")
    return out


def lab(inv: Inventory) -> list[str]:
    """A lab's name, subnet and operator address; every host and VIP inside the subnet."""
    lab, out = inv.lab, []
    if not lab["enabled"]:
        return []
    if not LAB_NAME_RE.match(lab["name"]):
        out.append(f"lab.name: '{lab['name']}' is not usable as an interface prefix. "
                   "Fix: 1-5 lower-case letters/digits, starting with a letter")
    try:
        net = ipaddress.ip_network(lab["subnet"])
    except ValueError as e:
        return out + [f"lab.subnet: {e}. Fix: write a network like \"10.77.0.0/24\""]
    op, by_addr = lab["operator_address"], addresses(inv)
    if not _is_ip(op):
        out.append(f"lab.operator_address: '{op}' is not an IP address. "
                   f"Fix: e.g. the first address of {net}")
    elif ipaddress.ip_address(op) not in net:
        out.append(f"lab.operator_address: {op} is outside lab.subnet "
                   f"{net}. Fix: pick an address inside it")
    elif op in by_addr:
        out.append(f"lab.operator_address: {op} is host '{by_addr[op]}''s "
                   "address. Fix: use a free address")
    for h in inv.hosts.values():
        if h.address and _is_ip(h.address) and ipaddress.ip_address(h.address) not in net:
            out.append(f"hosts.{h.name}.address: {h.address} is outside "
                       f"lab.subnet {net}. Fix: use an address in the lab "
                       "subnet, or set lab.enabled = false for real hosts")
    for v in inv.vips.values():
        if ipaddress.ip_address(v.address) not in net:
            out.append(f"vips.{v.key}.address: {v.address} is outside lab.subnet "
                       f"{net}. Fix: use an address in the lab subnet")
    return out


def k3s_install(inv: Inventory) -> list[str]:
    """The binary (airgap) method needs the folder the binary and installer come from."""
    if inv.cluster["install_method"] == "binary" and not inv.cluster["airgap_dir"]:
        return ["cluster.airgap_dir: install_method = \"binary\" needs the folder holding "
                "k3s and install.sh. Fix: set cluster.airgap_dir, or install_method = \"script\""]
    return []


def failover_limits(inv: Inventory) -> list[str]:
    """[failover] thresholds: known scenario kinds, non-negative numbers."""
    f, out = inv.failover, []
    for k in ("max_lost_writes", "max_duplicates", "max_dual_ownership_s"):
        if f.get(k, 0) < 0:
            out.append(f"failover.{k}: must not be negative. Fix: e.g. 0")
    for kind, v in (f.get("max_outage_s") or {}).items():
        if kind not in FAILOVER_KINDS:
            out.append(f"failover.max_outage_s.{kind}: unknown scenario kind"
                       f"{suggest(kind, list(FAILOVER_KINDS))}. Fix: use one of "
                       f"{', '.join(FAILOVER_KINDS)}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            out.append(f"failover.max_outage_s.{kind}: expected seconds > 0, got {v!r}. "
                       f"Fix: e.g. {kind} = {FAILOVER_KINDS[kind]}")
    return out


RULES = (unique_addresses, required_roles, server_ids, kine_auto_increment, vip_tables,
         vip_members, vip_uniqueness, port_clashes, balancer_timing, balancer_ports,
         db_values, k3s_install, failover_limits, lab)


def check(inv: Inventory) -> list[str]:
    """Every problem of the whole inventory, rule by rule."""
    return [p for rule in RULES for p in rule(inv)]
