"""Datastore failover under a writer client: the guide's settings and the project's
defaults side by side.

A client on the operator side inserts AUTO_INCREMENT rows through the datastore VIP as
fast as it can (one statement per row) and records every acknowledgement. Per fault:
  outage          the longest gap between two acknowledgements after the fault
  acked lost      acknowledged (id, tag) pairs not on the writer afterwards
  ids reused      ids acknowledged twice
  healthy after   seconds from the repair to both replicas running, db.status exit 0
                  (after db.rejoin where a node was fenced; "never" = not within 60 s: that
                  setting stops there, replication stays broken)
Faults (tests/lab/dbfail_kit.py): writer power cut, writer partition, standby power cut,
replication link cut (nftables drop between the two db addresses in the switch), each
repaired after --heal seconds.

The guide's settings: mysql-check, primary + backup, inter 2 s fall 3 rise 30, file/position
replication, no TLS; the project's defaults: the sticky writer, the replication-aware check
and fence, inter 500 ms fastinter 100 ms fall 3 rise 3, GTID, TLS (no PROXY protocol: the
writer client runs on this machine). Each runs on a fresh lab of its own (tests/lab/dbfail_kit.py):
  sudo .venv/bin/python bench/datastore_failover.py [--heal 20] [--only defaults|guide]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.core import inventory  # noqa: E402
from tasks.lab import labnet  # noqa: E402
from tests.lab import dbfail_kit as kit  # noqa: E402

SETTINGS = {"guide": kit.GUIDE, "defaults": ""}


def one_setting(name: str, heal: float) -> list[kit.Result | str]:
    out: list[kit.Result | str] = []
    with tempfile.TemporaryDirectory() as tmp:
        inv = inventory.load(kit.write_inventory(Path(tmp), SETTINGS[name]))
        try:
            labnet.up(inv, log=lambda m: None)
            kit.deploy(inv)
            for i, f in enumerate(kit.FAULTS):
                try:
                    r = kit.run_fault(inv, f, heal, f"k3s.b{i}", must_heal=False)
                except Exception as e:  # noqa: BLE001 - a row saying why, then the next setting
                    out.append(f"{f.name}: {str(e).splitlines()[0][:200]}")
                    break
                out.append(r)
                print(row(name, r), flush=True)
                if r.healthy_after is None:
                    out.append(f"  (replication not healthy again:{kit.io_errors(inv)})")
                    break  # replication broken for good: later faults would measure nothing
        finally:
            try:
                kit.repl_cut(inv, False)
            except Exception:  # noqa: BLE001
                pass
            labnet.down(inv, log=lambda m: None)
    return out


def row(setting: str, r: kit.Result | str) -> str:
    if isinstance(r, str):
        return f"{setting:<9} {r}"
    return (f"{setting:<9} {r.fault:<22} {r.outage:7.2f} {r.acked:7d} {r.lost:6d} "
            f"{r.reused:6d} {_healthy(r.healthy_after):>8} {'yes' if r.checksum_ok else 'NO':>5} "
            f"{r.errant or '-'}")


def _healthy(t: float | None) -> str:
    return "never" if t is None else f"{t:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--heal", type=float, default=20)
    ap.add_argument("--only", choices=sorted(SETTINGS))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("the lab needs root")
    lines = []
    for name in [args.only] if args.only else ["guide", "defaults"]:
        lines += [row(name, r) for r in one_setting(name, args.heal)]
    print(f"\nrepair after {args.heal:g} s; client: one AUTO_INCREMENT insert per statement")
    print(f"{'settings':<9} {'fault':<22} {'outage':>7} {'acked':>7} {'lost':>6} {'reused':>6} "
          f"{'healthy':>8} {'equal':>5} rejoined")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
