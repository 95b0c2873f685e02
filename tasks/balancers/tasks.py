"""Namespace `balancers`: guide step 1, the HAProxy + keepalived pairs in front of the k3s
API and the datastore.

install: packages. configure: render (config.py), validate on the host, reload on change
(steps.py). deploy: both, then wait for one VIP holder per pair. status: what HAProxy,
keepalived and the hosts themselves report (facts.vrrp, facts.haproxy).
"""
from __future__ import annotations

from fabric import Connection
from invoke import Context

from ..core.cli import H_DRY, k3s_task, say, table
from ..core.errors import StepFailed
from ..core.inventory import Host
from ..core.run import run_session
from ..facts import vrrp
from ..facts.haproxy import ServerStat, show_stat
from . import checkcert, steps
from .config import balancer_hosts, pair_keys

H_YES = "never prompt (this namespace asks nothing; accepted for scripts)"
H_ROLE = "which pair: api (k3s API balancers), db (datastore balancers) or all"


@k3s_task(help={"dry": H_DRY, "yes": H_YES, "role": H_ROLE})
def install(c: Context, dry: bool = False, yes: bool = False, role: str = "all") -> None:
    """Install HAProxy, keepalived, curl and socat on the balancers."""
    with run_session(c, "balancers.install", dry=dry, yes=yes) as r:
        r.each(balancer_hosts(r.inv, role), lambda conn, h: steps.install(r, conn, h))


@k3s_task(help={"dry": H_DRY, "yes": H_YES, "role": H_ROLE})
def configure(c: Context, dry: bool = False, yes: bool = False, role: str = "all") -> None:
    """Render, validate and apply haproxy.cfg + keepalived.conf (reload only on change)."""
    with run_session(c, "balancers.configure", dry=dry, yes=yes) as r:
        hosts = balancer_hosts(r.inv, role)
        r.each(hosts, lambda conn, h: steps.configure(r, conn, h))
        if not r.dry:
            steps.check_settled(r, hosts)


@k3s_task(help={"dry": H_DRY, "yes": H_YES, "role": H_ROLE})
def deploy(c: Context, dry: bool = False, yes: bool = False, role: str = "all") -> None:
    """install + configure, then wait until each pair has exactly one VIP holder."""
    with run_session(c, "balancers.deploy", dry=dry, yes=yes) as r:
        hosts = balancer_hosts(r.inv, role)

        def one(conn: Connection, h: Host) -> None:
            steps.install(r, conn, h)
            steps.configure(r, conn, h)

        r.each(hosts, one)
        if not r.dry:
            steps.check_settled(r, hosts)


@k3s_task(help={"dry": H_DRY, "yes": H_YES})
def api_check_cert(c: Context, dry: bool = False, yes: bool = False) -> None:
    """readyz check: issue its client certificate on a k3s server, install it, reload HAProxy."""
    from ..k3s.stages import first_server

    with run_session(c, "balancers.api-check-cert", dry=dry, yes=yes) as r:
        want = r.inv.balancers["api_health_check"]
        if want != "readyz":
            say(f"  [balancers] api_health_check = \"{want}\": no check certificate needed "
                "(nothing to do)")
            return
        checkcert.ensure(r, balancer_hosts(r.inv, "api"), first_server(r.inv))


@k3s_task(help={"dry": "accepted for symmetry: status only reads", "yes": H_YES,
                "role": H_ROLE,
                "strict": "exit 1 when a pair has two holders (split brain), none, or an "
                          "unreachable member"})
def status(c: Context, dry: bool = False, yes: bool = False, role: str = "all",
           strict: bool = False) -> None:
    """Per balancer: VRRP state, VIP held, HAProxy/keepalived up, each backend server's check."""
    with run_session(c, "balancers.status", yes=yes) as r:
        hosts = balancer_hosts(r.inv, role)
        views = vrrp.observe_all(r, hosts)
        by_key = vrrp.members(r.inv, views)
        say("\n" + vrrp_table(by_key))
        for h in hosts:
            v = views[h.name]
            up = v.reachable and v.haproxy == "active"
            stats = show_stat(r.conn(h)) if up else None
            say(f"\n{h.name}:\n" + server_table(v, stats))
            if up and "api" in pair_keys(r.inv, h):
                say("  " + api_check_line(checkcert.state(r.inv, r.conn(h))))
        say("")
        verdicts = [vrrp.verdict(k, r.inv.vips[k], seen) for k, seen in by_key.items() if seen]
        for v in verdicts:
            say(f"{v.key} pair: {v.text}")
        bad = [f"{v.key}: {v.text}" for v in verdicts if not v.ok]
        if bad and strict:
            raise StepFailed("balancer pair problem(s): " + " | ".join(bad))


def vrrp_table(by_key: dict[str, list[vrrp.Member]]) -> str:
    rows = [{"balancer": s.host, "pair": key, "VRRP": s.state.value, "since": s.since,
             "VIP": "HOLDS" if s.holds else "-", "haproxy": s.haproxy,
             "keepalived": s.keepalived}
            for key, seen in by_key.items() for s in seen]
    return table(rows, ["balancer", "pair", "VRRP", "since", "VIP", "haproxy", "keepalived"])


def server_table(v: vrrp.Balancer, stats: list[ServerStat] | None) -> str:
    if not v.reachable:
        return f"  unreachable: {v.error}"
    notes = [f"  keepalived: {v.dump_error}"] if v.dump_error else []
    if not stats:
        return "\n".join(notes + ["  no HAProxy runtime data (HAProxy down or admin socket "
                                  "missing)"])
    return "\n".join(notes + [table(
        [{"backend": s.proxy, "server": s.server, "role": "backup" if s.backup else "primary",
          "state": s.status, "last check": s.check, "since change": s.since} for s in stats],
        ["backend", "server", "role", "state", "last check", "since change"])])


def api_check_line(st: checkcert.CheckState) -> str:
    return f"API check: {st.check}" + (f" ({st.note})" if st.note else "")
