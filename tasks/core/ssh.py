"""SSH to the inventory's hosts: strict host keys, one runner (`sh`), read-only probes.

Connections come from the inventory, with host keys checked against a known_hosts
file (never auto-accepted); a lab inventory is only ever reached through the lab's own
interface. `sh` runs a command as root (sudo -n for other users), secrets go through
stdin, and in dry run only read-only probes (`write=False`) run.
"""
from __future__ import annotations

import base64
import contextlib
import io
import logging
import shlex
import socket
import subprocess
import threading
from typing import Any, Iterator

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut, UnexpectedExit

from . import lookahead
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


KEEPALIVE_S = 15


def open_checked(conn: Connection) -> None:
    """Open the SSH session, turning every failure into a ConnectError naming the cause."""
    host: Host = conn.k3s_host  # type: ignore[attr-defined]
    who = f"{host.name} ({host.ssh_user}@{host.address}:{host.ssh_port})"
    try:
        conn.open()
        # a pooled connection idles between stages: keepalives hold NAT/firewall state
        # and let paramiko notice a dead peer instead of hanging on it
        transport = conn.client.get_transport()
        if transport is not None:
            transport.set_keepalive(KEEPALIVE_S)
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
        if e.filename:  # paramiko reading the key file (a socket's errors name no file)
            raise ConnectError(
                f"{who}: cannot read the SSH key {e.filename}: {e.strerror}. Fix: set [ssh] key "
                f"(or hosts.{host.name}.ssh_key) to a readable private key file") from None
        raise ConnectError(f"{who}: unreachable: {e.strerror or e}") from None


# ---------------------------------------------------------------- the pool
PoolKey = tuple[str, str, str, str, int, bool]


