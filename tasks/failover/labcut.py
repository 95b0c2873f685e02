"""The lab's replication-link cut: the two databases cannot reach each other, every other
host still reaches both. The lab's fault API has no such fault, so this small helper adds
one the same way `faults.loss` works: an nftables bridge table in the lab's switch
namespace (its own table, `<lab>_drill`, so the loss rules are untouched), read back from
nft itself.
"""
from __future__ import annotations

from ..core.inventory import Inventory
from ..lab.names import lab_name, require_lab, switch_ns
from ..lab.procs import run


def table(inv: Inventory) -> str:
    return f"{lab_name(inv)}_drill"


def render_cut(name: str, a: str, b: str) -> str:
    """nftables script dropping IPv4 between addresses a and b both ways (pure)."""
    return (f"table bridge {name}\ndelete table bridge {name}\n"
            f"table bridge {name} {{\n\tchain forward {{\n"
            "\t\ttype filter hook forward priority -1; policy accept;\n"
            f"\t\tip saddr {a} ip daddr {b} drop\n\t\tip saddr {b} ip daddr {a} drop\n"
            "\t}\n}\n")


def _nft(inv: Inventory, *args: str, input: str | None = None, check: bool = True) -> str:
    return run(["ip", "netns", "exec", switch_ns(lab_name(inv)), "nft", *args],
               input=input, check=check, timeout=30).stdout


def cut(inv: Inventory, a: str, b: str) -> None:
    require_lab(inv)
    _nft(inv, "-f", "-", input=render_cut(table(inv), a, b))


def mend(inv: Inventory) -> None:
    require_lab(inv)
    _nft(inv, "delete", "table", "bridge", table(inv), check=False)


def is_cut(inv: Inventory) -> bool:
    return "drop" in _nft(inv, "list", "table", "bridge", table(inv), check=False)
