"""HAProxy as HAProxy itself reports it: the runtime API's `show stat` (read-only)."""
from __future__ import annotations

import csv
import io
import shlex
from dataclasses import dataclass

from fabric import Connection

from ..core.ssh import sh

ADMIN_SOCKET = "/run/haproxy/admin.sock"


@dataclass(frozen=True)
class ServerStat:
    proxy: str
    server: str
    backup: bool
    status: str       # UP, DOWN, MAINT, "UP 1/2" ...
    check: str        # e.g. "L7OK 200 in 3ms"
    since: str        # time since the last state change, e.g. "42s"


def parse_show_stat(csv_text: str) -> list[ServerStat]:
    """Server rows of HAProxy's `show stat` CSV (FRONTEND/BACKEND rows and stats left out)."""
    text = csv_text.lstrip()
    if not text.startswith("#"):
        return []
    rows = csv.DictReader(io.StringIO(text[1:].lstrip()))
    out = []
    for r in rows:
        if r.get("svname") in ("FRONTEND", "BACKEND", None) or r.get("pxname") == "stats":
            continue
        check = " ".join(x for x in (r.get("check_status", ""), r.get("check_code", "")) if x)
        if r.get("check_duration"):
            check += f" in {r['check_duration']}ms"
        out.append(ServerStat(proxy=r["pxname"], server=r["svname"], backup=r.get("bck") == "1",
                              status=r.get("status", ""), check=check.strip() or "-",
                              since=f"{r['lastchg']}s" if r.get("lastchg") else "-"))
    return out


def runtime(conn: Connection, command: str) -> str | None:
    """One command on the host's HAProxy runtime API (admin socket); its answer, or None
    when the socket does not answer. The one place the socket is spoken to."""
    res = sh(conn, f"echo {shlex.quote(command)} | socat -t 3 stdio "
                   f"UNIX-CONNECT:{ADMIN_SOCKET}", warn=True, write=False)
    return res.stdout if res.exited == 0 else None


def show_stat(conn: Connection) -> list[ServerStat] | None:
    """The server rows from HAProxy's admin socket on the host; None if it does not answer."""
    out = runtime(conn, "show stat")
    return parse_show_stat(out) if out is not None else None
