"""The client certificate of the API balancers' `readyz` check (`fab balancers.api-check-cert`).

The balancers are deployed before k3s exists, so their first config checks /ping
(config.api_check). Once a k3s server is up, this step issues a key and certificate for the
dedicated user CN=system:k3s-ha-health on that server with openssl, from k3s's client CA
(/var/lib/rancher/k3s/server/tls/client-ca.{crt,key}), installs it with the k3s server CA on
each API balancer (0600 root), and reloads HAProxy with the readyz check. The key is made on
the k3s server and travels only over SSH, in memory, to the balancers; it is never printed.

No RBAC is created: kube-apiserver lets every authenticated user GET /readyz, /livez,
/healthz and /version through the default ClusterRole system:public-info-viewer, bound to
the groups system:authenticated and system:unauthenticated (Kubernetes docs, "Using RBAC
Authorization", Default roles and role bindings / API discovery roles:
https://kubernetes.io/docs/reference/access-authn-authz/rbac/#discovery-roles). k3s runs
kube-apiserver with anonymous auth off, so an anonymous /readyz gets 401 there (k3s-io/k3s
issue #3576): the certificate is what makes the check possible, and it carries no group
(no O=), so it grants nothing beyond what any authenticated user may read.

Idempotent: a balancer whose certificate is signed by the current client CA, names the
user, and has more than RENEW_DAYS left keeps it: nothing issued, nothing reloaded.
"""
from __future__ import annotations

import datetime as dt
import shlex
from dataclasses import dataclass
from enum import Enum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from fabric import Connection

from ..core.errors import StepFailed
from ..core.inventory import Host, Inventory
from ..core.ops import ensure_dir, ensure_file, ensure_service
from ..core.run import OK, Run
from ..core.ssh import read_file, sh
from ..facts.haproxy import runtime
from .config import CHECK_CA, CHECK_DIR, CHECK_PEM, haproxy_config
from .steps import HAPROXY_CFG, install_config

USER = "system:k3s-ha-health"
K3S_TLS = "/var/lib/rancher/k3s/server/tls"
SERVER_CA, CLIENT_CA, CLIENT_CA_KEY = (f"{K3S_TLS}/server-ca.crt", f"{K3S_TLS}/client-ca.crt",
                                       f"{K3S_TLS}/client-ca.key")
DAYS = 365           # as k3s's own client certificates
RENEW_DAYS = 30      # re-issued by the next run when fewer days are left


class Need(Enum):
    VALID = "valid"
    MISSING = "no check certificate"
    OTHER_CA = "signed by another client CA (cluster rebuilt?)"
    OTHER_USER = "issued for another user"
    EXPIRING = "expires soon"
    SERVER_CA = "server CA file differs from the cluster's"


@dataclass(frozen=True)
class Cas:
    """The cluster's CAs as the first k3s server holds them (public parts only)."""
    server_ca: bytes
    client_ca: bytes


def judge(cert_pem: bytes | None, ca_file: bytes | None, cas: Cas,
          now: dt.datetime) -> Need:
    """Pure: is the certificate installed on a balancer still the right one?"""
    if not cert_pem:
        return Need.MISSING
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(cas.client_ca))
    except (ValueError, TypeError, InvalidSignature):
        return Need.OTHER_CA
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [a.value for a in cn] != [USER] or cert.subject.get_attributes_for_oid(
            NameOID.ORGANIZATION_NAME):
        return Need.OTHER_USER
    if cert.not_valid_after_utc - now < dt.timedelta(days=RENEW_DAYS):
        return Need.EXPIRING
    if ca_file != cas.server_ca:
        return Need.SERVER_CA
    return Need.VALID


def issue_script(days: int = DAYS) -> str:
    """Shell run as root on a k3s server: a new EC key and a client certificate for USER
    from k3s's client CA, printed as one PEM (certificate, then key) on stdout only; the
    temporary folder is private (umask 077) and removed."""
    ext = "keyUsage=critical,digitalSignature\\nextendedKeyUsage=clientAuth\\n"
    return f"""set -e
umask 077
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/key.pem" 2>/dev/null
openssl req -new -key "$d/key.pem" -subj {shlex.quote("/CN=" + USER)} -out "$d/req.csr"
printf '{ext}' > "$d/ext"
openssl x509 -req -in "$d/req.csr" -CA {CLIENT_CA} -CAkey {CLIENT_CA_KEY} \\
  -set_serial 0x$(openssl rand -hex 16) -days {days} -sha256 -extfile "$d/ext" \\
  -out "$d/crt.pem" 2>/dev/null
cat "$d/crt.pem" "$d/key.pem"
"""


def read_cas(conn: Connection, server: Host) -> Cas:
    server_ca, client_ca = read_file(conn, SERVER_CA), read_file(conn, CLIENT_CA)
    if not server_ca or not client_ca:
        raise StepFailed(f"{server.name} has no {K3S_TLS}/server-ca.crt + client-ca.crt: the "
                         "k3s servers are not installed yet. Fix: fab k3s.install-server, "
                         "then fab balancers.api-check-cert")
    return Cas(server_ca, client_ca)


