"""Namespace `failover`: the drill that measures what each failure costs (issue 14), and
the list of its scenarios. The work is in session.py (a whole drill) and drill.py (one
scenario); see scenarios.py for what each disrupts.
"""
from __future__ import annotations

from invoke import Context, Exit

from ..core.cli import H_YES, k3s_task, say, table
from ..core.run import run_session
from .scenarios import SCENARIOS
from .session import run_drill
from .verdict import MAX_OUTAGE_S


@k3s_task(help={
    "scenario": "run only this scenario (repeatable); default: every one whose tier is "
                "deployed (fab failover.scenarios lists them)",
    "cycles": "run the scenarios this many times (default 1)",
    "yes": "do not ask before disrupting (needed without a terminal); " + H_YES,
    "report": "folder for report.json and the PNG timelines (default: "
              "<inventory folder>/drill-reports/<timestamp>/)"},
    iterable=["scenario"])
def drill(c: Context, scenario: list[str] | None = None, cycles: int = 1, yes: bool = False,
          report: str = "") -> None:
    """Break the cluster one scenario at a time, measure, restore; exit 1 on any breach."""
    with run_session(c, "failover.drill", yes=yes) as r:
        results = run_drill(r, list(scenario or []), cycles, yes, report)
    if any(b for _, b in results):
        raise Exit("failover.drill: thresholds breached (see above)", code=1)


@k3s_task
def scenarios(c: Context) -> None:
    """The drill's scenarios: what each disrupts, how, and its outage threshold."""
    say(table([{"scenario": s.name, "disrupts": s.disrupts, "hold s": s.hold_s,
                "measured": s.probe, "max outage s": MAX_OUTAGE_S.get(s.kind, "-")}
               for s in SCENARIOS], ["scenario", "disrupts", "hold s", "measured",
                                     "max outage s"]))
