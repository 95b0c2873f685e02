"""Lab benchmark: image build time (cold), lab.up time with a cached image, RAM per host.

Run as root from the project folder:  .venv/bin/python bench/lab_up.py [--skip-cold]

The cold build goes to a temporary cache folder (the shared image cache is not touched).
The up/RAM figures use a separate lab instance ("kbn", a free 10.x.0.0/24) with the
shipped inventory's hosts, torn down at the end. Results also go to bench/results/.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.core import inventory
from tasks.lab import containers, image, labnet  # noqa: E402

NAME = "kbn"


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def bench_inventory(folder: Path) -> inventory.Inventory:
    prefix = labnet.free_subnet(labnet.machine_routes()).rsplit(".", 1)[0]
    text = (ROOT / "hosts.toml").read_text()
    text = text.replace('name = "kha"', f'name = "{NAME}"').replace("10.77.0.", prefix + ".")
    path = folder / "hosts.toml"
    path.write_text(text)
    return inventory.load(path)


def cold_build(inv: inventory.Inventory) -> float:
    saved = image.IMAGE_CACHE
    tmp = Path(tempfile.mkdtemp(prefix="bench-images-", dir="/var/tmp"))
    image.IMAGE_CACHE = tmp
    try:
        t0 = time.monotonic()
        _, built = labnet.ensure_image(inv, print)
        assert built
        return time.monotonic() - t0
    finally:
        image.IMAGE_CACHE = saved
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-cold", action="store_true", help="skip the cold image build")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/lab_up.py: run as root", file=sys.stderr)
        return 2
    results: dict[str, float | int | str] = {}
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as d:
        inv = bench_inventory(Path(d))
        if not args.skip_cold:
            results["image_build_cold_s"] = round(cold_build(inv), 1)
            print(f"image build (cold, debootstrap + finish): {results['image_build_cold_s']} s")
        labnet.ensure_image(inv, print)  # the shared cache, so the up below is "cached"
        labnet.down(inv, log=lambda _: None)
        before = mem_available_kib()
        try:
            t0 = time.monotonic()
            res = labnet.up(inv, log=print)
            results["lab_up_cached_s"] = round(time.monotonic() - t0, 1)
            results["hosts"] = res.hosts
            time.sleep(5)  # let the boots settle
            after = mem_available_kib()
            pss = [sum(pss_kib(p) for p in containers.container_pids(inv, h))
                   for h in inv.hosts]
            results["ram_per_host_pss_mib"] = round(sum(pss) / len(pss) / 1024, 1)
            results["ram_per_host_memavailable_mib"] = round((before - after) / res.hosts / 1024,
                                                             1)
            t0 = time.monotonic()
            labnet.up(inv, log=print)
            results["lab_up_again_s"] = round(time.monotonic() - t0, 2)
        finally:
            t0 = time.monotonic()
            labnet.down(inv, log=lambda _: None)
            results["lab_down_s"] = round(time.monotonic() - t0, 1)
    print(f"lab.up, cached image, {results['hosts']} hosts answering SSH: "
          f"{results['lab_up_cached_s']} s (target < 60 s)")
    print(f"lab.up again (no-op): {results['lab_up_again_s']} s; lab.down: "
          f"{results['lab_down_s']} s")
    print(f"RAM per booted host: {results['ram_per_host_pss_mib']} MiB (PSS of its processes), "
          f"{results['ram_per_host_memavailable_mib']} MiB (MemAvailable drop / hosts)")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "lab_up.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