def installed_cert(conn: Connection) -> bytes | None:
    """The certificate part of the installed PEM (the key is not read)."""
    res = sh(conn, f"test -e {CHECK_PEM} && sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p' "
                   f"{CHECK_PEM}", warn=True, write=False)
    return res.stdout.encode() if res.exited == 0 and res.stdout.strip() else None


def issue(conn: Connection, server: Host) -> bytes:
    res = sh(conn, issue_script(), warn=True)
    pem = res.stdout.encode()
    if res.exited != 0 or b"PRIVATE KEY" not in pem:
        raise StepFailed(f"{server.name}: issuing the check certificate with openssl failed "
                         f"(exit {res.exited}): {res.stderr.strip()[-300:]}. Fix: install "
                         "openssl on the k3s server")
    return pem


def apply(r: Run, conn: Connection, h: Host, cas: Cas, pem: bytes | None) -> None:
    """Files (pem only when newly issued), haproxy.cfg with the readyz check, reload on any
    change."""
    r.step(h, "check cert dir", lambda: ensure_dir(conn, CHECK_DIR, mode="0700"))
    ca_ch = r.step(h, "API check CA", lambda: ensure_file(conn, CHECK_CA, cas.server_ca,
                                                          mode="0644", backup=False))
    pem_ch = False
    if pem is not None:
        pem_ch = r.step(h, "API check certificate", lambda: ensure_file(
            conn, CHECK_PEM, pem, mode="0600", secret=True, backup=False))
    cfg = haproxy_config(r.inv, h, check_cert=True)
    cfg_ch = r.step(h, "haproxy.cfg", lambda: install_config(conn, HAPROXY_CFG, cfg,
                                                             "haproxy -c -f %s"))
    r.step(h, "haproxy running", lambda: ensure_service(
        conn, "haproxy", changed_inputs=ca_ch or pem_ch or cfg_ch, reload=True))


def ensure(r: Run, balancers: list[Host], server: Host) -> None:
    """Issue (on `server`) what each balancer lacks, install it, reload HAProxy there."""
    sconn = r.conn(server)
    cas = read_cas(sconn, server)
    now = dt.datetime.now(dt.timezone.utc)
    pems: dict[str, bytes | None] = {}
    for h in balancers:  # sequential: one openssl run per balancer that needs one
        conn = r.conn(h)
        need = judge(installed_cert(conn), read_file(conn, CHECK_CA), cas, now)
        if need in (Need.VALID, Need.SERVER_CA):
            pems[h.name] = None
            r.record(h, "check certificate", OK, need.value if need is Need.VALID else "")
        elif r.dry:
            pems[h.name] = None
            print(f"[{h.name}] would issue a check certificate on {server.name}: {need.value}")
        else:
            pems[h.name] = issue(sconn, server)
            r.record(h, "check certificate", "changed", f"issued on {server.name}: "
                                                        f"{need.value}")
    r.each(balancers, lambda conn, h: apply(r, conn, h, cas, pems[h.name]))


# ------------------------------------------------------------------ what HAProxy has loaded
@dataclass(frozen=True)
class CheckState:
    check: str     # "readyz" | "httpchk" | ... as rendered
    note: str


def parse_show_ssl_cert(text: str) -> dict[str, str]:
    """`show ssl cert <file>` (HAProxy runtime API): 'Key: value' lines as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, val = line.partition(":")
        if sep and key.strip() and key.strip() not in out:
            out[key.strip()] = val.strip()
    return out


def loaded(conn: Connection) -> dict[str, str] | None:
    """The check certificate as HAProxy itself has it loaded, or None (not loaded)."""
    out = runtime(conn, f"show ssl cert {CHECK_PEM}")
    if not out or "Subject:" not in out:
        return None
    return parse_show_ssl_cert(out)


def state(inv: Inventory, conn: Connection) -> CheckState:
    """The API check this balancer's HAProxy runs, read from HAProxy (`show ssl cert`)."""
    want = inv.balancers["api_health_check"]
    if want != "readyz":
        return CheckState(want, "")
    cert = loaded(conn)
    if cert is None:
        return CheckState("httpchk", "readyz configured, no check certificate loaded in "
                                     "HAProxy: /ping until fab balancers.api-check-cert")
    return CheckState("readyz", f"client certificate {cert.get('Subject', '?')}, "
                                f"expires {cert.get('notAfter', '?')}")


def readyz_line(inv: Inventory, conn: Connection) -> str:
    """For cluster.status: '' unless readyz is configured, else the check HAProxy runs."""
    if inv.balancers["api_health_check"] != "readyz":
        return ""
    st = state(inv, conn)
    return f"{st.check} ({st.note})"
