"""The drill's report: a table on screen, `report.json`, and a PNG timeline per scenario
run (each probe's success over time as colored bands, fault and restore marked).

`to_json` and `rows` are pure; `timeline_png` draws with matplotlib's Agg backend.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .timeline import Outcome, Series
from .verdict import Breach, Result

COLORS = {Outcome.OK: "#2e9d4a", Outcome.FAIL: "#d62728", Outcome.INDETERMINATE: "#f2a93b"}
# VIP rows: OK = this balancer holds the VIP, FAIL = it does not (not a failure)
VIP_COLORS = {Outcome.OK: "#1f4fbf", Outcome.FAIL: "#d9d9d9", Outcome.INDETERMINATE: "#f2a93b"}
COLUMNS = ["scenario", "cycle", "target", "detect s", "outage s", "lost", "indet.",
           "dup.", "dual VIP s", "healthy after s", "verdict"]


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def row(res: Result, breaches: list[Breach]) -> dict[str, Any]:
    o, wr = res.measured, res.writes
    return {"scenario": res.scenario.name, "cycle": res.cycle, "target": res.target,
            "detect s": _f(o.detect_s if o else None),
            "outage s": f"{_f(o.longest_s if o else None)} ({res.probe})",
            "lost": "-" if wr is None else len(wr.lost),
            "indet.": "-" if wr is None else f"{wr.indeterminate} ({wr.indeterminate_present} in)",
            "dup.": "-" if wr is None else wr.duplicates,
            "dual VIP s": _f(max(res.dual_ownership_s.values(), default=0.0)),
            "healthy after s": _f(res.healthy_after_s),
            "verdict": "PASS" if not breaches else "FAIL"}


def table(results: list[tuple[Result, list[Breach]]]) -> str:
    rows = [row(r, b) for r, b in results]
    text = tabulate([[x[c] for c in COLUMNS] for x in rows], headers=COLUMNS,
                    tablefmt="simple")
    fails = [f"  {r.scenario.name} #{r.cycle}: {b.text}" for r, bs in results for b in bs]
    return text + ("\n\nBreaches:\n" + "\n".join(fails) if fails else "")


def result_json(res: Result, breaches: list[Breach]) -> dict[str, Any]:
    wr, k = res.writes, res.kine
    return {
        "scenario": res.scenario.name, "cycle": res.cycle, "target": res.target,
        "disrupts": res.scenario.disrupts, "kind": res.scenario.kind,
        "measured_probe": res.probe,
        "t_fault": res.t_fault, "t_restore": res.t_restore, "t_end": res.t_end,
        "outages": {n: {"detect_s": o.detect_s, "longest_s": o.longest_s,
                        "total_s": o.total_s} for n, o in res.outages.items()},
        "writes": None if wr is None else {
            "acknowledged": wr.acknowledged, "present": wr.present, "lost": len(wr.lost),
            "lost_seq": sorted(wr.lost)[:100], "duplicates": wr.duplicates,
            "reused_ids": sorted(wr.reused)[:100], "indeterminate": wr.indeterminate,
            "indeterminate_present": wr.indeterminate_present,
            "failed_present": list(wr.failed_present)[:100],
            "unreplicated": wr.unreplicated},
        "kine": None if k is None else {"revisions": k.revisions, "reused": list(k.differing),
                                        "missing_on": {n: len(v) for n, v in
                                                       k.missing_on.items()},
                                        "gaps": k.gaps},
        "dual_ownership_s": res.dual_ownership_s, "checksums": res.checksums,
        "checksums_equal": res.checksums_equal, "replication": res.replication,
        "nodes_ready": res.nodes_ready, "healthy_after_s": res.healthy_after_s,
        "notes": res.notes, "breaches": [b.text for b in breaches],
        "passed": not breaches,
    }


def to_json(results: list[tuple[Result, list[Breach]]]) -> dict[str, Any]:
    return {"passed": all(not b for _, b in results),
            "results": [result_json(r, b) for r, b in results]}


def bands(series: Series) -> list[tuple[float, float, Outcome]]:
    """(start, width, outcome) runs of equal outcome; each sample lasts until the next
    (pure: what the timeline draws)."""
    s = series.samples
    out: list[tuple[float, float, Outcome]] = []
    for i, x in enumerate(s):
        end = s[i + 1].t if i + 1 < len(s) else x.t + max(x.latency, 0.1)
        if out and out[-1][2] is x.outcome and abs(out[-1][0] + out[-1][1] - x.t) < 1e-9:
            out[-1] = (out[-1][0], end - out[-1][0], x.outcome)
        else:
            out.append((x.t, end - x.t, x.outcome))
    return out


def timeline_png(res: Result, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch

    names = sorted(res.series, key=lambda n: (n.startswith("vip-"), n))
    fig, ax = plt.subplots(figsize=(12, 1.6 + 0.42 * len(names)), dpi=110)
    for i, name in enumerate(names):
        palette = VIP_COLORS if name.startswith("vip-") else COLORS
        for start, width, outcome in bands(res.series[name]):
            ax.broken_barh([(start, width)], (i - 0.38, 0.76), color=palette[outcome],
                           linewidth=0)
    ax.set_yticks(range(len(names)), names, fontsize=9)
    ax.invert_yaxis()
    for t, label, color in ((res.t_fault, "fault", "black"),
                            (res.t_restore, "restore", "#1f4fbf")):
        ax.axvline(t, color=color, linestyle="--", linewidth=1.4)
        ax.text(t, -0.7, f" {label} {t:.1f}s", color=color, fontsize=9, va="bottom")
    ax.set_xlabel("seconds since the drill started")
    o = res.measured
    ax.set_title(f"{res.scenario.name} (cycle {res.cycle}) on {res.target}: "
                 f"{res.probe} longest outage {_f(o.longest_s if o else None)} s",
                 fontsize=11, pad=18)
    keys = [(c, k.value) for k, c in COLORS.items()] + \
        [(VIP_COLORS[Outcome.OK], "holds the VIP"), (VIP_COLORS[Outcome.FAIL], "does not")]
    fig.legend(handles=[Patch(color=c, label=t) for c, t in keys],
               loc="lower center", ncol=5, fontsize=9, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout(rect=(0, 0.5 / (1.6 + 0.42 * len(names)), 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def write(folder: Path, results: list[tuple[Result, list[Breach]]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / "report.json"]
    out[0].write_text(json.dumps(to_json(results), indent=2, sort_keys=True))
    for r, _ in results:
        out.append(timeline_png(r, folder / f"{r.scenario.name}-{r.cycle}.png"))
    return out
