"""Idempotent primitives: read the state, act only on the difference, say if it changed.

Each returns True when it changed something. In dry run (`fab --dry`, or a task's
`--dry`) they print what they would do (unified diffs for files) and change nothing.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import logging
import shlex
import time
import uuid
from typing import Iterable, Iterator

from fabric import Connection

from . import lookahead
from .errors import StepFailed
from .run import poll
from .ssh import host_name, is_dry, os_family, put_private, read_file_meta, sh

log = logging.getLogger("k3sha")


def missing_packages(conn: Connection, packages: list[str], family: str) -> list[str]:
    if family == "debian":
        q = " ".join(shlex.quote(p) for p in packages)
        res = sh(conn, f"dpkg-query -W -f='${{Package}} ${{db:Status-Status}}\\n' {q} 2>/dev/null",
                 warn=True, write=False)
        installed = {ln.split()[0] for ln in res.stdout.splitlines()
                     if ln.strip().endswith(" installed")}
    else:
        res = sh(conn, "rpm -q --qf '%{NAME}\\n' " + " ".join(shlex.quote(p) for p in packages),
                 warn=True, write=False)
        installed = {ln.strip() for ln in res.stdout.splitlines() if "not installed" not in ln}
    return [p for p in packages if p not in installed]


# s, one per try of `apt-get update`: short first, since a hung update makes no progress,
# longer after, for a slow mirror (apt resumes partial files)
APT_UPDATE_TIMEOUTS = (60, 180, 600)
INSTALL_TIMEOUT = 1200


def ensure_packages(conn: Connection, packages: list[str]) -> bool:
    """Install missing packages; no index update when everything is present."""
    family = os_family(conn)
    missing = missing_packages(conn, packages, family)
    if not missing:
        return False
    q = " ".join(shlex.quote(p) for p in missing)
    if family == "debian":
        env = "DEBIAN_FRONTEND=noninteractive"
        # apt 2.6 has been seen waiting forever after apt-cacher-ng failed a concurrent
        # index refresh (README, lab): each try is stopped on the host and retried
        for attempt, limit in enumerate(APT_UPDATE_TIMEOUTS, 1):
            last = attempt == len(APT_UPDATE_TIMEOUTS)
            res = sh(conn, f"{env} apt-get update -q", timeout=limit, warn=not last)
            if res.exited == 0:
                break
            log.warning("[%s] apt-get update %s, trying again", host_name(conn),
                        f"stopped after {limit} s" if res.exited == 124 else f"exited {res.exited}")
            time.sleep(5)
        sh(conn, f"{env} apt-get install -y -q -o Dpkg::Options::=--force-confold {q}",
           timeout=INSTALL_TIMEOUT)
    else:
        sh(conn, f"dnf install -y -q {q}", timeout=INSTALL_TIMEOUT)
    return True


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unified_diff(old: bytes | None, new: bytes, path: str) -> str:
    a = (old or b"").decode(errors="replace").splitlines(keepends=True)
    b = new.decode(errors="replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=f"{path} (live)" if old is not None
                                        else "/dev/null", tofile=f"{path} (new)"))


@contextlib.contextmanager
def looked(conn: Connection, *, files: Iterable[str] = (), stats: Iterable[str] = (),
           sums: Iterable[str] = (), units: Iterable[str] = ()) -> Iterator[lookahead.Look]:
    """`with looked(conn, files=[...], ...):` the step's reads in one round trip, used by
    the primitives below until the block ends or a write runs on the host (lookahead.py).
    files: content + mode/owner; stats: mode/owner/size; sums: sha256; units: systemd."""
    text, asked = lookahead.script(files, stats, sums, units)
    res = sh(conn, text, write=False)
    try:
        look = lookahead.parse(res.stdout, asked)
    except ValueError as e:  # the output was cut short: never taken as absent paths
        raise StepFailed(f"{host_name(conn)}: {e}; nothing was changed. Fix: run again "
                         "(the SSH session ended early)") from None
    lookahead.remember(conn, look)
    try:
        yield look
    finally:
        lookahead.forget(conn)


def path_stat(conn: Connection, path: str) -> lookahead.Stat | None:
    """The path's mode/owner/size/kind, None if absent (read-only; a `looked` block's
    answer when it holds one)."""
    hit, st = lookahead.seen(conn, "stats", path)
    if hit:
        return st  # type: ignore[no-any-return]
    q = shlex.quote(path)
    res = sh(conn, f"test -e {q} && stat -c '%a %U %G %s %F' {q}", warn=True, write=False)
    return lookahead.parse_stat(res.stdout.strip()) if res.exited == 0 else None


def ensure_file(conn: Connection, path: str, content: str | bytes, *, mode: str = "0644",
                owner: str = "root", group: str = "root", validate: str | None = None,
                secret: bool = False, backup: bool = True) -> bool:
    """Make `path` hold `content` with mode/owner; True if anything changed.

    The new content is uploaded to a temp file, installed as a staged copy beside the
    target (same filesystem), checked with `validate` (a command with %s for the staged
    path; on failure the live file is untouched and the validator's output is shown),
    the old file is kept as PATH.bak, then the staged copy is moved over the target.
    secret=True: never shows content or diffs.
    """
    data = content.encode() if isinstance(content, str) else content
    name = conn.k3s_host.name  # type: ignore[attr-defined]
    current, st = read_file_meta(conn, path)
    want_meta = (mode.rjust(4, "0"), owner, group)
    if current is not None and sha256(current) == sha256(data):
        if st == want_meta:
            return False
        if is_dry(conn):
            print(f"[{name}] would set {path} to mode {mode} owner {owner}:{group} (was {st})")
            return True
        q = shlex.quote(path)
        sh(conn, f"chown {owner}:{group} {q} && chmod {mode} {q}", touches=(path,))
        return True
    if is_dry(conn):
        if secret:
            print(f"[{name}] would replace {path} (secret content, diff not shown)")
        else:
            print(f"[{name}] would change {path}:\n{unified_diff(current, data, path)}")
        return True
    tmp = f"/tmp/.k3sha-{uuid.uuid4().hex}"
    staged = f"{path}.k3sha-new"
    qt, qs, qp = shlex.quote(tmp), shlex.quote(staged), shlex.quote(path)
    touched = (path, staged, f"{path}.bak")
    put_private(conn, io.BytesIO(data), tmp)
    stage = f"install -m {mode} -o {owner} -g {group} {qt} {qs}"
    replace = (f"cp -p {qp} {qp}.bak && " if backup and current is not None else "") + \
        f"mv -f {qs} {qp}"
    if not validate:  # one round trip: stage, keep the old one, replace
        sh(conn, f"{stage} && {replace}; rc=$?; rm -f {qt}; exit $rc", touches=touched)
        return True
    sh(conn, f"{stage}; rc=$?; rm -f {qt}; exit $rc", touches=touched)
    res = sh(conn, validate.replace("%s", qs), warn=True, touches=touched)
    if res.exited != 0:
        sh(conn, f"rm -f {qs}", warn=True, touches=touched)
        out = (res.stdout + res.stderr).strip()
        raise StepFailed(f"{name}: the new {path} failed validation ({validate.split()[0]} "
                         f"exit {res.exited}); the live file is untouched:\n    "
                         + "\n    ".join(out.splitlines()[-12:]))
    sh(conn, replace, touches=touched)
    return True


def ensure_dir(conn: Connection, path: str, *, mode: str = "0755", owner: str = "root",
               group: str = "root") -> bool:
    st = path_stat(conn, path)
    want = (mode.rjust(4, "0"), owner, group)
    if st is not None and st.meta == want:
        return False
    q = shlex.quote(path)
    sh(conn, f"mkdir -p {q} && chown {owner}:{group} {q} && chmod {mode} {q}",
       touches=(path,))
    return True


ENABLED_STATES = ("enabled", "static", "alias", "generated")


def service_state(conn: Connection, name: str) -> tuple[bool, bool]:
    """(enabled, active) for a systemd unit."""
    hit, unit = lookahead.seen(conn, "units", name)
    if hit:
        return unit[0] in ENABLED_STATES, unit[1] == "active"
    q = shlex.quote(name)
    out = sh(conn, f"echo \"$(systemctl is-enabled {q} 2>/dev/null)\"; systemctl is-active {q}",
             warn=True, write=False).stdout.split("\n")
    enabled, active = out[0].strip(), (out[1].strip() if len(out) > 1 else "")
    return enabled in ENABLED_STATES, active == "active"


# systemd's passing states, and how long (s) a started/reloaded unit may stay in one
TRANSIENT_STATES = ("activating", "reloading", "deactivating")
SERVICE_SETTLE_TIMEOUT = 15


def ensure_service(conn: Connection, name: str, *, changed_inputs: bool = False,
                   reload: bool = False) -> bool:
    """Enabled and active. When an input changed: reload (if reload=True) or restart.

    Nothing is restarted when nothing changed and the service runs.
    """
    enabled, active = service_state(conn, name)
    did = False
    q = shlex.quote(name)
    if not enabled:
        sh(conn, f"systemctl enable {q}")
        did = True
    if not active:
        sh(conn, f"systemctl start {q}")
        did = True
    elif changed_inputs:
        sh(conn, f"systemctl {'reload' if reload else 'restart'} {q}")
        did = True
    if did and not is_dry(conn):
        # "reloading" / "activating" pass within seconds (HAProxy is Type=notify): wait
        _, state = poll(lambda: sh(conn, f"systemctl is-active {q}", warn=True,
                                   write=False).stdout.strip(),
                        timeout=SERVICE_SETTLE_TIMEOUT, interval=0.3,
                        until=lambda st: st not in TRANSIENT_STATES)
        if state != "active":
            res = sh(conn, f"journalctl -u {q} -n 15 --no-pager", warn=True, write=False)
            raise StepFailed(f"{conn.k3s_host.name}: service {name} is not active after start:\n"  # type: ignore[attr-defined]
                             + res.stdout[-1500:])
    return did


