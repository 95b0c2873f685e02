"""One scenario run: probes started, the fault, the hold, the restore (always), the wait
until healthy, then the accounting. `Env` is what a drill shares across its scenarios.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..core.cli import say
from ..core.run import Run
from ..db import operate
from . import accounting, health, probes, writer as w
from .actions import db_writer, describe, fresh, inflict
from .kubecreds import Creds
from .safety import restoring, sigint_held
from .scenarios import Scenario, Tier
from .timeline import outage, overlap_seconds
from .verdict import Result

BASELINE_S, TAIL_S, HEALTHY_TIMEOUT_S, SETTLE_S = 2.0, 3.0, 120.0, 30.0
NEEDS = {Tier.API: {health.Part.BALANCERS}, Tier.DB: {health.Part.BALANCERS, health.Part.DB},
         Tier.K3S: {health.Part.K3S}}


@dataclass
class Env:
    r: Run
    parts: set[health.Part]
    password: str = ""
    creds: Creds | None = None
    t0: float = field(default_factory=time.monotonic)

    def clock(self) -> float:
        return time.monotonic() - self.t0


def start_probes(env: Env) -> tuple[list[probes.Probe], w.DrillWriter | None]:
    inv, clock, out = env.r.inv, env.clock, []
    api, dbv = inv.vips.get("api"), inv.vips.get("db")
    port = inv.balancers["api_port"]
    if api is not None and health.Part.K3S in env.parts:
        ca = env.creds.ca if env.creds else None
        out.append(probes.Probe("api-ping", probes.api_attempt(
            api.address, port, "/ping", probes.tls_context(ca),
            lambda s, b: s == 200 and b.strip() == "pong"), 0.1, clock))
        if env.creds:
            ctx = probes.tls_context(ca, env.creds.cert_file, env.creds.key_file)
            out.append(probes.Probe("api-auth", probes.api_attempt(
                api.address, port, "/readyz", ctx, lambda s, b: s == 200), 0.5, clock))
    if api is not None:
        out.append(probes.Probe("api-tcp", probes.tcp_attempt(api.address, port), 0.1, clock))
    dw = None
    if dbv is not None and health.Part.DB in env.parts:
        dw = w.DrillWriter(dbv.address, inv.balancers["db_port"], env.password)
        out.append(probes.Probe("db-writer", dw.attempt_at(clock), 0.02, clock))
    for key, vip in inv.vips.items():
        for h in inv.with_role(vip.role):
            out.append(probes.Probe(f"vip-{key}@{h.name}", probes.holder_attempt(
                probes.Remote(inv, h), vip), 0.3, clock))
    if health.Part.K3S in env.parts:
        remotes = [probes.Remote(inv, h, 4.0) for h in inv.with_role("k3s-server")]
        out.append(probes.Probe("nodes-ready", probes.ready_attempt(remotes), 1.0, clock))
    for p in out:
        p.start()
    return out, dw


def stop_probes(ps: list[probes.Probe], dw: w.DrillWriter | None) -> None:
    for p in ps:
        p.stop()
    for p in ps:
        p.join(timeout=15)
    if dw is not None:
        dw.close()


def run_scenario(env: Env, sc: Scenario, cycle: int, hosts: list[Any]) -> Result:
    say(f"\n===== {describe(sc, hosts)} (cycle {cycle})")
    ps, dw = start_probes(env)
    t_fault = t_restore = 0.0
    try:
        time.sleep(BASELINE_S)
        with sigint_held() as noted:
            t_fault = env.clock()
            inf = inflict(env.r, sc, hosts)
        say(f"  fault at {t_fault:.1f} s: {inf.what}")
        with restoring(inf.restore, inf.what):
            if noted:
                raise KeyboardInterrupt
            time.sleep(sc.hold_s)
            t_restore = env.clock()
        say(f"  restored at {t_restore:.1f} s")
        took, left = health.wait_healthy(env.r, env.parts, HEALTHY_TIMEOUT_S)
        rebuilt = rejoin_fenced(env) if left else []
        if rebuilt:
            took, left = health.wait_healthy(env.r, env.parts, HEALTHY_TIMEOUT_S)
        time.sleep(TAIL_S)
    finally:
        stop_probes(ps, dw)
    res = Result(sc, cycle, ",".join(h.name for h in hosts), t_fault, t_restore, env.clock())
    res.healthy_after_s = None if took is None else round(env.clock() - TAIL_S - t_restore, 1)
    res.notes += left + [f"fenced with errant transactions, rebuilt by db.rejoin: {x}"
                         for x in rebuilt]
    measure(res, ps)
    if dw is not None:
        account(env, res, dw)
    return res


def rejoin_fenced(env: Env) -> list[str]:
    """Not healthy after the restore: a node the fence left holding errant transactions
    (a cut-off writer's last commit) is rebuilt, so the next scenario starts healthy and
    replication is measured healthy again (issue 12)."""
    if health.Part.DB not in env.parts:
        return []
    return operate.rejoin_fenced(env.r)


def measure(res: Result, ps: list[probes.Probe]) -> None:
    res.series = {p.series.name: p.series for p in ps}
    ready = res.series.get("nodes-ready")
    if ready is not None and ready.samples:
        res.nodes_ready = {"all nodes": ready.samples[-1].ok}
    for p in ps:
        if not p.series.name.startswith("vip-"):
            res.outages[p.series.name] = outage(p.series.samples, res.window_start)
    for key in {p.series.name.split("@")[0] for p in ps if p.series.name.startswith("vip-")}:
        holds = {p.series.name: p.series.samples for p in ps
                 if p.series.name.startswith(key + "@")}
        res.dual_ownership_s[key[4:]] = overlap_seconds(holds, res.t_fault)


def account(env: Env, res: Result, dw: w.DrillWriter) -> None:
    """Read every database after the restore and classify the writes (Jepsen's set test)."""
    r, inv = env.r, env.r.inv
    acked = [x.id for x in dw.writes if x.id is not None] or [0]
    admins = {h.name: w.admin(inv, fresh(r, h), h) for h in inv.with_role("db")}
    try:
        tables = {n: {} for n in admins}
        end = time.monotonic() + SETTLE_S
        while True:  # replication may still be applying the last rows
            tables = {n: w.drill_rows(a, dw.seq_range, (min(acked), max(acked)))
                      for n, a in admins.items()}
            sums = {n: w.checksums(a, [w.FQ] + kine_table(inv, a)) for n, a in admins.items()}
            if len({tuple(sorted(s.values())) for s in sums.values()}) <= 1 \
                    or time.monotonic() > end:
                break
            time.sleep(1)
        res.writes = accounting.classify(dw.writes, tables, db_writer(r))
        res.checksums = sums
        kines = {n: k for n, a in admins.items()
                 if (k := w.kine_rows(a, inv.db["database"])) is not None}
        if kines:
            res.kine = accounting.kine_check(kines, next(iter(kines)))
        res.replication = {n: w.replication_problem(a) for n, a in admins.items()}
    finally:
        for a in admins.values():
            a.close()


def kine_table(inv: Any, a: w.Admin) -> list[str]:
    db = inv.db["database"]
    return [f"`{db}`.`kine`"] if w.has_kine(a, db) else []
