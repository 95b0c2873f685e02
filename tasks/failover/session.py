"""A whole drill: gate, plan and confirmation, the scenarios in turn, the report and the
exit code. The task in tasks.py is a thin wrapper around `run_drill`.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..core.cli import say
from ..core.errors import InputError, Refused, StepFailed
from ..core.run import Run
from ..core.ssh import sh
from . import health, hostfault, kubecreds, report
from . import writer as w
from .actions import describe, fresh, resolve, tools_missing, tools_needed
from .drill import NEEDS, Env, run_scenario
from .safety import ask, require_healthy
from .scenarios import Scenario, select
from .verdict import Breach, Result, judge, limits


def choose(names: list[str], parts: set[health.Part]) -> list[Scenario]:
    try:
        chosen = select(names)
    except ValueError as e:
        raise InputError(f"unknown scenario(s): {e}. Fix: fab failover.scenarios lists "
                         "them") from None
    missing = [s for s in chosen if not NEEDS[s.tier] <= parts]
    if names and missing:
        raise Refused(f"{', '.join(s.name for s in missing)}: the tier it disrupts is not "
                      "deployed (k3s not installed, or no such hosts). Fix: deploy it, or "
                      "choose other scenarios")
    return [s for s in chosen if s not in missing]


def prepare(env: Env, yes: bool) -> None:
    """The drill's database, table and user on both databases (sql_log_bin=0 on each)."""
    r = env.r
    env.password = w.drill_password(r.inv, yes)
    allowed = [h.address for h in r.inv.with_role("db-balancer")]
    if r.inv.db["proxy_protocol"]:  # MariaDB sees the writer's own address through the VIP
        allowed += [sh(r.conn(b), hostfault.operator_address_cmd(), write=False).stdout.strip()
                    for b in r.inv.with_role("db-balancer")[:1]]
    for h in r.inv.with_role("db"):
        a = w.admin(r.inv, fresh(r, h), h, yes=yes)
        try:
            w.ensure_drill_schema(a, allowed, env.password)
        finally:
            a.close()


def report_dir(r: Run, given: str) -> Path:
    if given:
        return Path(given)
    return r.inv.path.parent / "drill-reports" / time.strftime("%Y%m%d-%H%M%S")


def run_drill(r: Run, names: list[str], cycles: int, yes: bool, folder: str
              ) -> list[tuple[Result, list[Breach]]]:
    if cycles < 1:
        raise InputError(f"--cycles {cycles}: use 1 or more")
    parts = health.deployed(r)
    chosen = choose(names, parts)
    if not chosen:
        raise Refused("no scenario can run: nothing they disrupt is deployed")
    require_healthy(health.problems(r, parts))
    targets = {s.name: resolve(r, s.target) for s in chosen}
    missing = [] if r.inv.is_lab else tools_missing(r, tools_needed(chosen, targets))
    if missing:
        raise Refused("the drill's faults need tools these hosts lack; nothing was "
                      "disrupted:\n  - " + "\n  - ".join(missing) + "\nFix: install them "
                      "(Debian/Ubuntu: apt-get install nftables; systemd-run comes with "
                      "systemd), or choose other scenarios")
    ask([describe(s, targets[s.name]) + (f" x{cycles}" if cycles > 1 else "")
         for s in chosen], yes=yes)
    env = Env(r, parts)
    if health.Part.DB in parts:
        prepare(env, yes)
    env.creds = kubecreds.fetch(r) if health.Part.K3S in parts else None
    lim = limits(r.inv.raw, r.inv.db)
    results: list[tuple[Result, list[Breach]]] = []
    try:
        for cycle in range(1, cycles + 1):
            for sc in chosen:
                problems = health.problems(r, parts)
                if problems:
                    raise StepFailed("the cluster did not come back healthy, so the drill "
                                     "stops here: " + "; ".join(problems))
                res = run_scenario(env, sc, cycle, resolve(r, sc.target))
                results.append((res, judge(res, lim)))
    finally:
        if env.creds is not None:
            env.creds.folder.cleanup()
        if results:
            out = report_dir(r, folder)
            paths = report.write(out, results)
            say("\n" + report.table(results))
            say(f"\nreport: {paths[0]} (+ {len(paths) - 1} timeline PNG)")
    return results
