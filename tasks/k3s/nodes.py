"""One k3s node brought to its desired state, idempotently, and taken out again.

Read (version, unit, env file, service, Ready in the API), compare, act on the difference:
a joined, Ready node with nothing changed is left alone (no installer, no restart); a
changed config.yaml restarts it; a changed binary or environment runs the installer first.
The unit is started with --no-block and readiness is awaited with our own timeout (k3s's
Type=notify unit with TimeoutStartSec=0 can block `systemctl start` forever).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Callable

from fabric import Connection

from ..core.cli import say
from ..core.errors import InputError, Refused, StepFailed
from ..core.inventory import K3S_API_PORT, Host, Inventory
from ..core.ops import ensure_dir, ensure_file, looked, path_stat
from ..core.run import CHANGED, OK, Run, poll
from ..core.secrets import confirm
from ..core.ssh import host_name, read_file, sh
from ..facts import k3s as facts
from . import effect
from .config import (CONFIG_DIR, CONFIG_PATH, DATASTORE_CA_PATH, NodeSpec, Role, node_config,
                     parse_env, reconcile_env, render_env)
from .install import binary_outdated, binary_reads, run_installer, uninstall

READY_TIMEOUT = 300
READY_POLL = 0.5  # s between looks at a starting node (unit + journal, then the API)
NODE_PASSWORD_FILE = "/etc/rancher/node/password"
FATAL = (facts.Problem.NODE_PASSWORD, facts.Problem.DIFFERENT_TOKEN, facts.Problem.CA_HASH)


def resolve_hosts(inv: Inventory, role: Role, names: list[str]) -> list[Host]:
    """--host NAME (repeatable) among the hosts of `role`; none given: all of them."""
    hosts = inv.with_role(role.inventory_role)
    if not hosts:
        raise InputError(f"no host has role {role.inventory_role} in {inv.path}. "
                         f"Fix: add roles = [\"{role.inventory_role}\"] to a host")
    known = [h.name for h in hosts]
    unknown = [n for n in dict.fromkeys(names) if n not in known]
    if unknown:
        raise InputError(f"--host {', '.join(unknown)}: not a {role.inventory_role} host of "
                         f"{inv.path}. Fix: use one of: {', '.join(known)}")
    return [h for h in hosts if not names or h.name in names]


def role_of(host: Host) -> Role:
    return Role.SERVER if host.has("k3s-server") else Role.AGENT


def resolve_k3s_hosts(inv: Inventory, names: list[str]) -> list[Host]:
    """--host NAME (repeatable, required) among the k3s servers and agents."""
    k3s = [h.name for h in inv.with_role("k3s-server") + inv.with_role("k3s-agent")]
    if not names:
        raise InputError(f"--host is required. Fix: name one of: {', '.join(k3s)}")
    bad = [n for n in dict.fromkeys(names) if n not in k3s]
    if bad:
        raise InputError(f"--host {', '.join(bad)}: not a k3s server or agent of {inv.path}. "
                         f"Fix: use one of: {', '.join(k3s)}")
    return [inv.host(n) for n in dict.fromkeys(names)]


@dataclass(frozen=True)
class Observed:
    unit: bool
    env: dict[str, str]
    active: str
    node_password: bool

    @property
    def running(self) -> bool:
        return self.active in ("active", "activating", "reloading")


def observe(conn: Connection, role: Role) -> Observed:
    unit = path_stat(conn, role.unit_path)
    env = parse_env((read_file(conn, role.env_path) or b"").decode())
    pw = path_stat(conn, NODE_PASSWORD_FILE)
    return Observed(unit is not None, env, facts.unit_active(conn, role.unit),
                    pw is not None and pw.size > 0)


def node_reads(inv: Inventory, spec: NodeSpec) -> dict[str, list[str]]:
    """Everything ensure_node reads on the host before acting, for one round trip."""
    role, binary = spec.role, binary_reads(inv)
    files = [role.env_path, CONFIG_PATH] + ([DATASTORE_CA_PATH] if spec.datastore_ca else [])
    return {"files": files, "units": [role.unit],
            "stats": [role.unit_path, NODE_PASSWORD_FILE, CONFIG_DIR, *binary["stats"]],
            "sums": binary.get("sums", [])}


def lookup(api: Connection, name: str,
           shared: facts.SharedNodes | None = None) -> facts.NodeInfo | None:
    """The node as the API lists it: through `shared` when parallel joins share one list."""
    return shared.node(name) if shared else facts.node(api, name)


def node_ready(api: Connection, name: str, shared: facts.SharedNodes | None = None) -> bool:
    try:
        n = lookup(api, name, shared)
    except StepFailed:
        return False
    return n is not None and n.is_ready


def node_listed(api: Connection, name: str, shared: facts.SharedNodes | None = None) -> bool:
    try:
        return lookup(api, name, shared) is not None
    except StepFailed:
        return False


def ensure_node(r: Run, conn: Connection, spec: NodeSpec, api: Connection, *,
                before_start: Callable[[], None] | None = None,
                timeout: float = READY_TIMEOUT,
                shared: facts.SharedNodes | None = None) -> bool:
    """Bring one node to `spec`; True when anything changed. shared: the node list the
    lookups and the wait for Ready read (parallel joins share one), else `api`'s own;
    `api` itself then only acts (forget a node, read a setting in effect)."""
    host, role = spec.host, spec.role
    with looked(conn, **node_reads(r.inv, spec)):
        obs = observe(conn, role)
        bin_changed = r.step(host, "k3s binary", lambda: binary_outdated(conn, r.inv))
        ensure_dir(conn, CONFIG_DIR)
        ca_changed = bool(spec.datastore_ca) and r.step(
            host, "datastore CA", lambda: ensure_file(conn, DATASTORE_CA_PATH,
                                                      spec.datastore_ca, mode="0644"))
        cfg_changed = r.step(host, "config.yaml", lambda: ensure_file(
            conn, CONFIG_PATH, spec.config_yaml, mode="0600")) or ca_changed
    env = reconcile_env(obs.env, spec.env)
    env_changed = obs.env != env
    changed = bin_changed or cfg_changed or env_changed or not obs.unit
    if not changed and obs.running and node_ready(api, host.name, shared):
        r.record(host, f"{role.unit} Ready", OK)
        return False
    if changed and obs.running and not (bin_changed or env_changed or not obs.unit) \
            and already_in_effect(r, conn, api, spec):
        r.record(host, f"{role.unit} kept running", OK, "config.yaml already in effect")
        return True
    if not obs.node_password and api is not conn and node_listed(api, host.name, shared):
        offer_forget(r, api, host, "a node of this name exists but this host has no "
                     f"{NODE_PASSWORD_FILE} (rebuilt?): k3s would reject its node password")
    if before_start is not None:
        before_start()
    if bin_changed or env_changed or not obs.unit:
        run_installer(conn, r.inv, role, env)
        r.record(host, "installer", CHANGED)
        # the installer rewrote the env file from its K3S_* variables: make sure it is ours
        if parse_env((read_file(conn, role.env_path) or b"").decode()) != env:
            ensure_file(conn, role.env_path, render_env(env), mode="0600", secret=True,
                        backup=False)
    if r.dry:
        r.record(host, f"{role.unit} start", CHANGED, "dry run: not started")
        return True
    since = start(conn, role, restart=obs.running and changed)
    wait_ready(r, conn, spec, api, since, timeout, shared=shared)
    return True


def already_in_effect(r: Run, conn: Connection, api: Connection, spec: NodeSpec) -> bool:
    """Only config.yaml changed, and the running k3s already has every setting it carries
    (a node built by hand with the same flags): no restart needed (tasks/k3s/effect.py)."""
    cfg = node_config(r.inv, spec.host, spec.role)
    missing = effect.not_in_effect(cfg, effect.observe(conn, api, spec.host.name, cfg,
                                                       K3S_API_PORT))
    if missing:
        say(f"  {spec.host.name}: not yet in effect in the running k3s: {', '.join(missing)}"
            " (restart)")
    return not missing


def start(conn: Connection, role: Role, *, restart: bool) -> str:
    """Enable and start (or restart) the unit without waiting on it; the host's time just
    before, for the journal, read in the same round trip. systemd is reloaded only when it
    says the unit needs it (NeedDaemonReload: a unit it loaded before and the installer
    rewrote); a unit new to it is loaded from disk when asked for. [lab] eight containers
    reloading at once took 0.8 s each, one alone 0.15 s. The installer runs with
    INSTALL_K3S_SKIP_ENABLE (it would reload twice), so enabling is ours."""
    verb, u = ("restart" if restart else "start"), role.unit
    out = sh(conn, f"date '+%Y-%m-%d %H:%M:%S' && "
                   f"{{ [ \"$(systemctl show -p NeedDaemonReload --value {u})\" = no ] || "
                   f"systemctl daemon-reload; }} && systemctl enable --no-reload -q {u} && "
                   f"systemctl {verb} --no-block {u}").stdout
    return out.splitlines()[0].strip() if out.strip() else ""


def wait_ready(r: Run, conn: Connection, spec: NodeSpec, api: Connection, since: str,
               timeout: float, *, retried: bool = False,
               shared: facts.SharedNodes | None = None) -> None:
    """Until the node is Ready in the API, or its journal names a problem that will not
    pass by itself (then: the fix, or the problem and the fix named)."""
    host, unit = spec.host, spec.role.unit
    api_error: list[str] = []

    def state() -> bool | facts.Problem:
        # the journal first, and the unit itself: a node object left by a rebuilt host
        # stays Ready in the API for ~40 s while the new k3s is being rejected
        active, journal = facts.unit_and_journal(conn, unit, since=since)
        fatal = [p for p in facts.parse_problems(journal) if p in FATAL]
        if fatal:
            return fatal[-1]
        if active != "active":  # Type=notify: active once joined
            return False
        try:
            n = lookup(api, host.name, shared)
            return n is not None and n.is_ready
        except StepFailed as e:  # the API is not up yet: keep the last answer for the error
            api_error[:] = [str(e)]
            return False

    met, last = poll(state, timeout=timeout, interval=READY_POLL,
                     until=lambda v: v is True or isinstance(v, facts.Problem))
    if last is True:
        r.record(host, f"{unit} Ready", CHANGED)
        return
    if last is facts.Problem.NODE_PASSWORD and not retried:
        offer_forget(r, api, host, "k3s says \"Node password rejected\": another host (or "
                     "this one before a rebuild) registered this name")
        since = start(conn, spec.role, restart=True)
        wait_ready(r, conn, spec, api, since, timeout, retried=True, shared=shared)
        return
    r.record(host, f"{unit} Ready", "failed")
    tail = "\n    ".join(facts.journal(conn, unit, lines=15, since=since).splitlines()[-15:])
    why = f"k3s reports: {last.value}" if isinstance(last, facts.Problem) \
        else f"not Ready in the API after {int(timeout)} s" + \
        (f" (last API answer: {api_error[0]})" if api_error else "")
    raise StepFailed(f"{host.name}: {unit} {why}. Journal (journalctl -u {unit}):\n    {tail}")


def forget_node(api: Connection, name: str) -> None:
    """Delete the node object and its node-password secret through a server's API."""
    q = shlex.quote(name)
    sh(api, f"k3s kubectl delete node {q} --ignore-not-found --wait=false && "
            f"k3s kubectl -n kube-system delete secret {shlex.quote(name + '.node-password.k3s')}"
            " --ignore-not-found", timeout=60)


