"""A lab name and subnet of this test run's own, for each lab test module and benchmark.

Fixed names made a benchmark's `lab.down` sweep a running test's lab (and two runs of one
module stop each other's). `claim(tag, preferred)` gives `tag` + three random characters
(a [lab] name is at most five), checked against the labs running on this machine, and the
preferred /24 when no route on this machine and no earlier claim of this process overlaps
it, else the next free one. A killed run leaves its lab behind under its own name: the
next run picks other names and subnets; `fab lab.down` with the left inventory (its path
is in /run/k3s-ha-labs/NAME.owner) removes it.
"""
from __future__ import annotations

import random
import string

from tasks.lab import network

_CLAIMED: set[str] = set()  # subnets given out by this process (their labs may not be up yet)
_ALPHABET = string.ascii_lowercase + string.digits


def _running() -> set[str]:
    return {ns[:-len("-sw")] for ns in network.list_netns() if ns.endswith("-sw")}


def fresh_name(tag: str) -> str:
    """A lab name no running lab has (for a lab that must clash on its subnet)."""
    return _name(tag, _running())


def _name(tag: str, running: set[str]) -> str:
    for _ in range(100):
        name = tag + "".join(random.choices(_ALPHABET, k=5 - len(tag)))
        if name not in running:
            return name
    raise RuntimeError(f"no free lab name with prefix {tag}")


SHIPPED = "10.77.0"  # the shipped hosts.toml's lab (make demo): never taken by a test


def _subnets(preferred: str):
    """The preferred /24, then the ones after it (10.77.50 -> 10.77.51 ... 10.254.254)."""
    a, b, c = (int(x) for x in preferred.split("."))
    for x in range(b, 255):
        for y in range(c if x == b else 0, 255):
            if f"{a}.{x}.{y}" != SHIPPED:
                yield f"{a}.{x}.{y}"


def claim(tag: str, preferred: str) -> tuple[str, str]:
    """(name, first three numbers of a free /24), e.g. ("k3q7z", "10.77.30")."""
    assert tag[:1].isalpha() and len(tag) <= 3, tag
    running = _running()
    routes = network.machine_routes()
    for net in _subnets(preferred):
        if net in _CLAIMED or network.route_overlap(f"{net}.0/24", routes, "") is not None:
            continue
        _CLAIMED.add(net)
        return _name(tag, running), net
    raise RuntimeError(f"no free /24 after {preferred}")
