"""tasks/core/lookahead.py: the one-round-trip script run by a real local shell and parsed,
and the rule that keeps its answers honest (a write on the host drops them)."""
from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from invoke import Config, Context, Result

from tasks.core import inventory, lookahead, ops, ssh
from tasks.core.errors import StepFailed


def run_local(text: str) -> str:
    return subprocess.run(["sh", "-c", text], capture_output=True, text=True,
                          check=True).stdout


def test_script_read_by_a_real_shell(tmp_path: Path) -> None:
    conf = tmp_path / "a b.conf"  # a space: quoted
    conf.write_bytes(b"x = 1\n\xff")
    os.chmod(conf, 0o640)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    binary = tmp_path / "bin"
    binary.write_bytes(b"\x7fELF" * 1000)
    gone = str(tmp_path / "gone")
    text, asked = lookahead.script(files=[str(conf), str(empty), gone],
                                   stats=[str(d), gone, str(empty)],
                                   sums=[str(binary), gone, str(d)],
                                   units=["no-such-unit-k3sha"])
    look = lookahead.parse(run_local(text), asked)
    assert look.contents[str(conf)] == b"x = 1\n\xff"
    assert look.stats[str(conf)].mode == "0640" and look.stats[str(conf)].size == 7
    assert look.contents[str(empty)] == b"" and look.stats[str(empty)].size == 0
    assert look.contents[gone] is None and look.stats[gone] is None
    assert look.stats[str(d)].mode == "0700" and look.stats[str(d)].kind == "directory"
    assert look.sums[str(binary)] == hashlib.sha256(binary.read_bytes()).hexdigest()
    assert look.sums[gone] == "" and look.sums[str(d)] == ""  # a directory has no sum
    enabled, active = look.units["no-such-unit-k3sha"]
    assert enabled == "" and active in ("inactive", "unknown", "")


def test_output_cut_short_is_an_error_not_an_absent_file() -> None:
    text, asked = lookahead.script(files=["/etc/hostname", "/etc/hosts"])
    out = f"{lookahead.MARK} file 0\n"  # the session ended after the first section
    with pytest.raises(ValueError, match="/etc/hosts"):
        lookahead.parse(out, asked)


class Host(Context):
    """A fake host that counts commands and answers a look-ahead with one file."""

    def __init__(self) -> None:
        super().__init__(config=Config(overrides={"run": {"dry": False}}))
        object.__setattr__(self, "k3s_host", inventory.Host(name="h1", address="10.0.0.1",
                                                            roles=("k3s-agent",)))
        object.__setattr__(self, "user", "root")
        object.__setattr__(self, "calls", [])

    def run(self, command: str, **kw: Any) -> Result:
        self.calls.append(command)
        if command.startswith(f"echo '{lookahead.MARK}"):
            return Result(f"{lookahead.MARK} file 0\n644 root root 3 regular file\nYWJj\n")
        if command.startswith("test -e /etc/x"):
            return Result("644 root root\nZGVm\n")  # what the host holds after the write
        return Result("")


def test_reads_come_from_the_look_until_a_write_runs() -> None:
    host = Host()
    with ops.looked(host, files=["/etc/x"]):
        assert ssh.read_file(host, "/etc/x") == b"abc"
        assert ssh.read_file_meta(host, "/etc/x") == (b"abc", ("0644", "root", "root"))
        assert len(host.calls) == 1  # both answered by the one look
        ssh.sh(host, "echo def > /etc/x")  # a write: what was read may be stale now
        assert ssh.read_file_meta(host, "/etc/x") == (b"def", ("0644", "root", "root"))
    assert len(host.calls) == 3
    assert lookahead.held(host) is None  # the block ended


def test_another_thread_on_the_same_connection_reads_the_host() -> None:
    host = Host()
    seen: list[Any] = []
    with ops.looked(host, files=["/etc/x"]):
        t = threading.Thread(target=lambda: seen.append(lookahead.held(host)))
        t.start()
        t.join()
    assert seen == [None]


def test_a_write_that_names_its_paths_drops_only_those() -> None:
    host = Host()
    look = lookahead.Look(contents={"/etc/x": b"abc", "/etc/y": b"zzz"},
                          stats={"/etc/x": None, "/etc/y": None})
    lookahead.remember(host, look)
    try:
        ssh.sh(host, "mv -f /etc/x.new /etc/x", touches=("/etc/x",))
        assert ssh.read_file(host, "/etc/y") == b"zzz"  # still the look's answer
        assert len(host.calls) == 1
        ssh.read_file_meta(host, "/etc/x")  # asked again
        assert len(host.calls) == 2
        ssh.sh(host, "systemctl restart foo")  # names nothing: everything is dropped
        assert lookahead.held(host) is None
    finally:
        lookahead.forget(host)


def test_a_look_cut_short_stops_the_step_naming_the_host() -> None:
    host = Host()  # answers one section only
    with pytest.raises(StepFailed, match=r"h1: .*/etc/y.*nothing was changed"):
        with ops.looked(host, files=["/etc/x", "/etc/y"]):
            pass
    assert lookahead.held(host) is None
