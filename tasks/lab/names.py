"""Names, paths and guards of one lab instance (pure, except the root check).

The inventory's [lab] name (1-5 chars) prefixes every namespace, veth, bridge, nft table
and state folder, so labs with different names and subnets run side by side.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..core.errors import Refused
from ..core.inventory import Inventory

HOST_IFACE = "host0"
HOST_KEY_TYPES = ("ed25519", "ecdsa")

Log = Callable[[str], None]


def quiet(_: str) -> None:
    pass


def lab_name(inv: Inventory) -> str:
    return str(inv.lab["name"])


def switch_ns(name: str) -> str:
    """The switch namespace (bridge, host ports, nft fault table)."""
    return f"{name}-sw"


def host_ns(name: str, host: str) -> str:
    """One host's namespace: lo and host0, its container inside."""
    return f"{name}-h-{host}"


def bridge_name(name: str) -> str:
    return f"{name}-br"


def op_dev(name: str) -> str:
    """The operator's interface in the root namespace (operator_address)."""
    return f"{name}-op"


def port_name(name: str, index: int) -> str:
    """The switch side of host number `index`'s veth."""
    return f"{name}-p{index}"


def host_port(inv: Inventory, host: str) -> str:
    """The switch-side veth of `host` (in the switch namespace)."""
    inv.host(host)
    return port_name(lab_name(inv), list(inv.hosts).index(host))


def state_dir(inv: Inventory) -> Path:
    return inv.path.parent.resolve() / ".lab" / lab_name(inv)


def host_dir(inv: Inventory, host: str) -> Path:
    return state_dir(inv) / "hosts" / host


def require_lab(inv: Inventory) -> None:
    if not inv.is_lab:
        raise Refused(f"{inv.path}: lab.enabled is false, this inventory describes real "
                      "machines; lab functions refuse to touch them. Fix: use a lab inventory")
    if os.geteuid() != 0:
        raise Refused("the lab needs root (namespaces, mounts, systemd-nspawn). Fix: run as root")
