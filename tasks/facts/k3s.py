"""k3s as k3s itself reports it (read-only): nodes through the API, /ping and /readyz, the
installed version, the service's state and the problems its journal names.

Parsers are pure (text in, typed values out); probes run read-only commands on a host
(also in dry run). Used by `k3s.status`, the deploy waits and the failover drill.
"""
from __future__ import annotations

import json
import re
import shlex
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Callable

from fabric import Connection

from ..core import lookahead
from ..core.errors import StepFailed
from ..core.ssh import host_name, sh

ROLE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master",
               "node-role.kubernetes.io/etcd")
KUBECTL = "k3s kubectl"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    roles: tuple[str, ...]
    ready: str  # "True" | "False" | "Unknown"
    version: str
    taints: tuple[str, ...]
    internal_ip: str
    created: str  # RFC 3339 as the API gives it

    @property
    def is_ready(self) -> bool:
        return self.ready == "True"

    @property
    def is_server(self) -> bool:
        return "control-plane" in self.roles or "master" in self.roles


def _roles(labels: dict[str, str]) -> tuple[str, ...]:
    pre = "node-role.kubernetes.io/"
    return tuple(sorted(k[len(pre):] for k, v in labels.items()
                        if k.startswith(pre) and v in ("true", "")))


def _taint(t: dict[str, str]) -> str:
    value = f"={t['value']}" if t.get("value") else ""
    return f"{t.get('key', '')}{value}:{t.get('effect', '')}"


