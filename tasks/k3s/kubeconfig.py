"""The admin kubeconfig made usable from outside (pure rewrite + a private local write).

k3s writes /etc/rancher/k3s/k3s.yaml pointing at https://127.0.0.1:6443 with cluster, user
and context all named `default`: we point it at the API VIP and give the three a name that
merges with other kubeconfigs (`k3s-ha-<lab or inventory name>`).
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Callable

from ..core.errors import StepFailed
from ..core.inventory import Inventory

REMOTE_PATH = "/etc/rancher/k3s/k3s.yaml"
_SERVER = re.compile(r"^(\s*server:\s*)\S+\s*$")
_NAMED = re.compile(r"^(\s*(?:-\s+)?(?:name|cluster|user|current-context):\s*)default\s*$")


def context_name(inv: Inventory) -> str:
    base = inv.lab.get("name") if inv.is_lab else inv.path.stem
    return f"k3s-ha-{base}"


def resolves(name: str) -> bool:
    """Whether this machine (where kubectl will run) resolves `name`."""
    try:
        return bool(socket.getaddrinfo(name, None))
    except (socket.gaierror, UnicodeError):
        return False


def operator_server(inv: Inventory, port: int,
                    resolve: Callable[[str], bool] = resolves) -> tuple[str, str]:
    """(URL, note) kubectl on this machine uses: the API VIP's name when it resolves here,
    else its address (also in the serving certificate's tls-san), with a note saying so."""
    vip = inv.vips["api"]
    if vip.name and resolve(inv.fqdn(vip.name)):
        return f"https://{inv.fqdn(vip.name)}:{port}", ""
    if not vip.name:
        return f"https://{vip.address}:{port}", ""
    return (f"https://{vip.address}:{port}",
            f"{inv.fqdn(vip.name)} does not resolve on this machine: the kubeconfig uses the "
            f"API VIP's address {vip.address} (also in the certificate). To use the name, add "
            f"'{vip.address} {inv.fqdn(vip.name)}' to /etc/hosts or DNS and fetch it again")


def default_output(inv: Inventory) -> Path:
    return inv.path.parent / f"{context_name(inv)}.kubeconfig"


def rewrite(text: str, server_url: str, name: str) -> str:
    """Pure: k3s.yaml with the server URL and the default names replaced."""
    out, servers, names = [], 0, 0
    for line in text.splitlines(keepends=True):
        end = "\n" if line.endswith("\n") else ""
        m = _SERVER.match(line)
        if m:
            line, servers = f"{m.group(1)}{server_url}{end}", servers + 1
        m = _NAMED.match(line)
        if m:
            line, names = f"{m.group(1)}{name}{end}", names + 1
        out.append(line)
    if servers != 1 or names < 4:
        raise StepFailed(f"{REMOTE_PATH} does not look like k3s's admin kubeconfig (found "
                         f"{servers} server line(s), {names} 'default' name(s)); nothing was "
                         "written. Fix: check the file on the server")
    return "".join(out)


def write_private(path: Path, text: str) -> None:
    """Write mode 0600 from creation on (it holds the admin client key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
