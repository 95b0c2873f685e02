"""The inventory (hosts.toml): parsing and validation, pure functions, no SSH.

`load()` reads the file named by K3S_HA_INVENTORY (default: hosts.toml beside the
fabfile), validates everything and raises InventoryError with every problem at once.
Each problem names the key path and how to fix it.

model (Host, Vip, Inventory), schema (every key's type, default and allowed values, and
the type checks), defaults (defaults and derived values such as server ids, assigned after
checking), rules (one function per rule group, each returning its problems); this module
reads the file and runs them in that order.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from ..errors import InventoryError
from . import defaults, rules
from .model import (K3S_API_PORT, KUBELET_PORT, ROLES, VIP_ROLE, Host, Inventory, Vip,
                    role_ports)
from .schema import (HOST_SCHEMA, SCHEMA, TOP_LEVEL, VIP_SCHEMA, check_section, check_table,
                     check_top_level, suggest)

PROJECT_DIR = Path(__file__).resolve().parents[3]
DEFAULT_INVENTORY = PROJECT_DIR / "hosts.toml"

__all__ = ["load", "parse", "inventory_path", "role_ports", "Host", "Vip", "Inventory",
           "K3S_API_PORT", "KUBELET_PORT", "ROLES", "VIP_ROLE", "PROJECT_DIR",
           "DEFAULT_INVENTORY", "SCHEMA", "HOST_SCHEMA", "VIP_SCHEMA", "TOP_LEVEL"]


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


def parse(text: str, path: str | Path = "hosts.toml") -> Inventory:
    """Parse inventory text. Pure: no I/O; raises InventoryError listing every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InventoryError(str(path), [f"invalid TOML: {e}. Fix: correct the syntax at that "
                                         "line"]) from None
    problems = check_top_level(raw)
    sections = {name: defaults.section(name, check_section(raw.get(name), name, problems))
                for name in SCHEMA}
    hosts = _hosts(raw.get("hosts"), sections["ssh"], problems)
    vips = _vips(raw.get("vips"), problems)
    inv = Inventory(path=path, hosts=hosts, vips=vips, raw=raw, **sections)
    defaults.number_db_hosts(inv)
    problems += rules.check(inv)
    if problems:
        raise InventoryError(str(path), problems)
    return inv


def _hosts(raw: Any, ssh: dict[str, Any], problems: list[str]) -> dict[str, Host]:
    """[hosts.NAME] tables -> Hosts; each table's problems are added to `problems`."""
    if raw is None:
        problems.append("hosts: no hosts. Fix: add [hosts.NAME] tables with address and roles")
        return {}
    if not isinstance(raw, dict):
        problems.append("hosts: expected tables [hosts.NAME]. Fix: write [hosts.k3s-db-01] ...")
        return {}
    hosts: dict[str, Host] = {}
    seen_lower: dict[str, str] = {}
    for name, body in raw.items():
        kp = f"hosts.{name}"
        problems += rules.host_name(name, seen_lower)
        seen_lower[name.lower()] = name
        if not isinstance(body, dict):
            problems.append(f"{kp}: expected a table. Fix: write [{kp}] with address and roles")
            continue
        vals = check_table(body, kp, HOST_SCHEMA, problems)
        problems += rules.host_address(kp, vals.get("address"))
        problems += rules.host_roles(kp, vals.get("roles"))
        problems += rules.host_server_id(kp, vals.get("server_id"))
        roles = [r for r in vals.get("roles") or [] if r in ROLES]
        hosts[name] = defaults.host(name, vals, roles, ssh)
    return hosts


def _vips(raw: Any, problems: list[str]) -> dict[str, Vip]:
    """[vips.api] and [vips.db] -> Vips; each table's problems are added to `problems`."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append("vips: expected tables [vips.api] and [vips.db]")
        return {}
    vips: dict[str, Vip] = {}
    for key, body in raw.items():
        kp = f"vips.{key}"
        if key not in VIP_ROLE:
            problems.append(f"{kp}: unknown VIP{suggest(key, list(VIP_ROLE))}. "
                            "Fix: use [vips.api] (API balancers) or [vips.db] (datastore)")
            continue
        if not isinstance(body, dict):
            problems.append(f"{kp}: expected a table. Fix: write [{kp}] with address etc.")
            continue
        vals = defaults.vip_values(check_table(body, kp, VIP_SCHEMA, problems))
        bad_address = rules.vip_address(kp, vals["address"])
        if bad_address:
            problems += bad_address
            continue
        vips[key] = _vip(key, kp, vals, problems)
    return vips


def _vip(key: str, kp: str, vals: dict[str, Any], problems: list[str]) -> Vip:
    """One VIP; a value with a problem is replaced by a harmless one so the inventory rules
    can still run (the problem is reported either way)."""
    bad_vrid = rules.vip_router_id(kp, vals["virtual_router_id"])
    bad_prefix = rules.vip_prefix(kp, vals["prefix"])
    bad_prios = rules.vip_priority_values(kp, vals["priorities"])
    prios = vals["priorities"] if not bad_prios else []
    problems += bad_vrid + bad_prefix + bad_prios + rules.vip_priorities_differ(kp, prios)
    problems += rules.vip_interface(kp, vals["interface"])
    return Vip(key=key, address=vals["address"], prefix=24 if bad_prefix else vals["prefix"],
               name=vals["name"], interface=vals["interface"],
               virtual_router_id=vals["virtual_router_id"] or 0,
               priorities=tuple(prios), role=VIP_ROLE[key])
