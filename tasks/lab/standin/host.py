"""Host-side helpers shared by server and agent: files, node name, node password, logging."""
from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

NODE_DIR = Path(os.environ.get("STANDIN_NODE_DIR", "/etc/rancher/node"))  # env: tests only
log = logging.getLogger("k3s")


class Fatal(Exception):
    """Log at level fatal and exit 1, as k3s does (logrus.Fatal)."""


def write_private(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write a file created with `mode` from the start (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, raw)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def node_password(node_dir: Path = NODE_DIR) -> str:
    """/etc/rancher/node/password: random on first use, 0600, kept across uninstall."""
    path = node_dir / "password"
    if path.exists():
        pw = path.read_text().strip()
        if pw:
            return pw
    pw = secrets.token_hex(16)
    node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, pw + "\n")
    return pw


def node_name(settings: dict[str, Any], node_dir: Path = NODE_DIR) -> str:
    """--node-name or the hostname, lower-cased; --with-node-id adds -<8 hex> (kept in id)."""
    name = (settings.get("node-name") or socket.gethostname()).strip().lower()
    if settings.get("with-node-id"):
        id_file = node_dir / "id"
        node_id = id_file.read_text().strip() if id_file.exists() else ""
        if not node_id:
            node_id = secrets.token_hex(4)
            write_private(id_file, node_id + "\n", 0o644)
        name = f"{name}-{node_id}"
    return name


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        level = {"WARNING": "warning", "CRITICAL": "fatal"}.get(record.levelname,
                                                                 record.levelname.lower())
        msg = record.getMessage().replace('"', '\\"')
        if record.exc_info and level == "debug":
            msg += " " + self.formatException(record.exc_info).replace("\n", " | ")
        return f'time="{t}" level={level} msg="{msg}"'


def setup_logging(debug: bool) -> None:
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(_Format())
    log.handlers[:] = [h]
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
