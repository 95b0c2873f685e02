"""How often the datastore's health check flaps under packet loss, with the project's fast
detection (`inter 500ms fastinter 100ms fall 3 rise 3`) against the guide's (`inter 2s
fall 3 rise 30`).

A false DOWN of the writer moves the writes (no failback: the writer stays moved), so
faster detection has a price under a lossy network; this measures it. For each setting: a
fresh lab (tests/lab/dbfail_kit.py: two db balancers, two databases), a writer client
inserting through the datastore VIP, then `--loss` % of the frames to and from each
database dropped in turn for `--seconds`; the HAProxy of the VIP holder is read 5 times a
second. Prints per setting and node: the times HAProxy marked it DOWN, the writer moves
(the server taking writes changed), the longest gap between acknowledged writes since
the loss began, and the acknowledged writes lost and ids reused (must stay 0).

  sudo .venv/bin/python bench/check_flapping.py [--loss 5] [--seconds 60] [--only defaults]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric import Config  # noqa: E402
from invoke import Context  # noqa: E402
from tabulate import tabulate  # noqa: E402

from tasks.core import inventory  # noqa: E402
from tasks.core.run import Run  # noqa: E402
from tasks.facts import datastore  # noqa: E402
from tasks.lab import labnet  # noqa: E402
from tests.lab import dbfail_kit as kit  # noqa: E402

SETTINGS = {"guide": kit.GUIDE, "defaults": ""}


def watch(r: Run, stop: threading.Event, seen: list) -> None:
    """(time, {server: status}, writer) five times a second from the VIP holder."""
    while not stop.is_set():
        view = datastore.vip_servers(r)
        if view.servers is not None:
            w = datastore.of_view(view, {"k3s-db-01", "k3s-db-02"}).host
            seen.append((time.monotonic(), {s.server: s.status.split()[0]
                                            for s in view.servers}, w))
        stop.wait(0.2)


def downs(seen: list, node: str) -> int:
    states = [s.get(node, "") for _, s, _ in seen]
    return sum(1 for a, b in zip(states, states[1:]) if a.startswith("UP") and
               not b.startswith("UP"))


def moves(seen: list) -> int:
    ws = [w for _, _, w in seen if w]
    return sum(1 for a, b in zip(ws, ws[1:]) if a != b)


def one_setting(name: str, loss: int, seconds: int, folder: Path) -> list[list]:
    inv = inventory.load(kit.write_inventory(folder / name, SETTINGS[name]))
    rows = []
    try:
        labnet.up(inv, log=lambda m: None)
        kit.deploy(inv)
        r = Run(Context(config=Config()), "flapping bench", yes=True, inv=inv)
        with kit.Writer(inv, table="k3s.flap") as writer:
            t0 = time.monotonic()
            for node in (kit.DB1, kit.DB2):
                seen: list = []
                stop = threading.Event()
                w = threading.Thread(target=watch, args=(r, stop, seen), daemon=True)
                w.start()
                labnet.loss(inv, node, loss, direction="both")
                try:
                    time.sleep(seconds)
                finally:
                    labnet.clear_loss(inv, node)
                    stop.set()
                    w.join()
                rows.append([name, node, loss, seconds, downs(seen, node), moves(seen),
                             f"{writer.outage(t0):.2f}"])
                print(rows[-1], flush=True)
                time.sleep(10)  # settle (rise) before the next node
        res = kit.verdict(inv, writer, "loss", t0, "", None)
        for row in rows:
            row += [res.lost, res.reused]
        r.close()
    finally:
        labnet.down(inv, log=lambda m: None)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loss", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--only", choices=list(SETTINGS), action="append", default=[])
    a = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="k3sha-bench-flap-"))
    rows = []
    for name in a.only or list(SETTINGS):
        rows += one_setting(name, a.loss, a.seconds, folder)
    print(tabulate(rows, headers=["settings", "lossy node", "loss %", "seconds",
                                  "marked DOWN", "writer moves", "longest write gap s",
                                  "acked lost", "ids reused"], tablefmt="github"))


if __name__ == "__main__":
    main()
