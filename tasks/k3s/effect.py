"""Whether a running k3s already runs with what config.yaml would give it.

A node built by hand (the guide's `install.sh` with `--tls-san`, `--node-taint` flags) has
no config.yaml: writing ours changes the file, not what k3s does. Restarting it then is
needless. Each setting is read from k3s itself: the node object in the API (name, Ready,
InternalIP, taints), the certificate the API serves (its SANs), the kubeconfig k3s wrote
(its mode). A setting not checked here counts as not in effect (restart: fail closed).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from fabric import Connection

from ..core.ssh import sh
from ..facts import k3s as facts

SAN_PROBE = ("openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | "
             "openssl x509 -noout -ext subjectAltName")
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"

Config = dict[str, "str | list[str]"]


@dataclass(frozen=True)
class Running:
    """What the running k3s shows of its settings."""
    node: facts.NodeInfo | None     # its node object, by the inventory's name
    sans: frozenset[str]            # names/addresses its API certificate is valid for
    kubeconfig_mode: str            # e.g. "600", "" when unknown


def parse_sans(text: str) -> frozenset[str]:
    """`openssl x509 -ext subjectAltName` -> {name or address}."""
    return frozenset(m.group(2) for m in re.finditer(r"(DNS|IP Address):([^,\s]+)", text))


def not_in_effect(cfg: Config, run: Running) -> list[str]:
    """The config.yaml keys whose value the running k3s does not have (pure)."""
    n = run.node
    checks = {
        "node-name": lambda v: n is not None and n.is_ready,
        "node-ip": lambda v: n is not None and n.internal_ip == v,
        "node-taint": lambda v: n is not None and set(v) <= set(n.taints),
        "tls-san": lambda v: set(v) <= run.sans,
        "write-kubeconfig-mode": lambda v: run.kubeconfig_mode == str(v).lstrip("0"),
    }
    return [k for k, v in cfg.items() if not checks.get(k, lambda _: False)(v)]


def observe(conn: Connection, api: Connection, name: str, cfg: Config, port: int) -> Running:
    """Read what `not_in_effect` compares (only what cfg carries; read-only)."""
    try:
        node = facts.node(api, name)
    except Exception:  # the API not answering: nothing is known to be in effect
        node = None
    sans: frozenset[str] = frozenset()
    if "tls-san" in cfg:
        sans = parse_sans(sh(conn, SAN_PROBE.format(port=port), warn=True, write=False).stdout)
    mode = ""
    if "write-kubeconfig-mode" in cfg:
        res = sh(conn, f"stat -c %a {KUBECONFIG}", warn=True, write=False)
        mode = res.stdout.strip() if res.exited == 0 else ""
    return Running(node, sans, mode)
