"""Namespace `cluster`: whole-cluster checks (and, later, deploy/status)."""
from __future__ import annotations

from fabric import Connection
from invoke import Context

from .inventory import Host
from .output import OK, k3s_task, run_session, say
from .remote import sh


@k3s_task(help={"yes": "never prompt (for scripts and CI)"})
def check(c: Context, yes: bool = False) -> None:
    """Check the inventory, SSH reachability with host keys, and root/sudo on every host."""
    with run_session(c, "cluster.check", yes=yes) as r:
        inv = r.inv
        say(f"  inventory: {len(inv.hosts)} hosts, VIPs: "
            + ", ".join(f"{k}={v.address}" for k, v in inv.vips.items()) + " - valid")

        def one(conn: Connection, h: Host) -> None:
            r.record(h, "ssh + host key", OK)
            who = sh(conn, "id -u", write=False, warn=True)
            if who.exited != 0 or who.stdout.strip() != "0":
                from .errors import StepFailed

                r.record(h, "root/sudo", "failed")
                raise StepFailed(f"{h.name}: cannot run commands as root (sudo -n failed: "
                                 f"{(who.stderr or who.stdout).strip()[:200]}). Fix: log in as "
                                 "root or give the SSH user passwordless sudo")
            r.record(h, "root/sudo", OK)

        r.each(list(inv.hosts.values()), one)
