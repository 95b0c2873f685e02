"""Getting k3s onto a host: the two install methods and the upstream installer run.

`script`: the upstream installer is fetched on the host (`curl -sfL https://get.k3s.io`)
and run with a pinned INSTALL_K3S_VERSION; it downloads the binary itself. `binary`
(airgap): the k3s binary, install.sh and any images tarballs come from the local folder
`[cluster] airgap_dir` and are uploaded only when their sha256 differs on the host; the
installer then runs with INSTALL_K3S_SKIP_DOWNLOAD=true. Either way the installer never
enables or starts k3s (INSTALL_K3S_SKIP_ENABLE/_SKIP_START=true; k3s/nodes.start does) and
gets every K3S_* variable on stdin.
"""
from __future__ import annotations

import hashlib
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path

from fabric import Connection

from ..core.cli import say
from ..core.errors import InputError
from ..core.inventory import Inventory
from ..core import lookahead
from ..core.ops import ensure_dir, path_stat
from ..core.ssh import host_name, is_dry, put_private, sh
from ..facts.k3s import installed_version
from .config import (BIN_PATH, IMAGES_DIR, INSTALLER_PATH, STATE_DIR, Role, installer_command,
                     installer_env, render_env)

SCRIPT_URL = "https://get.k3s.io"
INSTALLER_TIMEOUT = 600
IMAGE_SUFFIXES = (".tar", ".tar.gz", ".tar.zst", ".tgz")


@dataclass(frozen=True)
class Airgap:
    """The local files of the `binary` method."""

    binary: Path
    installer: Path
    images: tuple[Path, ...]


def method(inv: Inventory) -> str:
    return str(inv.cluster.get("install_method", "script"))


def airgap(inv: Inventory) -> Airgap:
    """The airgap folder's files; InputError naming what is missing and the fix."""
    raw = str(inv.cluster.get("airgap_dir", "") or "")
    if not raw:
        raise InputError("[cluster] install_method = \"binary\" needs [cluster] airgap_dir: a "
                         "local folder with the k3s binary and install.sh. Fix: set airgap_dir "
                         "(relative to the inventory file) or use install_method = \"script\"")
    folder = inv.resolve_path(raw)
    missing = [n for n in ("k3s", "install.sh") if not (folder / n).is_file()]
    if missing:
        raise InputError(f"[cluster] airgap_dir {folder}: {', '.join(missing)} not found there. "
                         "Fix: put the k3s binary (named k3s) and get.k3s.io's install.sh "
                         "(named install.sh) in that folder")
    images = tuple(sorted(p for p in folder.iterdir()
                          if p.is_file() and p.name.endswith(IMAGE_SUFFIXES)))
    return Airgap(folder / "k3s", folder / "install.sh", images)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remote_sha256(conn: Connection, path: str) -> str:
    hit, digest = lookahead.seen(conn, "sums", path)
    if hit:
        return digest  # type: ignore[no-any-return]
    res = sh(conn, f"sha256sum {shlex.quote(path)}", warn=True, write=False)
    return res.stdout.split()[0] if res.exited == 0 and res.stdout.strip() else ""


def ensure_upload(conn: Connection, local: Path, remote: str, mode: str) -> bool:
    """Upload `local` to `remote` unless the host already has the same sha256 there.

    Staged beside the target then moved, so a running k3s never sees a half-written binary.
    """
    if remote_sha256(conn, remote) == file_sha256(local):
        return False
    if is_dry(conn):
        say(f"[{host_name(conn)}] would upload {local} to {remote} (mode {mode})")
        return True
    tmp = f"/tmp/.k3sha-{uuid.uuid4().hex}"
    staged = f"{remote}.k3sha-new"
    qt, qs, qr = shlex.quote(tmp), shlex.quote(staged), shlex.quote(remote)
    put_private(conn, str(local), tmp)
    sh(conn, f"install -D -m {mode} -o root -g root {qt} {qs} && mv -f {qs} {qr}; rc=$?; "
             f"rm -f {qt}; exit $rc", touches=(remote, staged))
    return True


def ensure_airgap_files(conn: Connection, inv: Inventory) -> bool:
    """binary method: k3s, install.sh and images on the host. True if the binary changed."""
    ag = airgap(inv)
    ensure_dir(conn, STATE_DIR, mode="0700")
    ensure_upload(conn, ag.installer, INSTALLER_PATH, "0700")
    for img in ag.images:
        ensure_upload(conn, img, f"{IMAGES_DIR}/{img.name}", "0644")
    return ensure_upload(conn, ag.binary, BIN_PATH, "0755")


def ensure_script(conn: Connection) -> bool:
    """script method: the upstream installer fetched on the host, once."""
    ensure_dir(conn, STATE_DIR, mode="0700")
    st = path_stat(conn, INSTALLER_PATH)
    if st is not None and st.size > 0:
        return False
    tmp = shlex.quote(f"{INSTALLER_PATH}.k3sha-new")
    sh(conn, f"curl -sfL --retry 3 -o {tmp} {SCRIPT_URL} && chmod 700 {tmp} && "
             f"mv -f {tmp} {INSTALLER_PATH}", timeout=120)
    return True


def binary_reads(inv: Inventory) -> dict[str, list[str]]:
    """What binary_outdated reads on a host, for one `ops.looked` round trip."""
    if method(inv) != "binary":
        return {"stats": [STATE_DIR, INSTALLER_PATH]}
    images = [f"{IMAGES_DIR}/{img.name}" for img in airgap(inv).images]
    return {"stats": [STATE_DIR], "sums": [INSTALLER_PATH, *images, BIN_PATH]}


def binary_outdated(conn: Connection, inv: Inventory) -> bool:
    """Whether the host's k3s must be (re)installed: binary method uploads by sha256 (see
    ensure_airgap_files); script method compares `k3s --version` with the pinned version."""
    if method(inv) == "binary":
        return ensure_airgap_files(conn, inv)
    ensure_script(conn)
    return installed_version(conn) != inv.cluster["k3s_version"]


def run_installer(conn: Connection, inv: Inventory, role: Role, env: dict[str, str]) -> None:
    """The installer with INSTALL_K3S_SKIP_ENABLE/_SKIP_START and the node's K3S_* variables
    on stdin."""
    stdin = render_env(installer_env(inv, env, method=method(inv)))
    sh(conn, installer_command(role), stdin=stdin, timeout=INSTALLER_TIMEOUT)


def uninstall(conn: Connection, role: Role) -> bool:
    """The installer's own uninstall script, when present (True if it ran)."""
    script = role.uninstall_script
    if sh(conn, f"test -x {script}", warn=True, write=False).exited != 0:
        return False
    sh(conn, script, timeout=300)
    return True
