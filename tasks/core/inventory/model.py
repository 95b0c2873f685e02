"""The inventory's data model: hosts, VIPs, the whole inventory, and the ports a role uses."""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

ROLES = ("k3s-balancer", "db-balancer", "db", "k3s-server", "k3s-agent")
VIP_ROLE = {"api": "k3s-balancer", "db": "db-balancer"}
K3S_API_PORT = 6443
KUBELET_PORT = 10250


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
    failover: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def with_role(self, role: str) -> list[Host]:
        return [h for h in self.hosts.values() if role in h.roles]

    def host(self, name: str) -> Host:
        if name in self.hosts:
            return self.hosts[name]
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
