"""A scenario's measured result and its verdict against the thresholds (pure).

Thresholds come from the inventory's `[failover]` table, defaults from scenarios.py:

    [failover]
    max_lost_writes = 0
    max_duplicates = 0
    max_dual_ownership_s = 2.0
    [failover.max_outage_s]
    primary-down = 10.0        # any kind named in scenarios.MAX_OUTAGE_S
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .accounting import KineCheck, SetResult
from .scenarios import MAX_DUPLICATES, MAX_LOST_WRITES, MAX_OUTAGE_S, Scenario
from .timeline import Outage, Series

MAX_DUAL_OWNERSHIP_S = 2.0


@dataclass(frozen=True)
class Limits:
    max_outage_s: dict[str, float]
    max_lost_writes: int = MAX_LOST_WRITES
    max_duplicates: int = MAX_DUPLICATES
    max_dual_ownership_s: float = MAX_DUAL_OWNERSHIP_S

    def outage(self, kind: str) -> float:
        return self.max_outage_s.get(kind, MAX_OUTAGE_S.get(kind, 10.0))


def limits(raw: dict[str, Any], db: dict[str, Any]) -> Limits:
    """Limits from an inventory's raw `[failover]` table (absent keys: the defaults) and
    its [db] settings (defaults applied: `Inventory.db`). The replication cut's default is
    the semi-sync timeout + 1 s: the writer cannot tell a cut link from a slow replica, so
    its next commit waits the timeout out ([lab] 2.0-3.4 s with a 3 s timeout)."""
    f = raw.get("failover", {}) or {}  # validated by the inventory rules (failover_limits)
    wait_s = db["semi_sync_timeout_ms"] / 1000 if db["semi_sync"] else 0.0
    cut = {"replication-cut": max(MAX_OUTAGE_S["replication-cut"], wait_s + 1.0)}
    return Limits({**MAX_OUTAGE_S, **cut, **{k: float(v) for k, v in
                                     (f.get("max_outage_s", {}) or {}).items()}},
                  int(f.get("max_lost_writes", MAX_LOST_WRITES)),
                  int(f.get("max_duplicates", MAX_DUPLICATES)),
                  float(f.get("max_dual_ownership_s", MAX_DUAL_OWNERSHIP_S)))


@dataclass
class Result:
    """What one run of one scenario measured (times in seconds from the drill's start)."""
    scenario: Scenario
    cycle: int
    target: str
    t_fault: float
    t_restore: float
    t_end: float
    outages: dict[str, Outage] = field(default_factory=dict)
    writes: SetResult | None = None
    kine: KineCheck | None = None
    dual_ownership_s: dict[str, float] = field(default_factory=dict)
    checksums: dict[str, dict[str, int]] = field(default_factory=dict)
    replication: dict[str, str] = field(default_factory=dict)   # node -> "" or the problem
    nodes_ready: dict[str, bool] = field(default_factory=dict)
    healthy_after_s: float | None = None
    notes: list[str] = field(default_factory=list)
    series: dict[str, Series] = field(default_factory=dict, repr=False)

    @property
    def window_start(self) -> float:
        from .scenarios import Window
        return self.t_restore if self.scenario.window is Window.RETURN else self.t_fault

    @property
    def probe(self) -> str:
        """The probe measured: the scenario's, or the API's TCP probe when there is no
        k3s API to ping (balancers and databases deployed, k3s not yet)."""
        p = self.scenario.probe
        return p if p in self.outages or p != "api-ping" else "api-tcp"

    @property
    def measured(self) -> Outage | None:
        return self.outages.get(self.probe)

    @property
    def checksums_equal(self) -> bool:
        sums = list(self.checksums.values())
        return all(s == sums[0] for s in sums) if sums else True


@dataclass(frozen=True)
class Breach:
    what: str
    measured: str
    limit: str

    @property
    def text(self) -> str:
        return f"{self.what}: {self.measured} (limit {self.limit})"


def judge(res: Result, lim: Limits) -> list[Breach]:
    """Every threshold the result breaks; empty when it passes."""
    out: list[Breach] = []
    o, kind = res.measured, res.scenario.kind
    if o is not None and o.longest_s > lim.outage(kind):
        out.append(Breach(f"{res.probe} outage", f"{o.longest_s:.2f} s",
                          f"{lim.outage(kind):.2f} s ({kind})"))
    if res.writes is not None:
        if len(res.writes.lost) > lim.max_lost_writes:
            out.append(Breach("acknowledged writes lost", str(len(res.writes.lost)),
                              str(lim.max_lost_writes)))
        if res.writes.duplicates + len(res.writes.failed_present) > lim.max_duplicates:
            out.append(Breach("ids reused / duplicated", str(res.writes.duplicates),
                              str(lim.max_duplicates)))
    if res.kine is not None and res.kine.differing:
        out.append(Breach("kine revisions reused", str(len(res.kine.differing)), "0"))
    for key, secs in res.dual_ownership_s.items():
        if secs > lim.max_dual_ownership_s:
            out.append(Breach(f"{key} VIP on two balancers", f"{secs:.1f} s",
                              f"{lim.max_dual_ownership_s:.1f} s"))
    if not res.checksums_equal:
        out.append(Breach("checksums differ between the databases",
                          "; ".join(f"{n}: {c}" for n, c in res.checksums.items()), "equal"))
    for node, problem in res.replication.items():
        if problem:
            out.append(Breach(f"replication on {node}", problem, "healthy"))
    for node, ready in res.nodes_ready.items():
        if not ready:
            out.append(Breach(f"node {node}", "not Ready", "Ready"))
    if res.healthy_after_s is None:
        out.append(Breach("cluster healthy again", "never within the wait", "healthy"))
    return out
