"""The fault API: the ONLY way tests, benchmarks and the failover drill break the lab.

power_off/power_on (a power cut, a boot), partition/heal (off the switch, carrier kept),
link_down/link_up (carrier loss), loss/clear_loss (random drops of IP frames on the
host's switch port: nftables in the switch namespace, read back from nft itself, no
state file). Reading the lab's state is not here: see engine.status and the facts package.
"""
from __future__ import annotations

import json

from ..core.errors import InputError
from ..core.inventory import Inventory
from . import containers, network
from .image import image_path
from .names import bridge_name, host_port, lab_name, require_lab, switch_ns
from .procs import kill, run, wait_gone

LossRules = dict[str, tuple[int, str]]  # switch port -> (percent, direction)
DIRECTIONS = ("both", "in", "out")


# ------------------------------------------------------------------ power
def power_off(inv: Inventory, host: str) -> None:
    """A power cut: SIGKILL the container's init (every process in it dies with it)."""
    require_lab(inv)
    inv.host(host)
    init = containers.init_pid(inv, host)
    if init is None:
        return
    kill([init])
    wait_gone([init], 10)
    containers.stop_host(inv, host)  # stragglers and the exiting nspawn


def power_on(inv: Inventory, host: str, timeout: float = 60) -> None:
    """Boot the host again on the same overlay and wait until SSH answers."""
    require_lab(inv)
    h = inv.host(host)
    containers.ensure_host_net(inv, h)
    containers.ensure_overlay(inv, h, image_path(inv))
    containers.ensure_started(inv, h)
    containers.wait_ssh(inv, host, timeout)


# ------------------------------------------------------------------ the switch port
def _port_set(inv: Inventory, host: str, *args: str) -> None:
    run(["ip", "-n", switch_ns(lab_name(inv)), "link", "set", host_port(inv, host), *args])


def partition(inv: Inventory, host: str) -> None:
    """Detach the host's port from the switch; its own link keeps carrier."""
    require_lab(inv)
    _port_set(inv, host, "nomaster")


def heal(inv: Inventory, host: str) -> None:
    require_lab(inv)
    _port_set(inv, host, "master", bridge_name(lab_name(inv)))


def link_down(inv: Inventory, host: str) -> None:
    """Carrier loss: the switch side goes down, the host sees NO-CARRIER on host0."""
    require_lab(inv)
    _port_set(inv, host, "down")


def link_up(inv: Inventory, host: str) -> None:
    require_lab(inv)
    _port_set(inv, host, "up")


def restore_port(inv: Inventory, host: str) -> bool:
    """Undo partition / link down on the host's switch port; True when it changed."""
    info = network.link_info(host_port(inv, host), switch_ns(lab_name(inv))) or {}
    changed = False
    if info.get("master") != bridge_name(lab_name(inv)):
        heal(inv, host)
        changed = True
    if "UP" not in info.get("flags", []):
        link_up(inv, host)
        changed = True
    return changed


# ------------------------------------------------------------------ packet loss
def nft_table(name: str) -> str:
    return f"{name}_lab"


def render_nft(table: str, rules: LossRules) -> str:
    """nftables script for the switch: port -> (percent, direction) random drops.

    direction: "in" (frames towards the host), "out" (from the host) or "both".
    Only IP frames are dropped (ARP passes), so the loss is in the traffic itself.
    """
    body = [f"table bridge {table} {{", "\tchain forward {",
            "\t\ttype filter hook forward priority 0; policy accept;"]
    for port in sorted(rules):
        percent, direction = rules[port]
        if not 0 < percent <= 100:
            continue
        cond = "" if percent >= 100 else f" numgen random mod 100 < {int(percent)}"
        if direction in ("in", "both"):
            body.append(f'\t\toifname "{port}" ether type {{ ip, ip6 }}{cond} drop')
        if direction in ("out", "both"):
            body.append(f'\t\tiifname "{port}" ether type {{ ip, ip6 }}{cond} drop')
    body += ["\t}", "}"]
    # the table is declared empty first so `delete` below never fails, then rebuilt
    return (f"table bridge {table}\ndelete table bridge {table}\n" + "\n".join(body) + "\n")


def parse_loss(nft_json: str) -> LossRules:
    """The loss rules in force, from `nft -j list table bridge <table>` (pure)."""
    sides: dict[str, dict[str, int]] = {}
    for item in json.loads(nft_json or "{}").get("nftables", []):
        port, side, percent = "", "", 100
        for expr in item.get("rule", {}).get("expr", []):
            match = expr.get("match") or {}
            left = match.get("left") or {}
            key = left.get("meta", {}).get("key") if isinstance(left, dict) else None
            if key in ("iifname", "oifname"):
                port, side = str(match["right"]), "out" if key == "iifname" else "in"
            elif isinstance(left, dict) and "numgen" in left:
                percent = int(match["right"])
        if port:
            sides.setdefault(port, {})[side] = percent
    return {port: (max(d.values()), "both" if len(d) == 2 else next(iter(d)))
            for port, d in sides.items()}


def _apply_loss(inv: Inventory, rules: LossRules) -> None:
    name = lab_name(inv)
    run(["ip", "netns", "exec", switch_ns(name), "nft", "-f", "-"],
        input=render_nft(nft_table(name), rules))


def _loss_rules(inv: Inventory) -> LossRules:
    """The rules the switch's nftables holds (none when the table does not exist)."""
    name = lab_name(inv)
    res = run(["ip", "netns", "exec", switch_ns(name), "nft", "-j", "list", "table",
               "bridge", nft_table(name)], check=False, timeout=30)
    return parse_loss(res.stdout) if res.returncode == 0 else {}


def loss(inv: Inventory, host: str, percent: int, direction: str = "both") -> None:
    """Drop `percent` % of IP frames to ("in"), from ("out") or both ways of the host."""
    require_lab(inv)
    if direction not in DIRECTIONS:
        raise InputError(f"loss direction '{direction}': use both, in or out")
    if not 0 <= percent <= 100:
        raise InputError(f"loss percent {percent}: use 0-100")
    rules = _loss_rules(inv)
    rules[host_port(inv, host)] = (int(percent), direction)
    _apply_loss(inv, rules)


def clear_loss(inv: Inventory, host: str) -> None:
    require_lab(inv)
    rules = _loss_rules(inv)
    if rules.pop(host_port(inv, host), None) is not None or not rules:
        _apply_loss(inv, rules)


def clear_all_loss(inv: Inventory) -> bool:
    if not _loss_rules(inv):
        return False
    _apply_loss(inv, {})
    return True
