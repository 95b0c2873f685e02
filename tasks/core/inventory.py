"""The inventory (hosts.toml): parsing and validation, pure functions, no SSH.

`load()` reads the file named by K3S_HA_INVENTORY (default: hosts.toml beside the
fabfile), validates everything and raises InventoryError with every problem at once.
Each problem names the key path and how to fix it.
"""
from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InventoryError

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
DEFAULT_INVENTORY = PROJECT_DIR / "hosts.toml"

ROLES = ("k3s-balancer", "db-balancer", "db", "k3s-server", "k3s-agent")
VIP_ROLE = {"api": "k3s-balancer", "db": "db-balancer"}

# section -> key -> (type, default, allowed values or None)
_ANY = None
SCHEMA: dict[str, dict[str, tuple[Any, Any, Any]]] = {
    "lab": {
        "enabled": (bool, False, _ANY),
        "name": (str, "kha", _ANY),
        "subnet": (str, "10.77.0.0/24", _ANY),
        "operator_address": (str, "", _ANY),
        "suite": (str, "bookworm", _ANY),
        "mirror": (str, "", _ANY),
        "extra_packages": (list, [], _ANY),
    },
    "ssh": {
        "user": (str, "root", _ANY),
        "port": (int, 22, _ANY),
        "key": (str, "", _ANY),
        "known_hosts": (str, "~/.ssh/known_hosts", _ANY),
        "connect_timeout": (int, 10, _ANY),
    },
    "secrets": {
        "file": (str, "", _ANY),
        "save_prompted": (bool, False, _ANY),
    },
    "cluster": {
        "k3s_version": (str, "v1.31.5+k3s1", _ANY),
        "install_method": (str, "script", ("script", "binary")),
        "node_taint": (str, "CriticalAddonsOnly=true:NoExecute", _ANY),
        "tls_san": (list, [], _ANY),
        "domain": (str, "lab.lan", _ANY),
    },
    "db": {
        "flavor": (str, "auto", ("auto", "mysql", "mariadb")),
        "database": (str, "k3s", _ANY),
        "user": (str, "k3s", _ANY),
        "replication_user": (str, "repl", _ANY),
        "check_user": (str, "haproxy-check", _ANY),
        "health_check": (str, "mysql-check", ("mysql-check", "http")),
        "health_port": (int, 9200, _ANY),
        "port": (int, 3306, _ANY),
        "rise": (int, 30, _ANY),
        "semi_sync": (bool, True, _ANY),
        "semi_sync_timeout_ms": (int, 10000, _ANY),
        "gtid": (bool, False, _ANY),
        "auto_increment_increment": (int, 1, _ANY),
        "auto_increment_offset": (int, 1, _ANY),
    },
    "balancers": {
        "api_backend": (str, "primary-backup", ("primary-backup", "roundrobin")),
        "api_health_check": (str, "httpchk", ("httpchk", "ssl-hello-chk", "tcp-check")),
        "api_port": (int, 6443, _ANY),
        "db_port": (int, 3306, _ANY),
        "stats_port": (int, 9000, _ANY),
        "timeout_connect": (str, "5s", _ANY),
        "timeout_client": (str, "30m", _ANY),
        "timeout_server": (str, "30m", _ANY),
        "timeout_check": (str, "5s", _ANY),
        "check_interval": (float, 1, _ANY),
        "check_fall": (int, 2, _ANY),
        "check_rise": (int, 2, _ANY),
        "unicast": (bool, False, _ANY),
        "fast_mode": (bool, False, _ANY),
        "advert_int": (float, 1, _ANY),
        "garp_master_refresh": (int, 1, _ANY),
    },
}
VIP_SCHEMA: dict[str, tuple[Any, Any, Any]] = {
    "address": (str, None, _ANY),
    "prefix": (int, 24, _ANY),
    "name": (str, "", _ANY),
    "interface": (str, "eth0", _ANY),
    "virtual_router_id": (int, None, _ANY),
    "priorities": (list, [], _ANY),
}
HOST_SCHEMA: dict[str, tuple[Any, Any, Any]] = {
    "address": (str, None, _ANY),
    "roles": (list, None, _ANY),
    "server_id": (int, 0, _ANY),
    "ssh_user": (str, "", _ANY),
    "ssh_port": (int, 0, _ANY),
    "ssh_key": (str, "", _ANY),
}
TOP_LEVEL = tuple(SCHEMA) + ("vips", "hosts")
K3S_API_PORT = 6443
KUBELET_PORT = 10250
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DURATION_RE = re.compile(r"^\d+(us|ms|s|m|h|d)?$")


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    roles: tuple[str, ...]
    server_id: int = 0
    ssh_user: str = "root"
    ssh_port: int = 22
    ssh_key: str = ""

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Vip:
    key: str  # "api" | "db"
    address: str
    prefix: int
    name: str
    interface: str
    virtual_router_id: int
    priorities: tuple[int, ...]
    role: str

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix}"


