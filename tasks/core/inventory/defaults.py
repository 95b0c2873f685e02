"""Defaults and derived values, assigned after the values were checked (never while)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from .model import Host, Inventory
from .schema import SCHEMA, VIP_SCHEMA, Spec


def defaults_of(schema: dict[str, Spec]) -> dict[str, Any]:
    """Every key's default (a fresh copy of list defaults)."""
    return {k: (list(v[1]) if isinstance(v[1], list) else v[1]) for k, v in schema.items()}


def section(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """Section [name]: the checked values given, the schema's defaults for the rest.
    [db] proxy_protocol defaults to off where the flavour has none (MySQL)."""
    out = {**defaults_of(SCHEMA[name]), **given}
    if name == "db" and "proxy_protocol" not in given and out["flavor"] == "mysql":
        out["proxy_protocol"] = False
    return out


def vip_values(given: dict[str, Any]) -> dict[str, Any]:
    return {**defaults_of(VIP_SCHEMA), **given}


def host(name: str, vals: dict[str, Any], roles: list[str], ssh: dict[str, Any]) -> Host:
    """A Host; login settings not given for it come from [ssh]."""
    return Host(name=name, address=vals.get("address") or "", roles=tuple(roles),
                server_id=vals.get("server_id") or 0,
                ssh_user=vals.get("ssh_user") or ssh["user"],
                ssh_port=vals.get("ssh_port") or ssh["port"],
                ssh_key=vals.get("ssh_key") or ssh["key"])


def number_db_hosts(inv: Inventory) -> None:
    """Give each db host without a server_id the lowest free number, in inventory order."""
    used = {h.server_id for h in inv.with_role("db") if h.server_id}
    nxt = 1
    for h in inv.with_role("db"):
        if h.server_id:
            continue
        while nxt in used:
            nxt += 1
        inv.hosts[h.name] = replace(h, server_id=nxt)
        used.add(nxt)
