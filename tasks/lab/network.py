"""The lab's network: the switch namespace with its bridge, the operator's veth, one
namespace + veth per host, and the check that the lab subnet is free on this machine.

  root namespace   <name>-op  (operator_address/prefix; fab and tests talk through it)
  <name>-sw        the "switch": bridge <name>-br, ports <name>-p<i> (one per host),
                   <name>-po (the operator's port), nft table bridge <name>_lab (faults)
  <name>-h-<host>  one per host: lo + host0 (the host's address), systemd-nspawn inside
"""
from __future__ import annotations

import ipaddress
import json
import os
from enum import StrEnum
from typing import Any

from ..core.errors import Refused
from ..core.inventory import Host, Inventory
from .names import HOST_IFACE, bridge_name, host_ns, host_port, lab_name, op_dev, switch_ns
from .procs import mounts, ok, run


def op_peer(name: str) -> str:
    """The switch side of the operator's veth."""
    return f"{name}-po"


# ------------------------------------------------------------------ reading (pure + probes)
def route_overlap(subnet: str, routes: list[dict[str, Any]], own_dev: str) -> dict | None:
    """The first machine route overlapping the lab subnet (default route and ours aside)."""
    net = ipaddress.ip_network(subnet)
    for r in routes:
        dst = r.get("dst", "")
        if not dst or dst == "default" or r.get("dev") == own_dev:
            continue
        try:
            other = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if other.version == net.version and other.prefixlen > 0 and other.overlaps(net):
            return r
    return None


def free_subnet(routes: list[dict[str, Any]], prefix: int = 24) -> str:
    """A 10.x.0.0/prefix overlapping none of the routes (for error messages and tests)."""
    for x in range(77, 255):
        cand = f"10.{x}.0.0/{prefix}"
        if route_overlap(cand, routes, "") is None:
            return cand
    return f"10.77.0.0/{prefix}"


def machine_routes() -> list[dict[str, Any]]:
    res = run(["ip", "-j", "route", "show", "table", "all"], timeout=30)
    return [r for r in json.loads(res.stdout or "[]") if r.get("type") != "broadcast"]


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except OSError:
        return []


def link_exists(dev: str, ns: str | None = None) -> bool:
    return ok(["ip"] + (["-n", ns] if ns else []) + ["link", "show", "dev", dev])


def link_info(dev: str, ns: str | None = None) -> dict[str, Any] | None:
    argv = ["ip", "-j"] + (["-n", ns] if ns else []) + ["-d", "addr", "show", "dev", dev]
    res = run(argv, check=False, timeout=30)
    if res.returncode != 0:
        return None
    data = json.loads(res.stdout or "[]")
    return data[0] if data else None


def check_subnet(inv: Inventory) -> None:
    """Refuse when the lab subnet overlaps a route of the machine (other than our own)."""
    routes = machine_routes()
    hit = route_overlap(inv.lab["subnet"], routes, op_dev(lab_name(inv)))
    if hit:
        raise Refused(
            f"lab {lab_name(inv)}: lab.subnet {inv.lab['subnet']} overlaps the machine's route "
            f"'{hit.get('dst')} dev {hit.get('dev', '?')}'. Fix: set lab.subnet (and the host, "
            f"VIP and operator addresses) in {inv.path} to a free private range, "
            f"e.g. {free_subnet(routes)}")


# ------------------------------------------------------------------ the switch
def _switch_ok(inv: Inventory, want: str) -> bool:
    name = lab_name(inv)
    sw = switch_ns(name)
    info = link_info(op_dev(name))
    return (sw in list_netns() and link_exists(bridge_name(name), sw)
            and link_exists(op_peer(name), sw)
            and info is not None and "UP" in info.get("flags", [])
            and any(f"{a.get('local')}/{a.get('prefixlen')}" == want
                    for a in info.get("addr_info", [])))


