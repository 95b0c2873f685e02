"""Benchmark `fab cluster.deploy` on the lab (its own lab "khcb", 10.77.81.0/24, the guide's
ten hosts; the k3s binary is the k3s-ha stand-in, NOT k3s).

Prints: cold deploy time (image cached; packages through the lab's apt-cacher-ng backed by
this machine's mirror), the per-stage times deploy reports, the no-op re-run time, and the
time to join 1 vs 8 new agents (hosts added to the inventory, booted by lab.up, joined with
`k3s.join-agent --host ...`). Targets: no-op re-run under 10 s; 8 agents under 1.5x one.
The no-op re-run is timed several times (--noop-runs, default 3) with the machine's load
average at each: on a small shared machine the spread matters as much as the figure.

    sudo .venv/bin/python bench/deploy.py [--noop-runs N]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.core import inventory  # noqa: E402
from tasks.lab import labnet  # noqa: E402
from tests.lab.test_cluster_lab import guide_inventory  # noqa: E402

NAME, SUBNET = "khcb", "10.77.81"


def fab(path: Path, *args: str, traced: bool = False) -> tuple[float, str]:
    """Run fab (traced: under bench/trace_fab.py, whose table is returned instead)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("K3S_HA_")}
    env["K3S_HA_INVENTORY"] = str(path)
    runner = [str(ROOT / "bench" / "trace_fab.py")] if traced else ["-m", "fabric"]
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, *runner, *args], cwd=ROOT, env=env, text=True,
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=1500)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"fab {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-4000:]}"
                         f"\n{p.stderr[-2000:]}")
    return took, p.stderr if traced else p.stdout


def agents_text(first: int, count: int) -> str:
    return "".join(f'\n[hosts.k3s-agent-{i:02d}]\naddress = "{SUBNET}.{50 + i}"\n'
                   f'roles = ["k3s-agent"]\n' for i in range(first, first + count))


def noop_runs(path: Path, n: int) -> list[tuple[float, float, str]]:
    """(seconds, 1-min load average before, stage times) of n no-op re-runs."""
    out = []
    for _ in range(n):
        load = os.getloadavg()[0]
        took, text = fab(path, "cluster.deploy", "--yes")
        stages = re.search(r"stage times: (.*)", text)
        out.append((took, load, stages.group(1) if stages else "?"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noop-runs", type=int, default=3)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    path = folder / "hosts.toml"
    base = guide_inventory(NAME, SUBNET, vrids=(93, 94))
    path.write_text(base)
    inv = inventory.load(path)
    try:
        labnet.up(inv, log=lambda m: None)
        cold, out = fab(path, "cluster.deploy", "--yes")
        stages = re.search(r"stage times: (.*)", out)
        noops = noop_runs(path, args.noop_runs)
        _, trace = fab(path, "cluster.deploy", "--yes", traced=True)
        path.write_text(base + agents_text(3, 1))
        labnet.up(inventory.load(path), log=lambda m: None)
        one, _ = fab(path, "k3s.join-agent", "--host", "k3s-agent-03", "--yes")
        path.write_text(base + agents_text(3, 9))
        labnet.up(inventory.load(path), log=lambda m: None)
        eight_hosts = [f"k3s-agent-{i:02d}" for i in range(4, 12)]
        eight, _ = fab(path, "k3s.join-agent", *[a for h in eight_hosts for a in ("--host", h)],
                       "--yes")
    finally:
        labnet.down(inventory.load(path), log=lambda m: None)
    print(f"cold deploy (10 hosts, image cached): {cold:.1f} s")
    print(f"  stages: {stages.group(1) if stages else '?'}")
    secs = [t for t, _, _ in noops]
    print(f"no-op re-run (target < 10 s): median {statistics.median(secs):.1f} s, "
          f"min {min(secs):.1f}, max {max(secs):.1f} over {len(secs)} runs")
    for took, load, stages in noops:
        print(f"  {took:5.1f} s at load {load:4.1f}: {stages}")
    print("one more no-op, traced (bench/trace_fab.py):" + trace)
    print(f"join 1 new agent: {one:.1f} s; join 8 new agents: {eight:.1f} s "
          f"= {eight / one:.2f}x (target < 1.5x)")


if __name__ == "__main__":
    main()
