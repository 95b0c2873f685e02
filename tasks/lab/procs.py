"""This machine's processes and commands: run a command, start one detached, the process
table, the pids in a network namespace, kill and wait, the mount table."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Iterable, NamedTuple

from ..core.errors import StepFailed
from ..core.run import poll


class Proc(NamedTuple):
    pid: int
    ppid: int
    cmd: str  # the command line, arguments joined by spaces


def run(argv: list[str], *, input: str | None = None, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise StepFailed(f"{argv[0]} not found. Fix: run scripts/install-lab-deps.sh") from None
    except subprocess.TimeoutExpired:
        raise StepFailed(f"timed out after {timeout:.0f}s: {shlex.join(argv)}") from None
    if check and res.returncode != 0:
        raise StepFailed(f"`{shlex.join(argv)}` failed ({res.returncode}): "
                         f"{(res.stderr or res.stdout).strip()[-800:]}")
    return res


def ok(argv: list[str]) -> bool:
    return run(argv, check=False, timeout=30).returncode == 0


def spawn_detached(argv: list[str], log_path: Path) -> int:
    """Start argv in its own session, not our child (reparented to PID 1); return its pid."""
    script = 'log=$1; shift; setsid "$@" >>"$log" 2>&1 </dev/null & echo $!'
    res = run(["sh", "-c", script, "sh", str(log_path)] + argv, timeout=30)
    return int(res.stdout.strip())


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def procs() -> list[Proc]:
    """Every live process."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            if st[0] == "Z":
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(Proc(int(d), int(st[1]), cmd))
        except (OSError, IndexError, ValueError):
            continue
    return out


def procs_of(program: str, needle: str) -> list[int]:
    """Pids of `program` (its argv[0] contains it) whose command line contains `needle `."""
    return [p.pid for p in procs() if program in p.cmd.split(" ")[0]
            and needle in p.cmd + " "]


def pids_in_netns(ns: str) -> list[int]:
    try:
        ino = os.stat(f"/run/netns/{ns}").st_ino
    except OSError:
        return []
    out = []
    for p in procs():
        try:
            if os.stat(f"/proc/{p.pid}/ns/net").st_ino == ino:
                out.append(p.pid)
        except OSError:
            continue
    return out


def kill(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(pids: Iterable[int], timeout: float = 10) -> bool:
    pids = list(pids)
    met, _ = poll(lambda: not any(pid_alive(p) for p in pids), timeout=timeout, interval=0.05)
    return met


def stop(pids: list[int], timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL what is left after `timeout` seconds."""
    kill(pids, signal.SIGTERM)
    if not wait_gone(pids, timeout):
        kill(pids)
        wait_gone(pids, timeout)


def mounts() -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.split()[1].replace("\\040", " ") for line in f]
