"""Namespace `cluster`: whole-cluster checks, deploy in the guide's order, status."""
from __future__ import annotations

import time

from invoke import Context

from ..core.cli import k3s_task, say
from ..core.errors import InputError, StepFailed
from ..core.run import OK, run_session
from ..core.secrets import confirm, interactive
from ..facts import datastore
from . import preflight

H_DRY = "show what would change (unified diffs), change nothing"
H_YES = "never prompt: secrets from K3S_HA_* env vars or the secrets file"

@k3s_task(help={"yes": H_YES})
def check(c: Context, yes: bool = False) -> None:
    """Preflight, changing nothing: SSH/root, OS, names, clocks, swap, ports, VIPs, multicast,
    package sources and disk on every host; any ERROR (shown with its fix) exits 2."""
    with run_session(c, "cluster.check", yes=yes) as r:
        inv = r.inv
        say(f"  inventory: {len(inv.hosts)} hosts, VIPs: "
            + ", ".join(f"{k}={v.address}" for k, v in inv.vips.items()) + " - valid")
        report = preflight.run_checks(r)
    preflight.print_report(report)
    preflight.raise_for(report)  # exit 3/1: a host not reachable as root; 2: any ERROR


def _steps(c: Context) -> list[tuple[str, object]]:
    from ..balancers import tasks as balancers
    from ..core import inventory
    from ..db import tasks as db
    from ..k3s import tasks as k3s

    inv = inventory.load()
    steps: list[tuple[str, object]] = [
        ("balancers.deploy", balancers.deploy),
        ("db.install", db.install),
        ("db.configure", db.configure),
        ("db.secure", db.secure),
        ("db.replicate", db.replicate),
        ("db.users", db.users),
    ]
    if inv.db["health_check"] == "http":
        steps.append(("db.health", db.health))
    steps += [
        ("datastore writer", wait_datastore_writer),
        ("k3s.install-server", k3s.install_server),
        ("k3s.join-agent", k3s.join_agent),
    ]
    return steps


@k3s_task(help={"dry": H_DRY,
                "yes": H_YES + "; and no question before each step (the guide's flow)"})
def deploy(c: Context, dry: bool = False, yes: bool = False) -> None:
    """Deploy the whole HA stack in the guide's order: balancers, databases, k3s servers, agents.

    Interactive runs ask before each step, as the guide goes step by step; --yes runs them
    all. Declining stops there and says which task continues from that point.
    """
    steps = _steps(c)
    if not yes and not interactive():
        raise InputError("cluster.deploy asks before each step and this run has no terminal. "
                         "Fix: run it with --yes (secrets then come from K3S_HA_* env vars or "
                         "the secrets file)")
    check(c, yes=yes)
    for i, (name, t) in enumerate(steps, 1):
        doc = (t.__doc__ or "").strip().splitlines()[0] if t.__doc__ else ""
        if not yes and not confirm(f"Step {i}/{len(steps)}: {name} - {doc} Run it?"):
            rest = " then ".join(f"fab {n}" for n, _ in steps[i - 1:])
            say(f"stopped before {name} as asked; nothing after it ran. To go on: {rest} "
                "(or fab cluster.deploy again: the steps already done change nothing)")
            return
        say(f"\n===== {name}")
        t(c, dry=dry, yes=yes)  # type: ignore[operator]


def wait_datastore_writer(c: Context, dry: bool = False, yes: bool = False) -> None:
    """HAProxy admits a db server only after `rise` good checks (guide: 30, 2 s apart), and
    the checks fail until db.users created the check user: wait for a writer, so the
    datastore VIP works before k3s needs it."""
    if dry:
        return
    with run_session(c, "cluster.deploy: datastore VIP", yes=yes) as r:
        rise = r.inv.db["rise"]
        say(f"  waiting for HAProxy to admit a writer (rise {rise} checks, 2 s apart)")
        t0 = time.monotonic()
        w = datastore.wait_writer(r, timeout=rise * 2 + 30)
        took = time.monotonic() - t0
        if w.host is None or w.via is None:
            raise StepFailed(f"the datastore VIP has no writer after {took:.0f} s: "
                             f"{w.via or 'no balancer'}: {w.reason}. Fix: fab balancers.status "
                             "--role db shows each db server's last check (mysql-check needs "
                             "fab db.users)")
        r.record(w.via, "datastore writer", OK, f"{w.host} after {took:.0f} s")
        say(f"  datastore VIP {r.inv.vips['db'].address}: writes go to {w.host} "
            f"(via {w.via})")


@k3s_task(help={"yes": H_YES, "strict": "exit 1 when any problem is found",
                "json": "print one JSON document (the view and its problems) for scripts"})
def status(c: Context, yes: bool = False, strict: bool = False, json: bool = False) -> None:
    """One view across tiers: balancers (VRRP, VIP holder, backends), databases (writer,
    replication, lag, semi-sync), k3s (nodes Ready, taints); problems marked `!!` and summed
    up in the closing line."""
    import contextlib
    import json as jsonlib
    import sys

    from . import status as st

    quiet = contextlib.redirect_stdout(sys.stderr) if json else contextlib.nullcontext()
    with quiet, run_session(c, "cluster.status", yes=yes) as r:
        view = st.collect(r)
        problems = st.judge(view, r.inv)
        lab = r.inv.is_lab
    if json:
        print(jsonlib.dumps(st.to_json(view, problems), indent=2))
    else:
        say("\n" + st.render(view, problems, lab))
    if strict and problems:
        raise StepFailed(f"cluster.status --strict: {len(problems)} problem(s)")
