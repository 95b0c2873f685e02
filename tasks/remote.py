"""SSH machinery and idempotent primitives (no tasks here).

Connections come from the inventory, with host keys checked against a known_hosts
file (never auto-accepted). Primitives read state first and act only on the
difference, returning True when they changed something. In dry run (`fab --dry`, or
a task's `--dry`) they print what they would do (unified diffs for files) and change
nothing; read-only probes still run for real (`dry=False`).
"""
from __future__ import annotations

import difflib
import hashlib
import io
import logging
import shlex
import socket
import subprocess
import time
import uuid
from typing import Any, Callable

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut, UnexpectedExit

from .errors import ConnectError, InputError, StepFailed
from .inventory import Host, Inventory

log = logging.getLogger("k3sha")


# ---------------------------------------------------------------- connections
def lab_route_ok(inv: Inventory, address: str) -> bool:
    """True when `address` is routed through this lab's operator interface."""
    dev = f"{inv.lab['name']}-op"
    try:
        out = subprocess.run(["ip", "-o", "route", "get", address], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    parts = out.split()
    return "dev" in parts and parts[parts.index("dev") + 1] == dev


def connect(inv: Inventory, host: Host, config: Config | None = None) -> Connection:
    """A Fabric Connection to `host`, with strict host-key checking.

    For a lab inventory, refuses unless the address is routed through the lab's own
    interface: lab traffic never leaves the machine.
    """
    if inv.is_lab and not lab_route_ok(inv, host.address):
        raise ConnectError(
            f"{host.name} ({host.address}): the lab '{inv.lab['name']}' is not up (no route via "
            f"{inv.lab['name']}-op); refusing to send lab traffic elsewhere. Fix: fab lab.up")
    known = inv.resolve_path(inv.ssh["known_hosts"])
    kwargs: dict[str, Any] = {"allow_agent": not inv.is_lab, "look_for_keys": not inv.is_lab}
    if host.ssh_key:
        kwargs["key_filename"] = str(inv.resolve_path(host.ssh_key))
    cfg = config.clone() if config is not None else Config()
    conn = Connection(host.address, user=host.ssh_user, port=host.ssh_port, config=cfg,
                      connect_timeout=inv.ssh["connect_timeout"], connect_kwargs=kwargs)
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if known.exists():
        conn.client.load_host_keys(str(known))
    conn.k3s_host = host  # type: ignore[attr-defined]
    conn.k3s_known_hosts = known  # type: ignore[attr-defined]
    return conn


def open_checked(conn: Connection) -> None:
    """Open the SSH session, turning every failure into a ConnectError naming the cause."""
    host: Host = conn.k3s_host  # type: ignore[attr-defined]
    who = f"{host.name} ({host.ssh_user}@{host.address}:{host.ssh_port})"
    try:
        conn.open()
    except paramiko.BadHostKeyException as e:
        raise ConnectError(
            f"{who}: host key CHANGED (got {e.key.get_name()} {e.key.get_fingerprint().hex()}); "
            f"possible impostor. Fix: if the host was rebuilt, remove its line from "
            f"{conn.k3s_known_hosts} and add the new key after verifying it") from None  # type: ignore[attr-defined]
    except paramiko.AuthenticationException as e:
        raise ConnectError(f"{who}: authentication failed ({e}). Fix: check [ssh] user/key in "
                           "the inventory and that the key is in the host's authorized_keys") \
            from None
    except paramiko.SSHException as e:
        if "not found in known_hosts" in str(e):
            raise ConnectError(
                f"{who}: host key unknown (not in {conn.k3s_known_hosts}). Fix: verify the "  # type: ignore[attr-defined]
                f"host's fingerprint, then add it: ssh-keyscan -p {host.ssh_port} {host.address} "
                f">> {conn.k3s_known_hosts}") from None  # type: ignore[attr-defined]
        raise ConnectError(f"{who}: SSH error: {e}") from None
    except (socket.timeout, TimeoutError):
        raise ConnectError(f"{who}: unreachable: connection timed out") from None
    except paramiko.ssh_exception.NoValidConnectionsError as e:
        why = "; ".join(sorted({err.strerror or str(err) for err in e.errors.values()}))
        raise ConnectError(f"{who}: unreachable: {why}") from None
    except OSError as e:
        raise ConnectError(f"{who}: unreachable: {e.strerror or e}") from None
    except FileNotFoundError as e:  # pragma: no cover - key file
        raise ConnectError(f"{who}: SSH key not found: {e.filename}") from None


# ---------------------------------------------------------------- running commands
def is_dry(conn: Connection) -> bool:
    return bool(conn.config.run.dry)


def _wrap(conn: Connection, cmd: str) -> str:
    user = getattr(conn, "user", "root")
    return cmd if user == "root" else f"sudo -n sh -c {shlex.quote(cmd)}"


def host_name(conn: Connection) -> str:
    """The inventory name of the host behind `conn` (its address for a bare Connection)."""
    host = getattr(conn, "k3s_host", None)
    return host.name if host else conn.host


def _tail(res: Any) -> str:
    out = (res.stderr or res.stdout or "").strip().splitlines()
    return "\n    ".join(out[-8:]) if out else "(no output)"


# after this many seconds past `timeout`, the local side gives up on a host that did not
# answer at all (the host's own `timeout` normally ends the command first)
TIMEOUT_GRACE = 60


def sh(conn: Connection, cmd: str, *, stdin: str | None = None, warn: bool = False,
       write: bool = True, timeout: int | None = None, mask: str = "") -> Any:
    """Run `cmd` as root on the host (sudo -n for non-root users).

    stdin: data for the command's standard input (the way to pass secrets: never in argv).
    write=False marks a read-only probe: it runs even in dry run.
    timeout: seconds; the command runs under `timeout` on the host, so one that runs over
    is stopped there (a local timeout alone would leave it running, holding its locks)
    and exits 124.
    mask: a substring hidden from debug logs.
    Raises StepFailed naming the host and the failing command unless warn=True.
    """
    if timeout is not None:
        # `; exit $?`: a shell stays in front of `timeout`, which kills its own process
        # group on -k and would otherwise end the session by a signal instead of 137
        full = _wrap(conn, f"timeout -k 10 {timeout} sh -c {shlex.quote(cmd)}; exit $?")
    else:
        full = _wrap(conn, cmd)
    shown = cmd.replace(mask, "***") if mask else cmd
    name = host_name(conn)
    if write and is_dry(conn):
        print(f"[{name}] would run: {shown}")
        return _DryResult()
    log.debug("[%s] $ %s", name, shown)
    try:
        res = conn.run(full, hide=True, warn=True, in_stream=io.StringIO(stdin) if stdin is not None
                       else False, dry=False, pty=False,
                       timeout=None if timeout is None else timeout + TIMEOUT_GRACE)
    except UnexpectedExit as e:  # pragma: no cover - warn=True prevents it
        res = e.result
    except CommandTimedOut as e:  # raised even with warn=True
        res = e.result
        res.exited = 124
    except Exception as e:
        if isinstance(e, (paramiko.SSHException, OSError, socket.timeout)):
            raise ConnectError(f"{name}: connection lost while running '{shown}': {e}") from None
        raise
    if res.exited != 0 and not warn:
        if timeout is not None and res.exited in (124, 137):
            raise StepFailed(f"{name}: '{shown}' did not finish within {timeout} s "
                             f"(stopped):\n    {_tail(res)}")
        raise StepFailed(f"{name}: '{shown}' exited {res.exited}:\n    {_tail(res)}")
    return res


class _DryResult:
    stdout = ""
    stderr = ""
    exited = 0
    ok = True
    failed = False


def probe(conn: Connection, cmd: str) -> int:
    """Exit code of a read-only check: 0 yes, 1 no. Anything else is an error."""
    res = sh(conn, cmd, warn=True, write=False)
    if res.exited not in (0, 1):
        raise StepFailed(f"{conn.k3s_host.name}: check '{cmd}' failed with exit {res.exited}: "  # type: ignore[attr-defined]
                         f"{(res.stderr or res.stdout).strip()[-300:]}")
    return res.exited


def read_file(conn: Connection, path: str) -> bytes | None:
    """Remote file content, or None if it does not exist (read-only, runs in dry mode)."""
    res = sh(conn, f"test -e {shlex.quote(path)} && base64 -w0 {shlex.quote(path)}",
             warn=True, write=False)
    if res.exited != 0:
        return None
    import base64

    return base64.b64decode(res.stdout.strip())


# ---------------------------------------------------------------- primitives
def os_family(conn: Connection) -> str:
    """'debian' (apt) or 'redhat' (dnf), from /etc/os-release."""
    text = (read_file(conn, "/etc/os-release") or b"").decode()
    return parse_os_family(text)


def parse_os_family(os_release: str) -> str:
    vals = dict(line.split("=", 1) for line in os_release.splitlines() if "=" in line)
    ids = (vals.get("ID", "") + " " + vals.get("ID_LIKE", "")).replace('"', "").split()
    if any(i in ("debian", "ubuntu") for i in ids):
        return "debian"
    if any(i in ("rhel", "fedora", "centos", "rocky", "almalinux") for i in ids):
        return "redhat"
    raise InputError(f"unsupported OS (ID={vals.get('ID')}): k3s-ha supports Debian/Ubuntu (apt) "
                     "and RHEL-family (dnf) hosts")


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


def _stat(conn: Connection, path: str) -> tuple[str, str, str] | None:
    res = sh(conn, f"stat -c '%a %U %G' {shlex.quote(path)}", warn=True, write=False)
    if res.exited != 0:
        return None
    mode, owner, group = res.stdout.split()
    return mode.rjust(4, "0"), owner, group


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
    current = read_file(conn, path)
    st = _stat(conn, path) if current is not None else None
    want_meta = (mode.rjust(4, "0"), owner, group)
    if current is not None and sha256(current) == sha256(data):
        if st == want_meta:
            return False
        if is_dry(conn):
            print(f"[{name}] would set {path} to mode {mode} owner {owner}:{group} (was {st})")
            return True
        q = shlex.quote(path)
        sh(conn, f"chown {owner}:{group} {q} && chmod {mode} {q}")
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
    put_private(conn, io.BytesIO(data), tmp)
    try:
        sh(conn, f"install -m {mode} -o {owner} -g {group} {qt} {qs}")
    finally:
        sh(conn, f"rm -f {qt}", warn=True)
    if validate:
        res = sh(conn, validate.replace("%s", qs), warn=True)
        if res.exited != 0:
            sh(conn, f"rm -f {qs}", warn=True)
            out = (res.stdout + res.stderr).strip()
            raise StepFailed(f"{name}: the new {path} failed validation ({validate.split()[0]} "
                             f"exit {res.exited}); the live file is untouched:\n    "
                             + "\n    ".join(out.splitlines()[-12:]))
    if backup and current is not None:
        sh(conn, f"cp -p {qp} {qp}.bak")
    sh(conn, f"mv -f {qs} {qp}")
    return True


def put_private(conn: Connection, local: Any, remote_path: str) -> None:
    """SFTP upload (as the login user, who may not be root) into a file created beforehand
    mode 0600 and owned by that user, so the data is never readable by anyone else."""
    sh(conn, f"install -m 600 -o {shlex.quote(conn.user)} /dev/null {shlex.quote(remote_path)}")
    conn.put(local, remote_path)


def ensure_dir(conn: Connection, path: str, *, mode: str = "0755", owner: str = "root",
               group: str = "root") -> bool:
    st = _stat(conn, path)
    want = (mode.rjust(4, "0"), owner, group)
    if st == want:
        return False
    q = shlex.quote(path)
    sh(conn, f"mkdir -p {q} && chown {owner}:{group} {q} && chmod {mode} {q}")
    return True


def service_state(conn: Connection, name: str) -> tuple[bool, bool]:
    """(enabled, active) for a systemd unit."""
    q = shlex.quote(name)
    enabled = sh(conn, f"systemctl is-enabled {q}", warn=True, write=False).stdout.strip()
    active = sh(conn, f"systemctl is-active {q}", warn=True, write=False).stdout.strip()
    return enabled in ("enabled", "static", "alias", "generated"), active == "active"


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
        end = time.monotonic() + 15
        while True:
            state = sh(conn, f"systemctl is-active {q}", warn=True, write=False).stdout.strip()
            if state not in ("activating", "reloading", "deactivating") \
                    or time.monotonic() > end:
                break
            time.sleep(0.3)
        if state != "active":
            res = sh(conn, f"journalctl -u {q} -n 15 --no-pager", warn=True, write=False)
            raise StepFailed(f"{conn.k3s_host.name}: service {name} is not active after start:\n"  # type: ignore[attr-defined]
                             + res.stdout[-1500:])
    return did


# ---------------------------------------------------------------- fan-out
def fan_out(items: list[Any], fn: Callable[[Any], Any], *, parallel: bool = True
            ) -> dict[Any, tuple[bool, Any]]:
    """Run fn(item) for every item (in threads), return {item: (ok, result_or_exception)}.

    One failure never hides another item's result: every item is run and reported.
    """
    from concurrent.futures import ThreadPoolExecutor

    out: dict[Any, tuple[bool, Any]] = {}

    def one(it: Any) -> tuple[bool, Any]:
        try:
            return True, fn(it)
        except Exception as e:  # reported per item by the caller
            return False, e

    if not parallel or len(items) <= 1:
        for it in items:
            out[it] = one(it)
        return out
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as ex:
        for it, res in zip(items, ex.map(one, items)):
            out[it] = res
    return out
