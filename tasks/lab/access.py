"""How the operator gets into the lab: the lab SSH key, the hosts' keys in known_hosts
(strict checking, never auto-accepted), the ssh command line, and the lab's secrets file."""
from __future__ import annotations

import os
import secrets as pysecrets
from pathlib import Path
from typing import Iterable

from ..core.errors import Refused
from ..core.inventory import Inventory
from ..core.ssh import lab_route_ok
from .names import HOST_KEY_TYPES, host_dir, lab_name, op_dev, require_lab
from .procs import run

SECRET_KEYS = ("db_admin_password", "replication_password", "k3s_db_password", "k3s_token")


def check_route(inv: Inventory, address: str) -> None:
    """Refuse to send anything to `address` unless it goes out via <name>-op."""
    if not lab_route_ok(inv, address):
        dev = op_dev(lab_name(inv))
        raise Refused(f"{address} is not routed via {dev} (lab {lab_name(inv)} down?); "
                      "refusing to send lab traffic elsewhere. Fix: fab lab.up")


def ssh_argv(inv: Inventory, host: str, command: list[str] | None = None) -> list[str]:
    """An ssh command line for `host` with the lab key and strict host-key checking."""
    require_lab(inv)
    h = inv.host(host)
    check_route(inv, h.address)
    key = inv.resolve_path(h.ssh_key or inv.ssh["key"])
    return (["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={known_hosts_path(inv)}",
             "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
             "-o", f"ConnectTimeout={inv.ssh['connect_timeout']}",
             "-p", str(h.ssh_port), f"{h.ssh_user}@{h.address}"] + (command or []))


def ensure_ssh_key(inv: Inventory) -> Path:
    key = inv.resolve_path(inv.ssh["key"] or ".lab/ssh/id_ed25519")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
             f"k3s-ha lab {lab_name(inv)}", "-f", str(key)])
    return key


def render_secrets(values: dict[str, str]) -> str:
    return "".join(f'{k} = "{v}"\n' for k, v in values.items())


def ensure_secrets(inv: Inventory) -> bool:
    """Create the secrets file with random values (mode 0600) when missing."""
    if not inv.secrets.get("file"):
        return False
    path = inv.resolve_path(inv.secrets["file"])
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    values = {k: pysecrets.token_urlsafe(24) for k in SECRET_KEYS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render_secrets(values))
    return True


def known_hosts_path(inv: Inventory) -> Path:
    return inv.resolve_path(inv.ssh["known_hosts"])


def known_hosts_lines(address: str, port: int, pubkeys: Iterable[str]) -> list[str]:
    """known_hosts lines for one host from its `TYPE BASE64 [comment]` public keys."""
    who = address if port == 22 else f"[{address}]:{port}"
    out = []
    for pk in pubkeys:
        parts = pk.split()
        if len(parts) >= 2:
            out.append(f"{who} {parts[0]} {parts[1]}")
    return out


def merge_known_hosts(existing: str, addresses: Iterable[str], new_lines: Iterable[str]) -> str:
    """Replace every line of `addresses` in a known_hosts text by `new_lines`."""
    drop = set(addresses) | {f"[{a}]" for a in addresses}
    kept = []
    for line in existing.splitlines():
        first = line.split()[0] if line.split() else ""
        names = {n.split("]:")[0] + ("]" if "]:" in n else "") for n in first.split(",")}
        if line.strip() and not line.startswith("#") and names & drop:
            continue
        kept.append(line)
    out = [ln for ln in kept if ln.strip()] + list(new_lines)
    return "\n".join(out) + ("\n" if out else "")


def collect_host_keys(inv: Inventory) -> None:
    """Put every host's public keys (read from its overlay) into known_hosts."""
    lines: list[str] = []
    for h in inv.hosts.values():
        root = host_dir(inv, h.name) / "upper"
        pubs = [(root / "etc" / "ssh" / f"ssh_host_{t}_key.pub").read_text()
                for t in HOST_KEY_TYPES]
        lines += known_hosts_lines(h.address, h.ssh_port, pubs)
    path = known_hosts_path(inv)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = path.read_text() if path.exists() else ""
    new = merge_known_hosts(old, [h.address for h in inv.hosts.values()], lines)
    if new != old:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(new)
        tmp.replace(path)


def forget_host_keys(inv: Inventory) -> None:
    path = known_hosts_path(inv)
    if not path.exists():
        return
    new = merge_known_hosts(path.read_text(), [h.address for h in inv.hosts.values()], [])
    if new:
        path.write_text(new)
    else:
        path.unlink()