class Pool:
    """The SSH connections of one `fab` invocation, shared by every Run in it.

    `shared` is the host's one connection (what `Run.conn` returns): a task that calls
    other tasks (cluster.deploy runs ~10) logs in once per host, not once per task. Each
    command is a channel of its own, so parallel threads may send it the odd command (a
    joining agent's thread forgetting an old node). `lease` lends a connection of its own
    to a thread that runs commands on a host steadily in parallel with others (the shared
    kubectl poll while agents join); it goes back idle for the next lease. `scope` closes
    them all when the outermost task ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shared: dict[PoolKey, Connection] = {}
        self._idle: dict[PoolKey, list[Connection]] = {}
        self._leased: list[Connection] = []
        self._depth = 0

    @staticmethod
    def key(inv: Inventory, host: Host, config: Config | None) -> PoolKey:
        dry = bool(config.run.dry) if config is not None else False
        return (str(inv.path), host.name, host.address, host.ssh_user, host.ssh_port, dry)

    def shared(self, inv: Inventory, host: Host, config: Config | None = None) -> Connection:
        """The host's shared connection, opened (or opened again if it dropped)."""
        k = self.key(inv, host, config)
        with self._lock:
            conn = self._shared.get(k)
            if conn is None:
                conn = self._shared[k] = connect(inv, host, config)
        if not conn.is_connected:
            open_checked(conn)
        return conn

    @contextlib.contextmanager
    def lease(self, inv: Inventory, host: Host, config: Config | None = None
              ) -> Iterator[Connection]:
        """A connection to `host` used by this thread alone until the block ends."""
        k = self.key(inv, host, config)
        with self._lock:
            idle = self._idle.setdefault(k, [])
            conn = idle.pop() if idle else None
        if conn is None:
            conn = connect(inv, host, config)
            with self._lock:
                self._leased.append(conn)
        if not conn.is_connected:
            open_checked(conn)
        try:
            yield conn
        finally:
            with self._lock:
                self._idle[k].append(conn)

    def close_all(self) -> None:
        with self._lock:
            conns = list(self._shared.values()) + self._leased
            self._shared.clear()
            self._idle.clear()
            self._leased.clear()
        for conn in conns:
            for closer in getattr(conn, "k3s_on_close", []):
                with contextlib.suppress(Exception):
                    closer()
            with contextlib.suppress(Exception):
                conn.close()

    @property
    def scoped(self) -> bool:
        return self._depth > 0

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Around a task: the outermost one closes every pooled connection when it ends."""
        with self._lock:
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                last = self._depth == 0
            if last:
                self.close_all()


POOL = Pool()


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


class WholeInput(io.StringIO):
    """A command's stdin handed to Invoke in one read. Invoke reads a stream that is not a
    terminal one character per loop turn and sleeps 10 ms between turns
    (invoke.terminals.bytes_to_read is 1 without a fileno), so a 300-byte environment on
    stdin took 3 s to send, longer with parallel threads."""

    def read(self, size: int | None = -1) -> str:
        return super().read()


def sh(conn: Connection, cmd: str, *, stdin: str | None = None, warn: bool = False,
       write: bool = True, timeout: int | None = None, mask: str = "",
       touches: tuple[str, ...] | None = None) -> Any:
    """Run `cmd` as root on the host (sudo -n for non-root users).

    stdin: data for the command's standard input (the way to pass secrets: never in argv).
    write=False marks a read-only probe: it runs even in dry run.
    timeout: seconds; the command runs under `timeout` on the host, so one that runs over
    is stopped there (a local timeout alone would leave it running, holding its locks)
    and exits 124.
    mask: a substring hidden from debug logs.
    touches: the only paths a write changes (the primitives' own commands): a `looked`
    block then keeps what it read of other paths; otherwise a write drops all of it.
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
    if write:  # it may change what a `looked` block read
        lookahead.forget(conn, touches)
    if write and is_dry(conn):
        print(f"[{name}] would run: {shown}")
        return _DryResult()
    log.debug("[%s] $ %s", name, shown)
    try:
        res = conn.run(full, hide=True, warn=True, in_stream=WholeInput(stdin) if stdin is not None
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
    hit, data = lookahead.seen(conn, "contents", path)
    if hit:
        return data  # type: ignore[no-any-return]
    res = sh(conn, f"test -e {shlex.quote(path)} && base64 -w0 {shlex.quote(path)}",
             warn=True, write=False)
    if res.exited != 0:
        return None
    return base64.b64decode(res.stdout.strip())


def read_file_meta(conn: Connection, path: str
                   ) -> tuple[bytes | None, tuple[str, str, str] | None]:
    """(content, (mode, owner, group)) of a remote file in one round trip, (None, None) if
    it does not exist (read-only, runs in dry mode). Mode zero-padded to 4 digits."""
    hit, data = lookahead.seen(conn, "contents", path)
    if hit:
        st = lookahead.seen(conn, "stats", path)[1]
        return data, st.meta if st else None
    q = shlex.quote(path)
    res = sh(conn, f"test -e {q} && stat -c '%a %U %G' {q} && base64 -w0 {q}",
             warn=True, write=False)
    if res.exited != 0:
        return None, None
    meta, _, data = res.stdout.partition("\n")
    mode, owner, group = meta.split()
    return base64.b64decode(data.strip()), (mode.rjust(4, "0"), owner, group)


# ---------------------------------------------------------------- host facts
def parse_os_release(text: str) -> dict[str, str]:
    """/etc/os-release as a dict, quotes removed."""
    vals = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip().strip('"').strip("'") for k, v in vals.items()}


def os_release(conn: Connection) -> dict[str, str]:
    """The host's /etc/os-release (read-only, runs in dry mode too), read once per
    connection: every step of a run asks it, and it does not change under us."""
    cached = getattr(conn, "k3s_os_release", None)
    if cached is None:
        cached = parse_os_release((read_file(conn, "/etc/os-release") or b"").decode())
        conn.k3s_os_release = cached  # type: ignore[attr-defined]
    return dict(cached)


def os_family(conn: Connection) -> str:
    """'debian' (apt) or 'redhat' (dnf), from /etc/os-release."""
    return family_of(os_release(conn))


def parse_os_family(os_release_text: str) -> str:
    return family_of(parse_os_release(os_release_text))


def family_of(vals: dict[str, str]) -> str:
    ids = (vals.get("ID", "") + " " + vals.get("ID_LIKE", "")).split()
    if any(i in ("debian", "ubuntu") for i in ids):
        return "debian"
    if any(i in ("rhel", "fedora", "centos", "rocky", "almalinux") for i in ids):
        return "redhat"
    raise InputError(f"unsupported OS (ID={vals.get('ID')}): k3s-ha supports Debian/Ubuntu (apt) "
                     "and RHEL-family (dnf) hosts")


def put_private(conn: Connection, local: Any, remote_path: str) -> None:
    """SFTP upload (as the login user, who may not be root) into a new file (O_EXCL: never
    one that exists, nor a link) made mode 0600 before its first byte is written, so the
    data is never readable by anyone else. SFTP only: no remote command, and so nothing a
    `looked` block read is dropped (the file is a new temp name)."""
    sftp = conn.sftp()
    src = local if hasattr(local, "read") else open(local, "rb")  # noqa: SIM115
    try:
        with sftp.open(remote_path, "wbx") as f:
            f.chmod(0o600)
            f.set_pipelined(True)
            while chunk := src.read(1 << 15):
                f.write(chunk)
    finally:
        if src is not local:
            src.close()