@dataclass
class Inventory:
    path: Path
    hosts: dict[str, Host]
    vips: dict[str, Vip]
    lab: dict[str, Any]
    ssh: dict[str, Any]
    secrets: dict[str, Any]
    cluster: dict[str, Any]
    db: dict[str, Any]
    balancers: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def with_role(self, role: str) -> list[Host]:
        return [h for h in self.hosts.values() if role in h.roles]

    def host(self, name: str) -> Host:
        if name in self.hosts:
            return self.hosts[name]
        from .errors import InputError

        close = difflib.get_close_matches(name, list(self.hosts), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise InputError(
            f"no host named '{name}' in {self.path}{hint}. "
            f"Fix: use one of: {', '.join(self.hosts)}"
        )

    def fqdn(self, name: str) -> str:
        dom = self.cluster["domain"]
        return f"{name}.{dom}" if dom else name

    def resolve_path(self, value: str) -> Path:
        """A path from the inventory: ~ expanded, relative to the inventory's folder."""
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self.path.parent / p)

    def vip_for_role(self, role: str) -> Vip | None:
        for v in self.vips.values():
            if v.role == role:
                return v
        return None

    @property
    def is_lab(self) -> bool:
        return bool(self.lab.get("enabled"))


def inventory_path() -> Path:
    env = os.environ.get("K3S_HA_INVENTORY")
    return Path(env).expanduser().resolve() if env else DEFAULT_INVENTORY


def load(path: str | Path | None = None) -> Inventory:
    """Read and validate an inventory file; raise InventoryError listing every problem."""
    p = Path(path) if path else inventory_path()
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise InventoryError(
            str(p), ["file not found. Fix: create it (copy hosts.toml) or set K3S_HA_INVENTORY"]
        ) from None
    except OSError as e:
        raise InventoryError(str(p), [f"cannot read the file: {e.strerror}"]) from None
    return parse(text, p)


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _typename(t: Any) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list"}.get(t, str(t))


def _check_value(path: str, value: Any, spec: tuple[Any, Any, Any], problems: list[str]) -> Any:
    typ, default, choices = spec
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        problems.append(f"{path}: expected {_typename(typ)}, got {value!r}. "
                        f"Fix: write e.g. {path.split('.')[-1]} = {_example(typ, default)}")
        return default
    if choices and value not in choices:
        problems.append(f"{path}: '{value}' is not allowed{_suggest(value, choices)}. "
                        f"Fix: use one of {', '.join(choices)}")
        return default
    return value


def _example(typ: Any, default: Any) -> str:
    if default is not None and not isinstance(default, list):
        return repr(default).replace("True", "true").replace("False", "false").replace("'", '"')
    return {bool: "true", int: "1", float: "1.0", str: '"..."', list: "[]"}.get(typ, "...")


def _section(raw: Any, name: str, schema: dict, problems: list[str]) -> dict[str, Any]:
    out = {k: (list(v[1]) if isinstance(v[1], list) else v[1]) for k, v in schema.items()}
    if raw is None:
        return out
    if not isinstance(raw, dict):
        problems.append(f"{name}: expected a table [{name}]. Fix: write it as [{name}] with keys")
        return out
    for k, v in raw.items():
        if k not in schema:
            problems.append(f"{name}.{k}: unknown key{_suggest(k, list(schema))}. "
                            f"Fix: remove it or use one of {', '.join(schema)}")
            continue
        out[k] = _check_value(f"{name}.{k}", v, schema[k], problems)
    return out


