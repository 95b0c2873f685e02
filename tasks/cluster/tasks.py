"""Namespace `cluster`: whole-cluster checks, deploy in the guide's order, status."""
from __future__ import annotations

import time

from invoke import Context

from ..core.cli import k3s_task, say
from ..core.errors import InputError, K3sHaError, StepFailed
from ..core.run import run_session
from ..core.secrets import confirm, interactive
from . import preflight, stages

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


@k3s_task(help={"dry": H_DRY,
                "yes": H_YES + "; and no question before each stage (the guide's flow)",
                "from_": "start at this stage (balancers, databases, servers, agents, verify);"
                         " the earlier ones are skipped (they are no-ops when done anyway)"})
def deploy(c: Context, dry: bool = False, yes: bool = False, from_: str = "") -> None:
    """Deploy the whole HA stack in the guide's order: check, balancers, databases, k3s
    servers, agents, verify.

    Interactive runs ask before each stage, saying what it changes; --yes runs them all.
    Declining, or a failed stage, stops there with the command that resumes.
    """
    from ..core import inventory

    all_stages = stages.stages(inventory.load())
    names = [s.name for s in all_stages]
    if from_ and from_ not in names:
        raise InputError(f"--from {from_!r}: no such stage. Fix: use one of {', '.join(names)}")
    if not yes and not interactive():
        raise InputError("cluster.deploy asks before each stage and this run has no terminal. "
                         "Fix: run it with --yes (secrets then come from K3S_HA_* env vars or "
                         "the secrets file)")
    t0 = time.monotonic()
    check(c, yes=yes)
    todo = all_stages[names.index(from_):] if from_ else all_stages
    times = [f"check {time.monotonic() - t0:.1f}s"]
    for i, st in enumerate(todo, 1):
        resume = f"fab cluster.deploy --from {st.name}" + (" --yes" if yes else "")
        if not yes and not confirm(f"Stage {i}/{len(todo)}: {st.name} - will change: "
                                   f"{st.changes}. Run it?"):
            say(f"stopped before stage {st.name} as asked; nothing after it ran. To go on: "
                f"{resume} (or fab cluster.deploy again: what is done changes nothing)")
            return
        t0 = time.monotonic()
        for name, task in st.tasks:
            say(f"\n===== {st.name}: {name}")
            try:
                task(c, dry=dry, yes=yes)
            except K3sHaError as e:
                say(f"\ncluster.deploy stopped: stage {st.name} failed in {name} (above: its "
                    f"recap). Once fixed, resume with: {resume} (or re-run fab "
                    "cluster.deploy: what is done changes nothing)")
                raise e
        times.append(f"{st.name} {time.monotonic() - t0:.1f}s")
    say("\ncluster.deploy: stage times: " + ", ".join(times))


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


@k3s_task(help={"yes": H_YES})
def adopt(c: Context, yes: bool = False) -> None:
    """Read a cluster built by hand from the guide and compare it with the inventory: per
    host and item, what was found, what the inventory says and what cluster.deploy will do
    (it keeps the VIP holders and replication positions). Changes nothing; exit 2 when
    deploy would stop on something that must be fixed by hand first."""
    from ..core.cli import table
    from . import adopt as ad

    with run_session(c, "cluster.adopt", yes=yes) as r:
        findings = ad.read_all(r)
    say("\n" + table([{"host": f.host, "item": f.item, "found": f.found,
                       "inventory says": f.inventory,
                       "cluster.deploy will": ("!! " if f.risk is not ad.Risk.NONE else "")
                       + f.deploy} for f in findings],
                     ["host", "item", "found", "inventory says", "cluster.deploy will"]))
    blocks = [f for f in findings if f.risk is ad.Risk.BLOCKS]
    brief = [f for f in findings if f.risk is ad.Risk.BRIEF]
    say(f"\ncluster.adopt: {len(findings)} items read, {len(brief)} with one brief "
        f"interruption, {len(blocks)} blocking")
    if blocks:
        raise InputError("cluster.deploy would stop on: " + "; ".join(
            f"{f.host} {f.item}: {f.deploy}" for f in blocks))
