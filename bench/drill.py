"""failover.drill on the lab, the guide's settings against the project's defaults.

For each settings set: a fresh lab (tests/lab/khf_inventory.py: a name and subnet of its own per run),
`fab cluster.deploy --yes`, then every scenario whose tier is deployed, --runs times, each
in its own drill call (a scenario that leaves the cluster unhealthy is reported and the
next one waits for health). Prints per scenario median and max outage and lost writes,
both sets side by side, with the ratio guide / defaults.

  guide     asynchronous replication, HAProxy mysql-check with primary + backup (the
            guide's datastore backend), ssl-hello-chk API check, advert_int 1, no
            periodic gratuitous ARP (garp_master_refresh 0)
  defaults  the inventory's defaults (semi-sync, httpchk, advert_int 1, GARP every 1 s)
Both use rise 3 and a 3 s semi-sync timeout to keep a run short (tests/lab's setting).

  sudo .venv/bin/python bench/drill.py [--runs 1] [--scenario NAME ...] [--only guide]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric import Config  # noqa: E402
from invoke import Context  # noqa: E402
from tabulate import tabulate  # noqa: E402

from tasks.core import inventory  # noqa: E402
from tasks.core.run import Run  # noqa: E402
from tasks.failover import health, scenarios, session  # noqa: E402
from tasks.lab import labnet  # noqa: E402
from tests.lab.khf_inventory import write_inventory  # noqa: E402

SETS = {
    # the guide's datastore backend: mysql-check, primary + backup, a returning primary
    # takes writes back after rise 30 (checks every 2 s, fall 3: HAProxy's defaults),
    # replication by file and position, asynchronous, no TLS
    "guide": {"db": 'semi_sync = false\nhealth_check = "mysql-check"\ngtid = false\n'
                    "check_inter_ms = 2000\nfall = 3\nrise = 30\ntls = false\n"
                    "proxy_protocol = false",
              "balancers": 'api_health_check = "ssl-hello-chk"\nadvert_int = 1\n'
                           "garp_master_refresh = 0"},
    "defaults": {},
}


def deploy(path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("K3S_HA_")}
    env["K3S_HA_INVENTORY"] = str(path)
    p = subprocess.run([sys.executable, "-m", "fabric", "cluster.deploy", "--yes"], cwd=ROOT,
                       env=env, text=True, capture_output=True, timeout=1200,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise SystemExit(f"deploy failed:\n{p.stdout[-3000:]}{p.stderr[-2000:]}")


def fresh_cluster(inv, path: Path) -> Run:
    """A freshly deployed cluster on a fresh lab (a scenario may leave the datastore
    broken for good, as the guide's settings do after a partition: the next one then
    starts from scratch, as an operator restoring from a backup would)."""
    labnet.down(inv, log=lambda m: None)
    labnet.up(inv, log=print)
    deploy(path)
    return Run(Context(config=Config()), "bench", yes=True, inv=inv)


def one_set(name: str, names: list[str], runs: int, folder: Path) -> dict[str, list]:
    path = write_inventory(folder / name, **SETS[name])
    inv = inventory.load(path)
    out: dict[str, list] = {}
    try:
        r = fresh_cluster(inv, path)
        parts = health.deployed(r)
        chosen = [s.name for s in scenarios.select(names)
                  if session.NEEDS[s.tier] <= parts]
        for _ in range(runs):
            for sc in chosen:
                if health.wait_healthy(r, parts, 120)[0] is None:
                    print(f"{name}: the cluster stayed broken; a fresh lab for {sc}")
                    r.close()
                    r = fresh_cluster(inv, path)
                try:
                    res = session.run_drill(r, [sc], 1, True, str(folder / name / "reports"))
                    out.setdefault(sc, []).append(res[0])
                except Exception as e:  # noqa: BLE001 - a benchmark reports and goes on
                    print(f"{name} {sc}: {e}")
                    out.setdefault(sc, []).append(None)
        r.close()
    finally:
        labnet.down(inv, log=lambda m: None)
    return out


def stats(results: list) -> tuple[str, str, str, str]:
    """median and max outage (longest gap), max acked writes lost, max ids reused
    (acknowledged twice, or holding another write)."""
    ok = [x for x in results if x is not None and x[0].measured is not None]
    if not ok:
        return "-", "-", "-", "-"
    outs = [x[0].measured.longest_s for x in ok]
    w = [x[0].writes for x in ok if x[0].writes is not None]
    return (f"{statistics.median(outs):.2f}", f"{max(outs):.2f}",
            str(max(len(x.lost) for x in w)) if w else "-",
            str(max(x.duplicates for x in w)) if w else "-")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--scenario", action="append", default=[])
    ap.add_argument("--only", choices=list(SETS), action="append", default=[])
    a = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="k3sha-bench-drill-"))
    got = {s: one_set(s, a.scenario, a.runs, folder) for s in (a.only or list(SETS))}
    rows = []
    for sc in scenarios.select(a.scenario):
        g = stats(got.get("guide", {}).get(sc.name, []))
        d = stats(got.get("defaults", {}).get(sc.name, []))
        ratio = f"{float(g[0]) / float(d[0]):.1f}x" if "-" not in (g[0], d[0]) \
            and float(d[0]) > 0 else "-"
        rows.append([sc.name, *g, *d, ratio])
    print(tabulate(rows, headers=["scenario", "guide median s", "guide max s", "guide lost",
                                  "guide reused", "defaults median s", "defaults max s",
                                  "defaults lost", "defaults reused", "ratio"],
                   tablefmt="github"))
    print(f"reports: {folder}")


if __name__ == "__main__":
    main()
