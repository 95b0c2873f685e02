"""The guide's steps 3 and 4 as stages `cluster.deploy` and the `k3s.*` tasks share:
servers (the first alone, then the others with its token), agents (through the API VIP),
and a readiness check of the whole tier.
"""
from __future__ import annotations

from typing import ContextManager

from fabric import Connection

from ..core.cli import say
from ..core.errors import StepFailed
from ..core.inventory import Host, Inventory
from ..core.run import CHANGED, Run
from ..core.secrets import get_secret
from ..db.tls import ca_pem_text
from ..facts import k3s as facts
from . import bootstrap
from .config import Role, agent_env, node_spec, server_env
from .handover import Kind, on_server, token_for
from .nodes import READY_POLL, READY_TIMEOUT, ensure_node, resolve_hosts
from .token import Token


def first_server(inv: Inventory) -> Host:
    return resolve_hosts(inv, Role.SERVER, [])[0]


def api_session(r: Run, host: Host) -> ContextManager[Connection]:
    """`with api_session(r, server) as api:` a connection to a server for this thread alone
    (kubectl runs in parallel), lent by the invocation's pool and reused by the next one."""
    return r.lease(host)


def known_tokens(r: Run) -> list[tuple[str, Token]]:
    """(server, token) of every server with a token file: to name the datastore's holder."""
    out = []
    for h in resolve_hosts(r.inv, Role.SERVER, []):
        try:
            tok = on_server(r.conn(h), Kind.SERVER)
        except Exception:  # an unreachable server only leaves the holder unnamed
            continue
        if tok is not None:
            out.append((h.name, tok))
    return out


def check_datastore(r: Run, first: Host, token: Token, db_password: str) -> None:
    """Refused when the datastore holds another token's bootstrap data. A dry run on a
    fresh cluster (no datastore VIP yet) only says so: the real run checks."""
    try:
        keys = bootstrap.read_keys(r.conn(first), r.inv, db_password)
    except StepFailed as e:
        if not r.dry:
            raise
        say(f"  datastore: not readable yet (dry run; the real run checks it first): {e}")
        return
    verdict = bootstrap.judge(keys, token, known_tokens(r))
    bootstrap.refuse_other(verdict, token, first.name, r.inv)
    say(f"  datastore: {verdict.held.value}")


def servers_stage(r: Run, names: list[str] | None = None,
                  timeout: float = READY_TIMEOUT) -> None:
    """Install/join the servers: the first alone, then the others (in parallel)."""
    inv = r.inv
    targets = resolve_hosts(inv, Role.SERVER, names or [])
    first = first_server(inv)
    first_conn = r.conn(first)
    db_password = get_secret("k3s_db_password", inv, yes=r.yes, confirm_new=False)
    token = token_for(inv, first_conn, Kind.SERVER, yes=r.yes)
    agent_token = token_for(inv, first_conn, Kind.AGENT, yes=r.yes) \
        if inv.cluster.get("agent_token", False) else None
    env = server_env(inv, db_password, token, agent_token)
    check_datastore(r, first, token, db_password)  # before anything starts

    def one(conn: Connection, h: Host) -> None:  # readiness as the first server's API sees it
        with api_session(r, first) as api:
            ensure_node(r, conn, node_spec(inv, h, Role.SERVER, env, ca_pem_text(inv)), api,
                        timeout=timeout)

    if first in targets:
        r.each([first], one)
    rest = [h for h in targets if h != first]
    if rest:
        r.each(rest, one)


def agents_stage(r: Run, names: list[str] | None = None,
                 timeout: float = READY_TIMEOUT) -> None:
    """Join the agents through the API VIP with the server token (or the agent token)."""
    inv = r.inv
    targets = resolve_hosts(inv, Role.AGENT, names or [])
    first = first_server(inv)
    kind = Kind.AGENT if inv.cluster.get("agent_token", False) else Kind.SERVER
    if on_server(r.conn(first), kind) is None:
        if r.dry:  # cluster.deploy --dry on a fresh cluster: the servers are only planned
            for h in targets:
                r.record(h, "k3s-agent join", CHANGED, "dry run: after the servers")
            return
        raise StepFailed(f"{first.name} has no {kind.path}: the servers are not installed "
                         "yet. Fix: fab k3s.install-server first")
    token = token_for(inv, r.conn(first), kind, yes=r.yes)
    env = agent_env(inv, token)

    def listed() -> list[facts.NodeInfo]:
        with api_session(r, first) as api:
            return facts.nodes(api)
    shared = facts.SharedNodes(listed, ttl=READY_POLL)

    def one(conn: Connection, h: Host) -> None:
        # lookups and waits go through `shared` (one lease); the first server's own
        # connection only acts, seldom: [lab] eight leases opened up front cost 0.3 s
        ensure_node(r, conn, node_spec(inv, h, Role.AGENT, env), r.conn(first),
                    timeout=timeout, shared=shared)

    r.each(targets, one)


def problems(inv: Inventory, nodes: list[facts.NodeInfo]) -> list[str]:
    """Pure: inventory k3s hosts missing from the API or not Ready."""
    by_name = {n.name: n for n in nodes}
    out = []
    for h in inv.with_role("k3s-server") + inv.with_role("k3s-agent"):
        n = by_name.get(h.name)
        if n is None:
            out.append(f"{h.name}: not a node of the cluster")
        elif not n.is_ready:
            out.append(f"{h.name}: Ready={n.ready}")
    return out


def check_ready(r: Run) -> list[facts.NodeInfo]:
    """Every inventory k3s host is a Ready node (asked through the first server's API)."""
    nodes = facts.nodes(r.conn(first_server(r.inv)))
    bad = problems(r.inv, nodes)
    if bad:
        raise StepFailed("k3s nodes not ready: " + "; ".join(bad))
    return nodes
