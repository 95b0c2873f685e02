"""The lab's airgap folder: `[cluster] airgap_dir`, when it lies inside the lab's `.lab/`
folder, is filled by `lab.up` with the k3s-ha stand-in (tasks/lab/standin: NOT k3s) and
its install.sh, so `install_method = "binary"` installs the stand-in on the lab's hosts.

The build is byte-identical for the same sources: it is built into a temporary folder and
a file is replaced only when its bytes differ, so an unchanged stand-in is never re-uploaded.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..core.inventory import Inventory
from .names import Log, lab_name, quiet, state_dir


def lab_airgap_dir(inv: Inventory) -> Path | None:
    """The airgap folder lab.up fills: airgap_dir when relative and inside `.lab/`."""
    raw = str(inv.cluster.get("airgap_dir", "") or "")
    if not raw or Path(raw).is_absolute():
        return None
    folder = inv.resolve_path(raw).resolve()
    lab_root = state_dir(inv).parent.resolve()
    return folder if folder.is_relative_to(lab_root) and folder != lab_root else None


def _same(a: Path, b: Path) -> bool:
    return b.is_file() and a.read_bytes() == b.read_bytes() \
        and (a.stat().st_mode & 0o777) == (b.stat().st_mode & 0o777)


def sync_files(src: Path, dst: Path) -> bool:
    """Copy every file of `src` into `dst` whose bytes or mode differ; True if any did."""
    dst.mkdir(parents=True, exist_ok=True)
    changed = False
    for f in sorted(src.iterdir()):
        target = dst / f.name
        if _same(f, target):
            continue
        tmp = target.with_name(f".{f.name}.new")
        shutil.copy2(f, tmp)
        tmp.replace(target)
        changed = True
    return changed


def ensure_airgap(inv: Inventory, log: Log = quiet) -> bool:
    """Build the stand-in into the lab's airgap folder when it differs; True if it changed."""
    folder = lab_airgap_dir(inv)
    if folder is None:
        return False
    from .standin.build import build

    with tempfile.TemporaryDirectory(prefix="k3sha-standin-") as tmp:
        build(tmp)
        changed = sync_files(Path(tmp), folder)
    if changed:
        log(f"lab {lab_name(inv)}: built the k3s-ha stand-in (NOT k3s) into {folder}")
    return changed