def offer_forget(r: Run, api: Connection, host: Host, why: str) -> None:
    server = host_name(api)
    if not confirm(f"{host.name}: {why}. Delete the old node object and its secret "
                   f"{host.name}.node-password.k3s through {server}?", yes=r.yes):
        raise Refused(f"{host.name}: {why}; nothing was started. Fix: on {server}: k3s kubectl "
                      f"delete node {host.name}; k3s kubectl -n kube-system delete secret "
                      f"{host.name}.node-password.k3s (or run again and accept)")
    forget_node(api, host.name)
    r.record(host, "forget old node", CHANGED)


def remove(r: Run, conn: Connection, host: Host, role: Role, api: Connection) -> bool:
    """Drain (agents), uninstall, then delete the node (and its password secret): a node
    deleted while its k3s still runs registers itself again ([lab] seen after a delete
    that came before the uninstall)."""
    q = shlex.quote(host.name)
    listed = node_listed(api, host.name)
    if listed and role is Role.AGENT:
        sh(api, f"k3s kubectl drain {q} --ignore-daemonsets --delete-emptydir-data "
                "--force --timeout=120s", timeout=150)
        r.record(host, "drain", CHANGED)
    gone = uninstall(conn, role)
    r.record(host, "uninstall", CHANGED if gone else OK)
    if node_listed(api, host.name):
        forget_node(api, host.name)
        r.record(host, "delete node", CHANGED)
        listed = True
    if not (listed or gone):
        say(f"  {host.name}: not a node and nothing installed")
    return listed or gone
