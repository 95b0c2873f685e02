"""TLS for the datastore: a small CA kept on the operator machine, one server certificate
per db host, and the checks that keep a second run from re-issuing anything.

The CA (`ca.key` 0600, `ca.crt`) lives in `[db] tls_dir`, by default `db-tls/` beside the
secrets file (else beside the inventory); it never leaves this machine except its
certificate. A db host gets its key (0600, mysql-owned), its certificate and the CA
certificate under REMOTE_DIR. The server certificate names the host (name, FQDN,
address) AND the datastore VIP (name, FQDN, address): clients reach MariaDB/MySQL through
HAProxy in TCP mode, so TLS ends at the database under the VIP's name; replicas verify
their peer under its address. A certificate is issued again only when it is missing,
not from this CA, its names differ, its key does not match, or it expires within
RENEW_DAYS. Pure functions (issue, reissue_reason, server_sans) are unit-tested.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fabric import Connection

from ..core import secrets
from ..core.errors import InputError
from ..core.inventory import Host, Inventory
from ..core.ops import ensure_dir, ensure_file
from ..core.ssh import read_file, sh

REMOTE_DIR = "/etc/k3s-ha/db-tls"
REMOTE_CA, REMOTE_CERT, REMOTE_KEY = (f"{REMOTE_DIR}/{f}" for f in
                                      ("ca.crt", "server.crt", "server.key"))
CA_DAYS, CERT_DAYS, RENEW_DAYS = 3650, 825, 30
CA_NAME = "k3s-ha datastore CA"
REMOTE_FILES = (REMOTE_CA, REMOTE_CERT)  # what a step reads (the key never leaves)


@dataclass(frozen=True)
class Ca:
    key_pem: bytes
    cert_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key() -> ec.EllipticCurvePrivateKey:
    """ECDSA P-256: MariaDB/MySQL with OpenSSL, pymysql and Go's TLS all take it."""
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(out)


def new_ca(now: dt.datetime | None = None) -> Ca:
    """A self-signed CA certificate and its key (pure apart from randomness)."""
    now, key = now or _now(), _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return Ca(_pem_key(key), cert.public_bytes(serialization.Encoding.PEM))


def issue(ca: Ca, common_name: str, sans: list[str], now: dt.datetime | None = None
          ) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) for a TLS server named `sans`, signed by `ca`."""
    now, key = now or _now(), _key()
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .add_extension(_san(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM)


def cert_names(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(x) for x in ext.get_values_for_type(x509.IPAddress)} | set(
        ext.get_values_for_type(x509.DNSName))


def public_pem(pem: bytes) -> bytes:
    """The public key (SubjectPublicKeyInfo PEM) of a certificate or a private key."""
    if b"CERTIFICATE" in pem:
        pub = x509.load_pem_x509_certificate(pem).public_key()
    else:
        pub = serialization.load_pem_private_key(pem, password=None).public_key()
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def reissue_reason(cert_pem: bytes | None, ca: Ca, sans: list[str], key_pub: bytes | None,
                   now: dt.datetime | None = None) -> str:
    """Why the certificate a host holds must be issued again ('' when it is fine; pure).
    key_pub: the public key of the host's private key (None: no key there)."""
    if not cert_pem:
        return "no certificate"
    if key_pub is None:
        return "no key"
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "unreadable certificate"
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature and kin
        return "not issued by this CA"
    if cert_names(cert) != set(sans):
        return f"names differ ({', '.join(sorted(cert_names(cert)))})"
    if public_pem(cert_pem) != key_pub:
        return "key does not match the certificate"
    if cert.not_valid_after_utc - (now or _now()) < dt.timedelta(days=RENEW_DAYS):
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return ""


def server_sans(inv: Inventory, host: Host) -> list[str]:
    """The host's name, FQDN and address, then the datastore VIP's; no duplicates."""
    vip = inv.vips["db"]
    names = [host.name, inv.fqdn(host.name), host.address]
    if vip.name:
        names += [vip.name, inv.fqdn(vip.name)]
    return list(dict.fromkeys(names + [vip.address]))


