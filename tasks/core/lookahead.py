"""The reads of one step in one round trip.

An idempotent step reads before it acts: a file's content and mode, a directory's owner, a
binary's sha256, a unit's state. Asked one by one, each is a remote command (~50 ms in the
lab, sshd's session setup); a no-op k3s node was twelve of them. `ops.looked(conn, ...)`
reads them all with one script (`script`, parsed by `parse`) and keeps the answers for the
block; `ssh.read_file`, `ssh.read_file_meta`, `ops.ensure_dir`, `ops.service_state` ... take
theirs from it. Any command that may write on that host (`ssh.sh` with write=True) drops
them, so nothing read before a change is used after it; a primitive's own write that
names the paths it touches drops only those.

Kept per thread and per connection: parallel steps sharing a connection never see each
other's answers.
"""
from __future__ import annotations

import base64
import shlex
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

MARK = "@@k3sha-look"


@dataclass(frozen=True)
class Stat:
    mode: str  # zero-padded to 4 digits, as ops compares it
    owner: str
    group: str
    size: int
    kind: str  # stat's %F: "regular file", "directory", ...

    @property
    def meta(self) -> tuple[str, str, str]:
        return self.mode, self.owner, self.group


@dataclass
class Look:
    """What one script read; a path absent on the host maps to None."""

    stats: dict[str, Stat | None] = field(default_factory=dict)
    contents: dict[str, bytes | None] = field(default_factory=dict)
    sums: dict[str, str] = field(default_factory=dict)  # "" when absent
    units: dict[str, tuple[str, str]] = field(default_factory=dict)  # (is-enabled, is-active)


def script(files: Iterable[str] = (), stats: Iterable[str] = (), sums: Iterable[str] = (),
           units: Iterable[str] = ()) -> tuple[str, dict[str, list[str]]]:
    """Pure: the shell script reading everything, and what each numbered section asks.
    files: content + stat; stats: stat only; sums: sha256; units: is-enabled, is-active."""
    asked = {"file": list(dict.fromkeys(files)), "stat": list(dict.fromkeys(stats)),
             "sum": list(dict.fromkeys(sums)), "unit": list(dict.fromkeys(units))}
    st = "stat -c '%a %U %G %s %F'"
    parts = []
    for i, p in enumerate(asked["file"]):
        q = shlex.quote(p)
        parts.append(f"echo '{MARK} file {i}'; if test -e {q}; then {st} {q} && base64 -w0 {q}"
                     "; echo; fi")
    for i, p in enumerate(asked["stat"]):
        q = shlex.quote(p)
        parts.append(f"echo '{MARK} stat {i}'; test -e {q} && {st} {q}")
    for i, p in enumerate(asked["sum"]):
        q = shlex.quote(p)
        parts.append(f"echo '{MARK} sum {i}'; test -f {q} && sha256sum {q}")
    for i, u in enumerate(asked["unit"]):
        q = shlex.quote(u)
        parts.append(f"echo '{MARK} unit {i}'; echo \"$(systemctl is-enabled {q} 2>/dev/null)\""
                     f"; systemctl is-active {q}")
    return "; ".join(parts + ["true"]), asked


def parse_stat(line: str) -> Stat:
    """Pure: one line of stat -c '%a %U %G %s %F'."""
    mode, owner, group, size, kind = line.split(" ", 4)
    return Stat(mode.rjust(4, "0"), owner, group, int(size), kind)


def parse(out: str, asked: dict[str, list[str]]) -> Look:
    """Pure: the script's output as a Look. A section missing from the output (the script
    cut short) is an error, never an absent path."""
    sections: dict[tuple[str, int], list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith(MARK + " "):
            kind, i = line.split()[1:3]
            current = sections.setdefault((kind, int(i)), [])
        elif current is not None:
            current.append(line)
    look = Look()
    for kind, items in asked.items():
        for i, key in enumerate(items):
            if (kind, i) not in sections:
                raise ValueError(f"the look-ahead script's output has no {kind} {key}")
            lines = [ln for ln in sections[(kind, i)] if ln.strip()]
            if kind == "file":
                look.stats[key] = parse_stat(lines[0]) if lines else None
                look.contents[key] = base64.b64decode(lines[1]) if len(lines) > 1 else \
                    (b"" if lines else None)
            elif kind == "stat":
                look.stats[key] = parse_stat(lines[0]) if lines else None
            elif kind == "sum":
                look.sums[key] = lines[0].split()[0] if lines else ""
            else:
                look.units[key] = ((lines[0] if len(lines) > 1 else "").strip(),
                                   lines[-1].strip() if lines else "")
    return look


_held = threading.local()


def _store(conn: object) -> dict[int, Look]:
    if not hasattr(_held, "looks"):
        _held.looks = {}
    return _held.looks


def remember(conn: object, look: Look) -> None:
    _store(conn)[id(conn)] = look


def forget(conn: object, paths: tuple[str, ...] | None = None) -> None:
    """Drop what was read on `conn`: all of it, or only what concerns `paths`."""
    if paths is None:
        _store(conn).pop(id(conn), None)
        return
    look = held(conn)
    if look is not None:
        for table in (look.stats, look.contents, look.sums):
            for p in paths:
                table.pop(p, None)


def held(conn: object) -> Look | None:
    """This thread's answers for `conn`, if a `looked` block holds any."""
    return _store(conn).get(id(conn))


def seen(conn: object, table: str, key: str) -> tuple[bool, Any]:
    """(True, the answer) when a `looked` block on this thread read `key` into `table`
    ("stats", "contents", "sums" or "units"); (False, None): ask the host."""
    look = held(conn)
    answers = getattr(look, table) if look is not None else {}
    return (True, answers[key]) if key in answers else (False, None)
