"""Certificates made with the openssl CLI (EC P-256, as k3s), keys written mode 0600.

No secret ever goes into argv: keys live in files created under umask 077, and openssl
reads them by path. The file names are k3s's (server/tls/server-ca.crt, client-ca.key,
serving-kube-apiserver.crt, client-admin.crt, ...), so tasks may rely on them.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

K8S_NAMES = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", "localhost"]


class CertError(Exception):
    pass


def _openssl(args: list[str], cwd: Path) -> None:
    old = os.umask(0o077)
    try:
        p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
    finally:
        os.umask(old)
    if p.returncode != 0:
        raise CertError(f"openssl {args[0]} failed: {p.stderr.strip()[-400:]}")


def make_ca(tls: Path, name: str, cn_prefix: str) -> None:
    """tls/<name>.crt + tls/<name>.key: a self-signed CA valid 10 years."""
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "3650",
              "-subj", f"/CN={cn_prefix}@{int(time.time())}",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign"], tls)


def subject_alt_names(tls_sans: list[str], hostname: str, node_ips: list[str]) -> list[str]:
    """The serving certificate's SANs in openssl form (pure, sorted, no duplicates)."""
    names = set(K8S_NAMES) | {hostname, "127.0.0.1", "::1"} | set(tls_sans) | set(node_ips)
    out = set()
    for n in names:
        n = n.strip()
        if not n:
            continue
        try:
            out.add(f"IP:{ipaddress.ip_address(n)}")
        except ValueError:
            out.add(f"DNS:{n}")
    return sorted(out)


def extensions(sans: list[str] | None, client: bool) -> str:
    """The openssl extension file for a leaf certificate (pure)."""
    usage = "clientAuth" if client else "serverAuth"
    lines = ["basicConstraints=critical,CA:FALSE",
             "keyUsage=critical,digitalSignature,keyEncipherment",
             f"extendedKeyUsage={usage}"]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    return "\n".join(lines) + "\n"


def issue(tls: Path, name: str, ca: str, subject: str, sans: list[str] | None = None,
          client: bool = False, days: int = 365) -> None:
    """tls/<name>.crt + .key signed by tls/<ca>.crt/.key. subject like /O=x/CN=y."""
    with tempfile.TemporaryDirectory(dir=tls) as tmp:
        ext = Path(tmp, "ext.cnf")
        ext.write_text(extensions(sans, client))
        csr = Path(tmp, "req.csr")
        _openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", f"{name}.key", "-out", str(csr), "-subj", subject], tls)
        _openssl(["x509", "-req", "-in", str(csr), "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                  "-set_serial", str(secrets.randbits(63)), "-days", str(days),
                  "-extfile", str(ext), "-out", f"{name}.crt"], tls)


def ensure_serving(tls: Path, sans: list[str], ca_pem: bytes) -> bool:
    """(Re)issue serving-kube-apiserver.crt when the SANs or the CA changed."""
    stamp = tls / "serving-kube-apiserver.sans"
    want = "\n".join(sans) + "\n" + _digest(ca_pem) + "\n"
    crt = tls / "serving-kube-apiserver.crt"
    if stamp.exists() and stamp.read_text() == want and crt.exists():
        return False
    issue(tls, "serving-kube-apiserver", "server-ca", "/O=k3s/CN=k3s", sans=sans)
    stamp.write_text(want)
    return True


def ensure_client(tls: Path, name: str, subject: str, ca_pem: bytes) -> bool:
    """A client certificate (signed by client-ca) kept until the client CA changes."""
    stamp = tls / f"{name}.ca"
    if stamp.exists() and stamp.read_text() == _digest(ca_pem) and (tls / f"{name}.crt").exists():
        return False
    issue(tls, name, "client-ca", subject, client=True, days=3650)
    stamp.write_text(_digest(ca_pem))
    return True


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