def parse(text: str, path: str | Path = "hosts.toml") -> Inventory:
    """Parse inventory text. Pure: no I/O besides nothing; raises InventoryError."""
    path = Path(path)
    fname = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InventoryError(fname, [f"invalid TOML: {e}. Fix: correct the syntax at that line"]) \
            from None
    problems: list[str] = []
    for k in raw:
        if k not in TOP_LEVEL:
            problems.append(f"{k}: unknown table or key{_suggest(k, TOP_LEVEL)}. "
                            f"Fix: use only {', '.join(TOP_LEVEL)}")
    sections = {name: _section(raw.get(name), name, schema, problems)
                for name, schema in SCHEMA.items()}
    ssh = sections["ssh"]
    hosts = _parse_hosts(raw.get("hosts"), ssh, problems)
    vips = _parse_vips(raw.get("vips"), problems)
    inv = Inventory(path=path, hosts=hosts, vips=vips, raw=raw, **sections)
    _validate(inv, problems)
    if problems:
        raise InventoryError(fname, problems)
    return inv


def _parse_hosts(raw: Any, ssh: dict, problems: list[str]) -> dict[str, Host]:
    hosts: dict[str, Host] = {}
    if raw is None:
        problems.append("hosts: no hosts. Fix: add [hosts.NAME] tables with address and roles")
        return hosts
    if not isinstance(raw, dict):
        problems.append("hosts: expected tables [hosts.NAME]. Fix: write [hosts.k3s-db-01] ...")
        return hosts
    seen_lower: dict[str, str] = {}
    for name, body in raw.items():
        kp = f"hosts.{name}"
        if not _NAME_RE.match(name):
            problems.append(f"{kp}: '{name}' is not a valid host name. Fix: use lower-case "
                            "letters, digits and '-', starting and ending with a letter or digit")
        if name.lower() in seen_lower:
            problems.append(f"{kp}: duplicate host name (same as '{seen_lower[name.lower()]}'). "
                            "Fix: give every host its own name")
        seen_lower[name.lower()] = name
        if not isinstance(body, dict):
            problems.append(f"{kp}: expected a table. Fix: write [{kp}] with address and roles")
            continue
        vals = {}
        for k, v in body.items():
            if k not in HOST_SCHEMA:
                problems.append(f"{kp}.{k}: unknown key{_suggest(k, list(HOST_SCHEMA))}. "
                                f"Fix: use one of {', '.join(HOST_SCHEMA)}")
                continue
            vals[k] = _check_value(f"{kp}.{k}", v, HOST_SCHEMA[k], problems)
        addr = vals.get("address")
        if not addr:
            problems.append(f"{kp}.address: missing. Fix: add address = \"192.0.2.10\" "
                            "(the host's IP address)")
            addr = ""
        else:
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                problems.append(f"{kp}.address: '{addr}' is not an IP address. "
                                "Fix: write the host's IPv4/IPv6 address, e.g. \"192.0.2.10\"")
        roles = vals.get("roles")
        if roles is None:
            problems.append(f"{kp}.roles: missing. Fix: add roles = [\"db\"] "
                            f"(any of {', '.join(ROLES)})")
            roles = []
        if not roles and vals.get("roles") is not None:
            problems.append(f"{kp}.roles: empty. Fix: give at least one of {', '.join(ROLES)}")
        for i, r in enumerate(roles):
            if r not in ROLES:
                problems.append(f"{kp}.roles[{i}]: unknown role '{r}'{_suggest(str(r), ROLES)}. "
                                f"Fix: use one of {', '.join(ROLES)}")
        if len(set(roles)) != len(roles):
            problems.append(f"{kp}.roles: a role is listed twice. Fix: list each role once")
        hosts[name] = Host(
            name=name, address=addr, roles=tuple(r for r in roles if r in ROLES),
            server_id=vals.get("server_id", 0),
            ssh_user=vals.get("ssh_user") or ssh["user"],
            ssh_port=vals.get("ssh_port") or ssh["port"],
            ssh_key=vals.get("ssh_key") or ssh["key"],
        )
    return hosts


