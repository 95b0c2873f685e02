"""Namespace `k3s`: the guide's steps 3-4. Servers on the MySQL datastore (first, then the
others with its token), agents through the API VIP, the node list, the kubeconfig, and
taking nodes out.
"""
from __future__ import annotations

from datetime import datetime, timezone

from fabric import Connection
from invoke import Context

from ..core.cli import H_DRY, H_YES, k3s_task, say, table
from ..core.errors import StepFailed
from ..core.inventory import Host
from ..core.run import CHANGED, OK, run_session
from ..core.ssh import read_file
from ..facts import k3s as facts
from . import kubeconfig as kc
from .nodes import READY_TIMEOUT, remove, resolve_k3s_hosts, role_of
from .install import uninstall as run_uninstall
from .stages import agents_stage, api_session, first_server, problems, servers_stage

H_HOST = "inventory name of a host (repeatable); without it: every host of the role"
H_TIMEOUT = f"seconds to wait for each node to be Ready (default {READY_TIMEOUT})"
HOST_TASK = {"iterable": ["host"], "auto_shortflags": False}


@k3s_task(help={"dry": H_DRY, "yes": H_YES, "timeout": H_TIMEOUT})
def install_server(c: Context, dry: bool = False, yes: bool = False,
                   timeout: int = READY_TIMEOUT) -> None:
    """Install every k3s server: the first, then the others with its token."""
    with run_session(c, "k3s.install-server", dry=dry, yes=yes) as r:
        servers_stage(r, None, timeout)


@k3s_task(help={"host": H_HOST, "dry": H_DRY, "yes": H_YES, "timeout": H_TIMEOUT},
          **HOST_TASK)
def join_server(c: Context, host: list[str] | None = None, dry: bool = False,
                yes: bool = False, timeout: int = READY_TIMEOUT) -> None:
    """Join server(s) to the cluster (the datastore and the first server's token)."""
    with run_session(c, "k3s.join-server", dry=dry, yes=yes) as r:
        servers_stage(r, host or [], timeout)


@k3s_task(help={"host": H_HOST, "dry": H_DRY, "yes": H_YES, "timeout": H_TIMEOUT},
          **HOST_TASK)
def join_agent(c: Context, host: list[str] | None = None, dry: bool = False,
               yes: bool = False, timeout: int = READY_TIMEOUT) -> None:
    """Join agent(s) through the API VIP."""
    with run_session(c, "k3s.join-agent", dry=dry, yes=yes) as r:
        agents_stage(r, host or [], timeout)


@k3s_task(help={"yes": H_YES})
def status(c: Context, yes: bool = False) -> None:
    """Nodes as the API lists them: name, roles, Ready, version, taints, internal IP, age."""
    with run_session(c, "k3s.status", yes=yes) as r:
        nodes = facts.nodes(r.conn(first_server(r.inv)))
        now = datetime.now(timezone.utc)
        rows = [{"node": n.name, "roles": ",".join(n.roles) or "<none>", "Ready": n.ready,
                 "version": n.version, "taints": ",".join(n.taints) or "-",
                 "internal IP": n.internal_ip, "age": facts.age(n.created, now)} for n in nodes]
        say("\n" + table(rows, ["node", "roles", "Ready", "version", "taints", "internal IP",
                                "age"]))
        for p in problems(r.inv, nodes):
            say(f"  {p}")


@k3s_task(help={"output": "where to save it (default: <inventory folder>/k3s-ha-<name>"
                          ".kubeconfig)", "yes": H_YES})
def kubeconfig(c: Context, output: str = "", yes: bool = False) -> None:
    """Fetch the admin kubeconfig, point it at the API VIP, save it mode 0600."""
    with run_session(c, "k3s.kubeconfig", yes=yes) as r:
        first = first_server(r.inv)
        data = read_file(r.conn(first), kc.REMOTE_PATH)
        if data is None:
            raise StepFailed(f"{first.name}: no {kc.REMOTE_PATH}. Fix: fab k3s.install-server")
        name = kc.context_name(r.inv)
        url, note = kc.operator_server(r.inv, r.inv.balancers["api_port"])
        text = kc.rewrite(data.decode(), url, name)
        path = r.inv.resolve_path(output) if output else kc.default_output(r.inv)
        kc.write_private(path, text)
        if note:
            say(f"  note: {note}")
        say(f"  saved {path} (mode 0600), context {name}, server {url}\n"
            f"  use: KUBECONFIG={path} kubectl get nodes")


@k3s_task(help={"host": "inventory name of the node to remove (repeatable, required)",
                "yes": H_YES}, **HOST_TASK)
def remove_node(c: Context, host: list[str] | None = None, yes: bool = False) -> None:
    """Drain (agents), delete the node from the cluster, uninstall k3s on the host."""
    with run_session(c, "k3s.remove-node", yes=yes) as r:
        hosts = resolve_k3s_hosts(r.inv, host or [])
        first = first_server(r.inv)

        def one(conn: Connection, h: Host) -> None:
            with api_session(r, first) as api:
                remove(r, conn, h, role_of(h), api)

        r.each(hosts, one)


@k3s_task(help={"host": "inventory name of the host (repeatable, required)", "yes": H_YES},
          **HOST_TASK)
def uninstall(c: Context, host: list[str] | None = None, yes: bool = False) -> None:
    """Run k3s's uninstall script on the host (the node object stays: see remove-node)."""
    with run_session(c, "k3s.uninstall", yes=yes) as r:
        r.each(resolve_k3s_hosts(r.inv, host or []), lambda conn, h: r.record(
            h, "uninstall", CHANGED if run_uninstall(conn, role_of(h)) else OK))