# ------------------------------------------------------------------ the CA on this machine
def ca_dir(inv: Inventory) -> Path:
    if inv.db["tls_dir"]:
        return inv.resolve_path(inv.db["tls_dir"])
    store = secrets.secrets_path(inv)
    return (store.parent if store is not None else inv.path.parent) / "db-tls"


def ca_cert_path(inv: Inventory) -> Path:
    return ca_dir(inv) / "ca.crt"


def ca_pem_text(inv: Inventory) -> str:
    """The CA certificate clients verify the datastore with ("" when [db] tls is off)."""
    if not inv.db["tls"]:
        return ""
    path = ca_cert_path(inv)
    return path.read_text() if path.exists() else ""


def client_ssl(inv: Inventory) -> dict[str, str] | None:
    """pymysql's ssl= for a client of the datastore VIP: verify against our CA."""
    path = ca_cert_path(inv)
    if not inv.db["tls"]:
        return None
    if not path.exists():
        raise InputError(f"[db] tls is on but {path} is missing. Fix: fab db.configure")
    return {"ca": str(path)}


def load_ca(inv: Inventory) -> Ca | None:
    d = ca_dir(inv)
    if not (d / "ca.key").exists():
        return None
    st = (d / "ca.key").stat()
    if st.st_mode & 0o077:
        raise InputError(f"{d / 'ca.key'} is readable by others (mode "
                         f"{oct(st.st_mode & 0o777)}). Fix: chmod 600 {d / 'ca.key'}")
    return Ca((d / "ca.key").read_bytes(), (d / "ca.crt").read_bytes())


def ensure_ca(inv: Inventory, dry: bool) -> tuple[Ca, bool]:
    """The tool's CA, made on first use (dir 0700, key 0600). (ca, created)."""
    ca = load_ca(inv)
    if ca is not None:
        return ca, False
    ca = new_ca()
    if dry:
        return ca, True
    d = ca_dir(inv)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(d / "ca.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(ca.key_pem)
    (d / "ca.crt").write_bytes(ca.cert_pem)
    return ca, True


# ------------------------------------------------------------------ one db host
def _remote_key_pub(conn: Connection) -> bytes | None:
    """The public half of the host's key, read with openssl there (the key never leaves)."""
    res = sh(conn, f"test -s {REMOTE_KEY} && openssl pkey -in {REMOTE_KEY} -pubout",
             warn=True, write=False)
    return res.stdout.encode() if res.exited == 0 and res.stdout.strip() else None


def ensure_server_tls(conn: Connection, inv: Inventory, host: Host, ca: Ca) -> str:
    """CA certificate, server key and certificate on the host; returns what changed
    ('' nothing, else why the certificate was issued or 'CA certificate')."""
    ensure_dir(conn, REMOTE_DIR, mode="0750", owner="root", group="mysql")
    changed = "CA certificate" if ensure_file(conn, REMOTE_CA, ca.cert_pem, mode="0644") \
        else ""
    sans = server_sans(inv, host)
    why = reissue_reason(read_file(conn, REMOTE_CERT), ca, sans, _remote_key_pub(conn))
    if why:
        key, cert = issue(ca, inv.fqdn(host.name), sans)
        ensure_file(conn, REMOTE_KEY, key, mode="0600", owner="mysql", group="mysql",
                    secret=True, backup=False)
        ensure_file(conn, REMOTE_CERT, cert, mode="0644", backup=False)
        return why
    return changed


def reload_tls(conn: Connection, mariadb: bool) -> None:
    """A running server picks up new certificate files without a restart."""
    stmt = "FLUSH SSL" if mariadb else "ALTER INSTANCE RELOAD TLS"
    sh(conn, f"mysql -e {shlex.quote(stmt)}")
