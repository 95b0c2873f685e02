"""`fab db.switchover` back and forth under a writer client, many times in a row.

A client on the operator side inserts AUTO_INCREMENT rows through the datastore VIP as
fast as it can (tests/lab/dbfail_kit.py); every few seconds the writer is moved to the
other node. Per switchover: whether the task succeeded, its time, the longest gap between
two acknowledged inserts (outage), acknowledged rows lost, ids acknowledged twice. At the
end: how many failed, and the median and worst outage and task time. A failed switchover
prints its error and the HAProxy server events of both balancers, then the run goes on.

Why many in a row: one switchover in a test passes most of the time even when it races
something. [lab] before the fixes of 2026-11-28, 3 of 25 went back to the old writer (the
standby's check flapped DOWN under load); after them 0 of 25, three runs.

  sudo .venv/bin/python bench/switchover.py [--count 25] [--pause 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.core import inventory  # noqa: E402
from tasks.lab import labnet  # noqa: E402
from tests.lab import dbfail_kit as kit  # noqa: E402


def one(inv, i: int, pause: float) -> tuple[int, float, kit.Result, str]:
    w = kit.Writer(inv, table=f"k3s.sw{i}")
    since = int(time.time())
    with w:
        time.sleep(pause)
        t0 = time.monotonic()
        p = kit.fab(inv, "db.switchover", "--yes")
        took = time.monotonic() - t0
        time.sleep(pause)
    r = kit.verdict(inv, w, "switchover", t0, "", 0.0)
    why = ""
    if p.returncode != 0:
        why = p.stderr.strip() + "".join(
            f"\n  {b}:\n" + kit.on_host(inv, b, f"journalctl -u haproxy --since @{since} -q "
                                        "--no-pager | grep 'Server k3s-db/' | cut -c1-160")
            for b in kit.DB_BALANCERS)
    return p.returncode, took, r, why


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=25)
    ap.add_argument("--pause", type=float, default=2.0, help="s of writes before and after")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("the lab needs root")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inv = inventory.load(kit.write_inventory(Path(tmp)))
        try:
            labnet.up(inv, log=lambda m: None)
            kit.deploy(inv)
            print(f"{'#':>3} {'rc':>3} {'task s':>7} {'outage':>7} {'acked':>7} {'lost':>5} "
                  f"{'reused':>6}")
            for i in range(args.count):
                rc, took, r, why = one(inv, i, args.pause)
                rows.append((rc, took, r))
                print(f"{i:3d} {rc:3d} {took:7.1f} {r.outage:7.2f} {r.acked:7d} {r.lost:5d} "
                      f"{r.reused:6d}", flush=True)
                if why:
                    print(why, flush=True)
                    time.sleep(5)  # the daemons settle before the next move
        finally:
            labnet.down(inv, log=lambda m: None)
    ok = [x for x in rows if x[0] == 0]
    outages, took = [x[2].outage for x in rows], [x[1] for x in ok]
    print(f"\nswitchovers: {len(rows)}, failed: {len(rows) - len(ok)}, acknowledged rows "
          f"lost: {sum(x[2].lost for x in rows)}, ids reused: {sum(x[2].reused for x in rows)}")
    if outages and took:
        print(f"outage median {statistics.median(outages):.2f} s, max {max(outages):.2f} s; "
              f"task median {statistics.median(took):.1f} s, max {max(took):.1f} s")


if __name__ == "__main__":
    main()