def _parse_vips(raw: Any, problems: list[str]) -> dict[str, Vip]:
    vips: dict[str, Vip] = {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append("vips: expected tables [vips.api] and [vips.db]")
        return vips
    for key, body in raw.items():
        kp = f"vips.{key}"
        if key not in VIP_ROLE:
            problems.append(f"{kp}: unknown VIP{_suggest(key, list(VIP_ROLE))}. "
                            "Fix: use [vips.api] (API balancers) or [vips.db] (datastore)")
            continue
        if not isinstance(body, dict):
            problems.append(f"{kp}: expected a table. Fix: write [{kp}] with address etc.")
            continue
        vals = {k: (list(v[1]) if isinstance(v[1], list) else v[1]) for k, v in VIP_SCHEMA.items()}
        for k, v in body.items():
            if k not in VIP_SCHEMA:
                problems.append(f"{kp}.{k}: unknown key{_suggest(k, list(VIP_SCHEMA))}. "
                                f"Fix: use one of {', '.join(VIP_SCHEMA)}")
                continue
            vals[k] = _check_value(f"{kp}.{k}", v, VIP_SCHEMA[k], problems)
        if not vals["address"]:
            problems.append(f"{kp}.address: missing. Fix: add a free address in the "
                            "balancers' subnet, e.g. address = \"192.0.2.100\"")
            continue
        try:
            ipaddress.ip_address(vals["address"])
        except ValueError:
            problems.append(f"{kp}.address: '{vals['address']}' is not an IP address. "
                            "Fix: write a free IPv4 address in the balancers' subnet")
            continue
        vrid = vals["virtual_router_id"]
        if vrid is None:
            problems.append(f"{kp}.virtual_router_id: missing. Fix: add a number 1-255, "
                            "different for each VIP on the segment")
            vrid = 0
        elif not 1 <= vrid <= 255:
            problems.append(f"{kp}.virtual_router_id: {vrid} is out of range. Fix: use 1-255")
        if not 0 < vals["prefix"] <= 32:
            problems.append(f"{kp}.prefix: {vals['prefix']} is out of range. Fix: use 1-32")
            vals["prefix"] = 24
        prios = vals["priorities"]
        for i, p in enumerate(prios):
            if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= 254:
                problems.append(f"{kp}.priorities[{i}]: {p!r} is not a priority. "
                                "Fix: use integers 1-254, highest for the preferred holder")
                prios = []
                break
        if len(set(prios)) != len(prios):
            problems.append(f"{kp}.priorities: two balancers share a priority. "
                            "Fix: give each a different priority, e.g. [100, 90]")
        vips[key] = Vip(key=key, address=vals["address"], prefix=vals["prefix"],
                        name=vals["name"], interface=vals["interface"],
                        virtual_router_id=vrid, priorities=tuple(prios), role=VIP_ROLE[key])
    return vips


def role_ports(inv: Inventory, role: str) -> dict[int, str]:
    """TCP ports a role listens on (port -> what), for clash detection."""
    b, d = inv.balancers, inv.db
    if role == "k3s-balancer":
        return {b["api_port"]: "HAProxy API frontend", b["stats_port"]: "HAProxy stats"}
    if role == "db-balancer":
        return {b["db_port"]: "HAProxy datastore frontend", b["stats_port"]: "HAProxy stats"}
    if role == "db":
        ports = {d["port"]: "MySQL"}
        if d["health_check"] == "http":
            ports[d["health_port"]] = "db health endpoint"
        return ports
    if role == "k3s-server":
        return {K3S_API_PORT: "k3s API server", KUBELET_PORT: "kubelet"}
    if role == "k3s-agent":
        return {KUBELET_PORT: "kubelet"}
    return {}


def _validate(inv: Inventory, problems: list[str]) -> None:
    hosts = list(inv.hosts.values())
    # duplicate addresses
    by_addr: dict[str, str] = {}
    for h in hosts:
        if h.address and h.address in by_addr:
            problems.append(f"hosts.{h.name}.address: {h.address} is also the address of "
                            f"'{by_addr[h.address]}'. Fix: give every host its own address")
        by_addr.setdefault(h.address, h.name)
    # required roles
    dbs = inv.with_role("db")
    if hosts and not dbs:
        problems.append("hosts: no host has role 'db'. Fix: add roles = [\"db\"] to two hosts")
    elif len(dbs) != 2 and hosts:
        problems.append(f"hosts: {len(dbs)} hosts have role 'db' ({', '.join(h.name for h in dbs)}); "
                        "master-master replication needs exactly two. Fix: give role 'db' "
                        "to exactly two hosts")
    if hosts and not inv.with_role("k3s-server"):
        problems.append("hosts: no host has role 'k3s-server'. Fix: add roles = [\"k3s-server\"] "
                        "to at least one host (two for HA)")
    # server ids: default by position among db hosts
    used = {h.server_id for h in dbs if h.server_id}
    nxt = 1
    for h in dbs:
        if h.server_id < 0 or h.server_id > 4294967295:
            problems.append(f"hosts.{h.name}.server_id: {h.server_id} is out of range. "
                            "Fix: use 1-4294967295")
        if not h.server_id:
            while nxt in used:
                nxt += 1
            inv.hosts[h.name] = h = Host(**{**h.__dict__, "server_id": nxt})
            used.add(nxt)
    ids: dict[int, str] = {}
    for h in inv.with_role("db"):
        if h.server_id in ids:
            problems.append(f"hosts.{h.name}.server_id: {h.server_id} is also the server_id of "
                            f"'{ids[h.server_id]}'. Fix: give each db host a unique server_id")
        ids.setdefault(h.server_id, h.name)
    for h in hosts:
        if h.server_id and "db" not in h.roles:
            problems.append(f"hosts.{h.name}.server_id: only db hosts have a server_id. "
                            "Fix: remove it or add role 'db'")
    # kine constraint
    for k in ("auto_increment_increment", "auto_increment_offset"):
        if inv.db[k] != 1:
            problems.append(
                f"db.{k}: must be 1, got {inv.db[k]}. k3s's datastore layer (kine) uses the "
                "auto-increment id as its revision and needs ids strictly +1 from a single "
                "writer; master-master here means one writer at a time, not 2/1 offsets. "
                f"Fix: remove db.{k} or set it to 1")
    # VIPs
    for key, role in VIP_ROLE.items():
        members = inv.with_role(role)
        if members and key not in inv.vips:
            problems.append(f"vips.{key}: missing, but hosts have role '{role}'. "
                            f"Fix: add a [vips.{key}] table with address and virtual_router_id")
    vrids: dict[int, str] = {}
    for key, v in inv.vips.items():
        members = inv.with_role(v.role)
        if len(members) < 2:
            problems.append(f"vips.{key}: needs at least two hosts with role '{v.role}' for "
                            f"failover, found {len(members)}. Fix: give role '{v.role}' to two hosts")
        if v.priorities and len(v.priorities) != len(members):
            problems.append(f"vips.{key}.priorities: {len(v.priorities)} priorities for "
                            f"{len(members)} '{v.role}' hosts. Fix: list one priority per host, "
                            "in the order the hosts appear")
        if v.virtual_router_id in vrids:
            problems.append(f"vips.{key}.virtual_router_id: {v.virtual_router_id} is also used "
                            f"by vips.{vrids[v.virtual_router_id]}. Fix: use a different id per VIP")
        vrids.setdefault(v.virtual_router_id, key)
        net = ipaddress.ip_network(f"{v.address}/{v.prefix}", strict=False)
        for h in members:
            try:
                inside = ipaddress.ip_address(h.address) in net
            except ValueError:
                continue
            if not inside:
                problems.append(f"vips.{key}.address: {v.cidr} is outside the subnet of "
                                f"balancer '{h.name}' ({h.address}). Fix: pick a VIP in the "
                                "balancers' own subnet (VRRP works on one L2 segment)")
        if v.address in by_addr:
            problems.append(f"vips.{key}.address: {v.address} is the address of host "
                            f"'{by_addr[v.address]}'. Fix: use a free address")
    vaddrs = [v.address for v in inv.vips.values()]
    if len(set(vaddrs)) != len(vaddrs):
        problems.append("vips: the API and datastore VIPs share an address. Fix: use two addresses")
    # port clashes on hosts with several roles
    for h in hosts:
        if "k3s-server" in h.roles and "k3s-agent" in h.roles:
            problems.append(f"hosts.{h.name}.roles: a host is either a k3s-server or a "
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
                    problems.append(f"hosts.{h.name}.roles: port {port} is wanted by both "
                                    f"{taken[port]} and {what}. Fix: set {fix}")
                taken.setdefault(port, what)
    # balancers
    b = inv.balancers
    for k in ("timeout_connect", "timeout_client", "timeout_server", "timeout_check"):
        if not _DURATION_RE.match(b[k]):
            problems.append(f"balancers.{k}: '{b[k]}' is not an HAProxy duration. "
                            "Fix: write e.g. \"5s\", \"30m\"")
    if b["fast_mode"]:
        if not 0.01 <= b["advert_int"] <= 40.95:
            problems.append("balancers.advert_int: fast mode (VRRPv3) needs 0.01-40.95 s. "
                            "Fix: e.g. advert_int = 0.1")
    elif b["advert_int"] != int(b["advert_int"]) or not 1 <= b["advert_int"] <= 255:
        problems.append(f"balancers.advert_int: {b['advert_int']} needs fast_mode = true "
                        "(VRRPv2 rounds to whole seconds). Fix: set fast_mode = true or use 1-255")
    for k in ("check_fall", "check_rise", "garp_master_refresh"):
        if b[k] < (0 if k == "garp_master_refresh" else 1):
            problems.append(f"balancers.{k}: {b[k]} is too small. Fix: use a positive number")
    if b["check_interval"] < 1 or b["check_interval"] != int(b["check_interval"]):
        problems.append(f"balancers.check_interval: {b['check_interval']} is not usable: "
                        "keepalived's vrrp_script interval is whole seconds, 1 or more. "
                        "Fix: e.g. check_interval = 1")
    for k in ("api_port", "db_port", "stats_port"):
        if not 1 <= b[k] <= 65535:
            problems.append(f"balancers.{k}: {b[k]} is not a port. Fix: use 1-65535")
    if b["stats_port"] in (b["api_port"], b["db_port"]):
        problems.append("balancers.stats_port: same as a frontend port. Fix: e.g. 9000")
    if inv.db["rise"] < 1:
        problems.append("db.rise: must be at least 1. Fix: e.g. 30 (the guide's value)")
    if inv.db["semi_sync_timeout_ms"] < 1:
        problems.append("db.semi_sync_timeout_ms: must be positive. Fix: e.g. 10000")
    for k in ("database", "user", "replication_user", "check_user"):
        if not re.match(r"^[A-Za-z0-9_-]{1,32}$", inv.db[k]):
            problems.append(f"db.{k}: '{inv.db[k]}' is not a safe name. Fix: use letters, "
                            "digits, '_' or '-', at most 32 characters")
    # lab
    lab = inv.lab
    if lab["enabled"]:
        if not re.match(r"^[a-z][a-z0-9]{0,4}$", lab["name"]):
            problems.append(f"lab.name: '{lab['name']}' is not usable as an interface prefix. "
                            "Fix: 1-5 lower-case letters/digits, starting with a letter")
        try:
            net = ipaddress.ip_network(lab["subnet"])
        except ValueError as e:
            problems.append(f"lab.subnet: {e}. Fix: write a network like \"10.77.0.0/24\"")
            net = None
        if net is not None:
            op = lab["operator_address"]
            try:
                if ipaddress.ip_address(op) not in net:
                    problems.append(f"lab.operator_address: {op} is outside lab.subnet "
                                    f"{net}. Fix: pick an address inside it")
                elif op in by_addr:
                    problems.append(f"lab.operator_address: {op} is host '{by_addr[op]}''s "
                                    "address. Fix: use a free address")
            except ValueError:
                problems.append(f"lab.operator_address: '{op}' is not an IP address. "
                                f"Fix: e.g. the first address of {net}")
            for h in hosts:
                try:
                    if h.address and ipaddress.ip_address(h.address) not in net:
                        problems.append(f"hosts.{h.name}.address: {h.address} is outside "
                                        f"lab.subnet {net}. Fix: use an address in the lab "
                                        "subnet, or set lab.enabled = false for real hosts")
                except ValueError:
                    pass
            for v in inv.vips.values():
                if ipaddress.ip_address(v.address) not in net:
                    problems.append(f"vips.{v.key}.address: {v.address} is outside lab.subnet "
                                    f"{net}. Fix: use an address in the lab subnet")
