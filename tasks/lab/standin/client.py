"""A small HTTPS client for agents and `k3s kubectl` (verifies the cluster CA)."""
from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
from typing import Any
from urllib.parse import urlsplit


class ClientError(Exception):
    """Connection, TLS or timeout failure (not an HTTP error status)."""


def context(ca_pem: bytes | None, cert_pem: bytes | None = None,
            key_pem: bytes | None = None) -> ssl.SSLContext:
    """Verify the server against ca_pem (no verification when None: only for /cacerts)."""
    if ca_pem is None:
        ctx = ssl._create_unverified_context()
    else:
        ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if cert_pem and key_pem:
        with tempfile.TemporaryDirectory() as d:  # ssl loads client keys from files only
            os.chmod(d, 0o700)
            cp, kp = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            for p, data in ((cp, cert_pem), (kp, key_pem)):
                fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
                os.write(fd, data)
                os.close(fd)
            ctx.load_cert_chain(cp, kp)
    return ctx


def request(url: str, method: str, path: str, ctx: ssl.SSLContext, body: Any = None,
            headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    u = urlsplit(url)
    conn = http.client.HTTPSConnection(u.hostname or "", u.port or 443, context=ctx,
                                       timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException, ssl.SSLError) as e:
        raise ClientError(f"{method} {url}{path}: {e}") from None
    finally:
        conn.close()


def basic_auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
