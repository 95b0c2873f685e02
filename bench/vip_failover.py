"""How long a VIP stays unanswered after a fault, seen from a client on the operator side.

A TCP connect to the API VIP (:api_port) is started every 20 ms (each with its own 0.5 s
timeout, so a lost SYN never delays the next probe). Outage = start of the first successful
probe after the fault minus start of the first failed one.

Faults, each on the current holder of the API VIP, median of --runs runs:
  "HAProxy stopped"   systemctl stop haproxy (the track script sends keepalived to FAULT)
  "host powered off"  SIGKILL of the container's init (labnet.power_off)
for the guide's settings (VRRPv2, advert_int 1) and for fast mode (VRRPv3, advert_int 0.1),
plus the longest outage after a partition of the holder heals (garp_master_refresh 1, and
0 with the guide's settings: what the periodic gratuitous ARP default is for).

Runs its own lab instance (tests/lab/khb_inventory.py: a name and subnet of its own) in a
temp folder and always removes it:
  sudo .venv/bin/python bench/vip_failover.py [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.core import inventory
from tasks.lab import labnet  # noqa: E402
from tests.lab.khb_inventory import API_PAIR, API_VIP, start_backends, write_inventory  # noqa: E402

FAST = 'fast_mode = true\nadvert_int = 0.1'


class Probe:
    """TCP connects to addr:port every `every` s in the background; results by start time."""

    def __init__(self, addr: str, port: int, every: float = 0.02, timeout: float = 0.5):
        self.addr, self.port, self.every, self.timeout = addr, port, every, timeout
        self.results: list[tuple[float, bool]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _one(self, t0: float) -> None:
        ok = True
        try:
            socket.create_connection((self.addr, self.port), timeout=self.timeout).close()
        except OSError:
            ok = False
        with self._lock:
            self.results.append((t0, ok))

    def _loop(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            threading.Thread(target=self._one, args=(time.monotonic(),), daemon=True).start()
            nxt += self.every
            time.sleep(max(0.0, nxt - time.monotonic()))

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *a: object) -> None:
        self._stop.set()
        self._thread.join()
        time.sleep(self.timeout + 0.1)

    def sorted(self) -> list[tuple[float, bool]]:
        with self._lock:
            return sorted(self.results)

    def outage_after(self, since: float) -> float | None:
        """First failure at/after `since` until the next success; None if nothing failed."""
        first_fail = None
        for t, ok in self.sorted():
            if t < since:
                continue
            if not ok and first_fail is None:
                first_fail = t
            if ok and first_fail is not None:
                return t - first_fail
        return None if first_fail is None else float("inf")

    def longest_outage(self, since: float) -> float:
        """Longest run of failed probes started at/after `since` (0 when none failed)."""
        worst, start = 0.0, None
        for t, ok in self.sorted():
            if t < since:
                continue
            if not ok and start is None:
                start = t
            elif ok and start is not None:
                worst, start = max(worst, t - start), None
        if start is not None:
            worst = float("inf")
        return worst


def ssh(inv: inventory.Inventory, host: str, cmd: str) -> str:
    return subprocess.run(labnet.ssh_argv(inv, host, [cmd]), check=True, capture_output=True,
                          text=True, timeout=60).stdout


def fab(inv: inventory.Inventory, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("K3S_HA_")}
    env["K3S_HA_INVENTORY"] = str(inv.path)
    p = subprocess.run([sys.executable, "-m", "fabric", *args], cwd=ROOT, env=env, text=True,
                       capture_output=True, timeout=900, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError(f"fab {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    return p


def holder(inv: inventory.Inventory, hosts: tuple[str, ...], vip: str) -> list[str]:
    """Hosts holding `vip`, read inside each host's namespace (works while partitioned)."""
    out = []
    for h in hosts:
        if not labnet.is_running(inv, h):
            continue
        res = subprocess.run(["ip", "-n", labnet.host_ns(labnet.lab_name(inv), h), "-o", "addr"],
                             capture_output=True, text=True)
        if f"inet {vip}/" in res.stdout:
            out.append(h)
    return out


def wait_for(fn, timeout: float = 60, every: float = 0.2):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while True:
        val = fn()
        if val or time.monotonic() > end:
            return val
        time.sleep(every)


