"""The admin kubeconfig's CA and client certificate, for the authenticated API probe.

Read from /etc/rancher/k3s/k3s.yaml on a server over SSH, never printed; the certificate
and key go to files in a private temporary folder (0700, files 0600) that is removed when
the drill ends (ssl needs files for a client certificate).
"""
from __future__ import annotations

import base64
import os
import re
import tempfile
from dataclasses import dataclass

from ..core.run import Run
from ..core.ssh import read_file

KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
FIELDS = ("certificate-authority-data", "client-certificate-data", "client-key-data")


def parse(text: str) -> dict[str, str]:
    """The three base64 fields of a kubeconfig, decoded (pure; absent ones left out)."""
    out = {}
    for f in FIELDS:
        m = re.search(rf"^\s*{f}:\s*(\S+)\s*$", text, re.M)
        if m:
            out[f] = base64.b64decode(m.group(1)).decode()
    return out


@dataclass
class Creds:
    ca: str
    cert_file: str
    key_file: str
    folder: tempfile.TemporaryDirectory


def fetch(r: Run) -> Creds | None:
    """The admin credentials from the first server that has them (None: none has)."""
    for h in r.inv.with_role("k3s-server"):
        try:
            raw = read_file(r.conn(h), KUBECONFIG)
        except Exception:  # noqa: BLE001 - try the next server
            continue
        vals = parse((raw or b"").decode(errors="replace"))
        if len(vals) == len(FIELDS):
            folder = tempfile.TemporaryDirectory(prefix="k3sha-drill-")
            paths = []
            for name in ("client.crt", "client.key"):
                p = os.path.join(folder.name, name)
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(vals[FIELDS[1] if name.endswith("crt") else FIELDS[2]])
                paths.append(p)
            return Creds(vals[FIELDS[0]], paths[0], paths[1], folder)
    return None