def ensure_switch(inv: Inventory) -> bool:
    """Switch namespace, bridge and the operator's veth; True when something was created."""
    name = lab_name(inv)
    sw, br, op, po = switch_ns(name), bridge_name(name), op_dev(name), op_peer(name)
    net = ipaddress.ip_network(inv.lab["subnet"])
    want = f"{inv.lab['operator_address']}/{net.prefixlen}"
    if _switch_ok(inv, want):
        return False
    # half-built or stale: drop the switch and everything hanging from it
    teardown_switch(inv)
    run(["ip", "netns", "add", sw])
    run(["ip", "-n", sw, "link", "set", "lo", "up"])
    run(["ip", "-n", sw, "link", "add", br, "type", "bridge", "mcast_snooping", "0",
         "stp_state", "0"])
    run(["ip", "-n", sw, "link", "set", br, "up"])
    run(["ip", "link", "add", op, "type", "veth", "peer", "name", po, "netns", sw])
    run(["ip", "-n", sw, "link", "set", po, "master", br, "up"])
    run(["ip", "addr", "add", want, "dev", op])
    run(["ip", "link", "set", op, "up"])
    return True


def teardown_switch(inv: Inventory) -> None:
    name = lab_name(inv)
    if link_exists(op_dev(name)):
        run(["ip", "link", "del", op_dev(name)], check=False)
    if switch_ns(name) in list_netns():
        run(["ip", "netns", "del", switch_ns(name)], check=False)


def release_netns_mount() -> None:
    """`ip netns add` leaves /run/netns mounted; unmount it when no namespace is left."""
    if not list_netns() and "/run/netns" in mounts():
        while "/run/netns" in mounts():
            if run(["umount", "/run/netns"], check=False).returncode != 0:
                break


# ------------------------------------------------------------------ one host's link
def host_net_ok(inv: Inventory, h: Host) -> bool:
    name = lab_name(inv)
    ns, port = host_ns(name, h.name), host_port(inv, h.name)
    if ns not in list_netns():
        return False
    info = link_info(HOST_IFACE, ns)
    if info is None or not any(a.get("local") == h.address for a in info.get("addr_info", [])):
        return False
    return link_exists(port, switch_ns(name))


def rebuild_host_net(inv: Inventory, h: Host) -> None:
    """A fresh namespace and veth for a host (its container must be stopped)."""
    name = lab_name(inv)
    ns, sw, port = host_ns(name, h.name), switch_ns(name), host_port(inv, h.name)
    if ns in list_netns():
        run(["ip", "netns", "del", ns])
    if link_exists(port, sw):
        run(["ip", "-n", sw, "link", "del", port])
    prefix = ipaddress.ip_network(inv.lab["subnet"]).prefixlen
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", HOST_IFACE,
         "netns", ns])
    run(["ip", "-n", sw, "link", "set", port, "master", bridge_name(name), "up"])
    run(["ip", "-n", ns, "addr", "add", f"{h.address}/{prefix}", "dev", HOST_IFACE])
    run(["ip", "-n", ns, "link", "set", HOST_IFACE, "up"])
    # the new veth has a new MAC: forget the operator's stale neighbour entry
    run(["ip", "neigh", "del", h.address, "dev", op_dev(name)], check=False)


def delete_host_ns(inv: Inventory, host: str) -> None:
    ns = host_ns(lab_name(inv), host)
    if ns in list_netns():
        run(["ip", "netns", "del", ns], check=False)


class Port(StrEnum):
    """A host's switch port as the switch sees it."""
    UP = "up"
    PARTITIONED = "partitioned"  # detached from the bridge, carrier kept
    LINK_DOWN = "link down"      # carrier lost
    MISSING = "-"                # no switch or no port


def port_of(info: dict[str, Any] | None, bridge: str) -> Port:
    """The port's state from its `ip -j -d addr` entry (pure)."""
    if info is None:
        return Port.MISSING
    if "UP" not in info.get("flags", []):
        return Port.LINK_DOWN
    if info.get("master") != bridge:
        return Port.PARTITIONED
    return Port.UP


def port_state(inv: Inventory, host: str) -> Port:
    name = lab_name(inv)
    info = link_info(host_port(inv, host), switch_ns(name)) \
        if switch_ns(name) in list_netns() else None
    return port_of(info, bridge_name(name))