def settle(inv: inventory.Inventory, want: str) -> None:
    """Wait until `want` alone holds the API VIP and answers (preempted back)."""
    ok = wait_for(lambda: holder(inv, API_PAIR, API_VIP) == [want], 90)
    if not ok:
        raise RuntimeError(f"{want} did not take the API VIP back: {holder(inv, API_PAIR, API_VIP)}")
    time.sleep(3)  # past garp_master_delay and rise, so the next fault starts clean


def fault_run(inv: inventory.Inventory, kind: str, port: int) -> float:
    first = API_PAIR[0]
    settle(inv, first)
    with Probe(API_VIP, port) as probe:
        time.sleep(0.5)
        t = time.monotonic()
        if kind == "haproxy":
            ssh(inv, first, "systemctl stop haproxy")
        else:
            labnet.power_off(inv, first)
        wait_for(lambda: holder(inv, API_PAIR, API_VIP) == [API_PAIR[1]], 30)
        time.sleep(1.5)
    outage = probe.outage_after(t)
    if kind == "haproxy":
        ssh(inv, first, "systemctl start haproxy")
    else:
        labnet.power_on(inv, first)
    return outage if outage is not None else 0.0


def heal_run(inv: inventory.Inventory, port: int, wait: float = 4.0, watch: float = 8.0
             ) -> float:
    first = API_PAIR[0]
    settle(inv, first)
    labnet.partition(inv, first)
    try:
        wait_for(lambda: len(holder(inv, API_PAIR, API_VIP)) == 2, 30)
        time.sleep(wait)  # the client now talks to the partner
    finally:
        with Probe(API_VIP, port) as probe:
            time.sleep(0.3)
            t = time.monotonic()
            labnet.heal(inv, first)
            wait_for(lambda: holder(inv, API_PAIR, API_VIP) == [first], 30)
            time.sleep(watch)
    return probe.longest_outage(t)


def fmt(xs: list[float]) -> str:
    return (f"median {statistics.median(xs):.2f} s, worst {max(xs):.2f} s  (runs: "
            + ", ".join(f"{x:.2f}" for x in xs) + ")")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per fault and mode")
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    ap.add_argument("--modes", default="guide,fast,nogarp",
                    help="comma-separated: guide, fast, nogarp (heal without periodic GARP)")
    args = ap.parse_args()
    args.modes = set(args.modes.split(","))
    if os.geteuid() != 0:
        sys.exit("the lab needs root")
    folder = Path(tempfile.mkdtemp(prefix="khb-bench-"))
    guide = inventory.load(write_inventory(folder))
    fast = inventory.load(write_inventory(folder, balancers=FAST, name="fast.toml"))
    nogarp = inventory.load(write_inventory(folder, balancers="garp_master_refresh = 0",
                                            name="nogarp.toml"))
    port = guide.balancers["api_port"]
    results: list[tuple[str, str, str]] = []
    try:
        labnet.up(guide, log=lambda m: None)
        start_backends(guide)
        for mode, inv in (("guide (VRRPv2, advert_int 1)", guide),
                          ("fast (VRRPv3, advert_int 0.1)", fast)):
            if ("guide" if inv is guide else "fast") not in args.modes:
                continue
            fab(inv, "balancers.deploy", "--role", "api")
            for kind, label in (("haproxy", "HAProxy stopped"), ("power", "host powered off")):
                xs = [fault_run(inv, kind, port) for _ in range(args.runs)]
                results.append((mode, label, fmt(xs)))
                print(f"{mode:32} {label:18} {fmt(xs)}", flush=True)
            xs = [heal_run(inv, port) for _ in range(max(1, args.runs // 2))]
            results.append((mode, "partition healed", fmt(xs)))
            print(f"{mode:32} {'partition healed':18} longest outage {fmt(xs)}", flush=True)
        # why garp_master_refresh is on by default: the same heal without periodic GARP
        mode = "guide, garp_master_refresh 0"
        if "nogarp" in args.modes:
            fab(nogarp, "balancers.deploy", "--role", "api")
            xs = [heal_run(nogarp, port, watch=45) for _ in range(max(1, args.runs // 2))]
            results.append((mode, "partition healed", fmt(xs)))
            print(f"{mode:32} {'partition healed':18} longest outage {fmt(xs)}", flush=True)
    finally:
        if not args.keep:
            labnet.down(guide, log=lambda m: None)
    print("\nVIP failover (TCP connect to the API VIP every 20 ms from the operator side)")
    for mode, label, text in results:
        print(f"  {mode:32} {label:18} {text}")


if __name__ == "__main__":
    main()
