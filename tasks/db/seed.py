"""Seeding: a consistent dump of the node holding data, loaded into the empty one.

The dump carries the source's binlog coordinates (--master-data/--source-data), which then
start the seeded node's replica exactly where the dump was taken. The dump file is the
login user's, mode 0600, on both hosts, and removed afterwards.
"""
from __future__ import annotations

import shlex
import tempfile
import uuid
from pathlib import Path

from ..core.cli import say
from ..core.errors import StepFailed
from ..core.ssh import put_private, sh
from . import sql
from .session import Node


def databases(n: Node) -> list[str]:
    """The databases holding `n`'s user tables (from its facts)."""
    assert n.facts is not None
    return sorted({t.split(".")[0].strip("`") for t in n.facts.data})


def seed(empty: Node, full: Node) -> tuple[str, int]:
    """Consistent dump of `full`'s databases loaded into `empty`; returns full's coordinates."""
    dbs = databases(full)
    say(f"  seeding {empty.name} from {full.name}: {', '.join(dbs)}")
    remote = f"/tmp/.k3sha-seed-{uuid.uuid4().hex}.sql"  # 0600, the login user's (sftp)
    qr = shlex.quote(remote)
    try:
        sh(full.conn, f"umask 077 && {sql.dump_command(full.d, dbs, False)} > {qr} && "
                      f"chown {shlex.quote(full.conn.user)} {qr}", timeout=1800)
        head = sh(full.conn, f"head -c 8192 {qr}", write=False).stdout
        coords = sql.parse_dump_coords(head)
        if coords is None:
            raise StepFailed(f"{full.name}: the dump carries no binlog coordinates (is log_bin "
                             "on? fab db.configure)")
        with tempfile.TemporaryDirectory() as tmp:
            local = str(Path(tmp) / "seed.sql")
            full.conn.get(remote, local)
            put_private(empty.conn, local, remote)
        sh(empty.conn, f"chmod 600 {qr} && {{ echo 'SET SESSION sql_log_bin = 0;'; cat {qr}; }}"
                       " | mysql", timeout=1800)
    finally:
        sh(full.conn, f"rm -f {qr}", warn=True)
        sh(empty.conn, f"rm -f {qr}", warn=True)
    return coords