def parse_nodes(text: str) -> list[NodeInfo]:
    """`kubectl get nodes -o json` (a List or a single Node) as NodeInfo, sorted by name."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ValueError(f"not JSON from kubectl get nodes: {e}") from None
    items = doc.get("items", []) if doc.get("kind", "List").endswith("List") else [doc]
    out = []
    for it in items:
        meta, spec, status = it.get("metadata", {}), it.get("spec", {}), it.get("status", {})
        ready = next((c.get("status", "Unknown") for c in status.get("conditions", [])
                      if c.get("type") == "Ready"), "Unknown")
        ip = next((a.get("address", "") for a in status.get("addresses", [])
                   if a.get("type") == "InternalIP"), "")
        out.append(NodeInfo(
            name=meta.get("name", ""), roles=_roles(meta.get("labels", {}) or {}),
            ready=ready, version=status.get("nodeInfo", {}).get("kubeletVersion", ""),
            taints=tuple(_taint(t) for t in spec.get("taints", []) or []),
            internal_ip=ip, created=meta.get("creationTimestamp", "")))
    return sorted(out, key=lambda n: n.name)


def age(created: str, now: datetime) -> str:
    """kubectl's AGE column: 45s, 12m, 5h, 3d."""
    try:
        t = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "?"
    s = max(0, int((now - t).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= 2 * size:
            return f"{s // size}{unit}"
    return f"{s}s"


def parse_version(text: str) -> str:
    """`k3s --version` -> 'v1.31.5+k3s1' ('' when it is not k3s's output)."""
    m = re.search(r"k3s version (v\S+)", text)
    return m.group(1) if m else ""


def parse_ping(status: str, body: str) -> bool:
    """/ping answers 200 "pong" (anonymous; it does not check the apiserver)."""
    return status.strip() == "200" and body.strip() == "pong"


def parse_readyz(text: str) -> bool:
    """`kubectl get --raw /readyz` prints "ok" when the apiserver is ready."""
    return text.strip() == "ok"


class Problem(Enum):
    """What a k3s journal says went wrong, when it is one we know how to fix."""

    NODE_PASSWORD = "Node password rejected"
    DIFFERENT_TOKEN = "bootstrap data already found and encrypted with different token"
    CA_HASH = "token CA hash does not match the Cluster CA certificate hash"
    DATASTORE = "datastore"


_DATASTORE = re.compile(r"(starting kubernetes: preparing server: .*(dial tcp|connect))|"
                        r"(Error 1045)|(failed to create datastore)", re.I)


def parse_problems(journal: str) -> list[Problem]:
    """Known problems named in a k3s/k3s-agent journal, most recent last, no duplicates."""
    found: dict[Problem, int] = {}
    for n, line in enumerate(journal.splitlines()):
        for p in (Problem.NODE_PASSWORD, Problem.DIFFERENT_TOKEN, Problem.CA_HASH):
            if p.value in line:
                found[p] = n
        if _DATASTORE.search(line):
            found[Problem.DATASTORE] = n
    return sorted(found, key=lambda p: found[p])


# ------------------------------------------------------------------ probes (read-only)
def nodes(conn: Connection, timeout: int = 20) -> list[NodeInfo]:
    """The nodes as the API of the server behind `conn` lists them."""
    res = sh(conn, f"{KUBECTL} get nodes -o json --request-timeout={timeout}s", warn=True,
             write=False, timeout=timeout + 5)
    if res.exited != 0:
        raise StepFailed(f"{host_name(conn)}: the k3s API did not list the nodes (exit "
                         f"{res.exited}): {(res.stderr or res.stdout).strip()[-300:]}")
    return parse_nodes(res.stdout)


def node(conn: Connection, name: str) -> NodeInfo | None:
    return next((n for n in nodes(conn) if n.name == name), None)


class SharedNodes:
    """The node list for many parallel waiters (joining agents): one `kubectl get nodes`
    at a time and at most every `ttl` s, its answer (or its error) shared. [lab] eight
    agents polling each on their own ran eight kubectl at once on the first server."""

    def __init__(self, fetch: Callable[[], list[NodeInfo]], ttl: float = 1.0) -> None:
        self.fetch, self.ttl = fetch, ttl
        self.lock = threading.Lock()
        self.at = float("-inf")
        self.value: list[NodeInfo] = []
        self.error: StepFailed | None = None

    def node(self, name: str) -> NodeInfo | None:
        with self.lock:
            if time.monotonic() - self.at >= self.ttl:
                try:
                    self.value, self.error = self.fetch(), None
                except StepFailed as e:
                    self.value, self.error = [], e
                self.at = time.monotonic()
            if self.error is not None:
                raise self.error
            return next((n for n in self.value if n.name == name), None)


def ping(conn: Connection, address: str, port: int = 6443) -> bool:
    """/ping of the API at address:port, asked from the host behind `conn`."""
    url = shlex.quote(f"https://{address}:{port}/ping")
    res = sh(conn, f"curl -sk -m 5 -o /dev/stdout -w '\\n%{{http_code}}' {url}", warn=True,
             write=False)
    body, _, status = res.stdout.rpartition("\n")
    return res.exited == 0 and parse_ping(status, body)


def readyz(conn: Connection) -> bool:
    """/readyz of the local API server, with the admin kubeconfig (it needs credentials)."""
    res = sh(conn, f"{KUBECTL} get --raw /readyz --request-timeout=5s", warn=True, write=False,
             timeout=15)
    return res.exited == 0 and parse_readyz(res.stdout)


def installed_version(conn: Connection) -> str:
    res = sh(conn, "test -x /usr/local/bin/k3s && /usr/local/bin/k3s --version", warn=True,
             write=False, timeout=30)
    return parse_version(res.stdout) if res.exited == 0 else ""


def unit_active(conn: Connection, unit: str) -> str:
    """systemctl is-active: active, activating, inactive, failed ... ('' when unknown)."""
    hit, state = lookahead.seen(conn, "units", unit)
    if hit:
        return state[1]  # type: ignore[no-any-return]
    res = sh(conn, f"systemctl is-active {shlex.quote(unit)}", warn=True, write=False)
    return res.stdout.strip()


def _journal_cmd(unit: str, lines: int, since: str) -> str:
    extra = f" --since {shlex.quote(since)}" if since else ""
    return f"journalctl -u {shlex.quote(unit)} -n {lines} --no-pager -o cat{extra}"


def journal(conn: Connection, unit: str, lines: int = 200, since: str = "") -> str:
    return sh(conn, _journal_cmd(unit, lines, since), warn=True, write=False).stdout


def split_active_journal(out: str) -> tuple[str, str]:
    """Pure: `systemctl is-active` (its one line) then the journal -> (state, journal)."""
    first, _, rest = out.partition("\n")
    return first.strip(), rest


def unit_and_journal(conn: Connection, unit: str, lines: int = 200,
                     since: str = "") -> tuple[str, str]:
    """unit_active and journal in one round trip (a wait polls both, per host)."""
    res = sh(conn, f"systemctl is-active {shlex.quote(unit)}; {_journal_cmd(unit, lines, since)}",
             warn=True, write=False)
    return split_active_journal(res.stdout)
