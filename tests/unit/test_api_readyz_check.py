"""The API balancers' `readyz` check: inventory value, rendering (goldens), the /ping
fallback before the certificate exists, the certificate's judgement and issuance (the
issuing script run with the real openssl against a throw-away CA), HAProxy's `show ssl
cert` parser, the deploy stage and cluster.status.

Goldens: tests/golden/balancers/api-readyz{,-pending}.k3s-balancer-01.haproxy.cfg
(`pytest tests/unit --update-golden` after a deliberate change).
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tasks.balancers import checkcert as cc
from tasks.balancers import config as b
from tasks.cluster import stages
from tasks.cluster import status as st
from tasks.core.errors import InventoryError
from tests.unit.test_balancers_unit import GOLDEN, SHIPPED, load, with_settings

READYZ = with_settings(SHIPPED, "balancers", 'api_health_check = "readyz"')
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)


# ------------------------------------------------------------------ inventory
def test_readyz_is_accepted_and_httpchk_stays_the_default() -> None:
    assert load(READYZ).balancers["api_health_check"] == "readyz"
    assert load(SHIPPED).balancers["api_health_check"] == "httpchk"


def test_a_misspelt_readyz_is_refused_with_the_choices() -> None:
    with pytest.raises(InventoryError) as e:
        load(with_settings(SHIPPED, "balancers", 'api_health_check = "readz"'))
    msg = str(e.value)
    assert "balancers.api_health_check" in msg and "did you mean 'readyz'" in msg
    assert "httpchk, readyz, ssl-hello-chk, tcp-check" in msg


# ------------------------------------------------------------------ rendering
@pytest.mark.parametrize("case,check_cert", [("api-readyz", True),
                                             ("api-readyz-pending", False)])
def test_readyz_config_matches_golden(case: str, check_cert: bool,
                                      update_golden: bool) -> None:
    inv = load(READYZ)
    text = b.haproxy_config(inv, inv.host("k3s-balancer-01"), check_cert=check_cert)
    path = GOLDEN / f"{case}.k3s-balancer-01.haproxy.cfg"
    if update_golden:
        path.write_text(text)
    assert text == path.read_text()


def test_readyz_line_presents_the_cert_and_verifies_the_server() -> None:
    inv = load(READYZ)
    hap = b.haproxy_config(inv, inv.host("k3s-balancer-01"), check_cert=True)
    assert "option httpchk GET /readyz" in hap and "http-check expect status 200" in hap
    assert ("server k3s-server-01 k3s-server-01.lab.lan:6443 check check-ssl verify required "
            f"ca-file {b.CHECK_CA} crt {b.CHECK_PEM}") in hap
    assert "/ping" not in hap and "verify none" not in hap


def test_before_the_certificate_readyz_renders_the_ping_check_and_says_why() -> None:
    inv = load(READYZ)
    hap = b.haproxy_config(inv, inv.host("k3s-balancer-01"), check_cert=False)
    assert "option httpchk GET /ping" in hap and b.CHECK_PEM not in hap
    assert "no check certificate yet, fab balancers.api-check-cert" in hap
    # only readyz depends on the certificate; the db side never does
    for text in (SHIPPED, READYZ):
        i = load(text)
        assert b.haproxy_config(i, i.host("k3s-db-balancer-01"), check_cert=True) == \
            b.haproxy_config(i, i.host("k3s-db-balancer-01"))
    shipped = load(SHIPPED)
    assert b.api_check(shipped, True) == "httpchk"


# ------------------------------------------------------------------ the certificate
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: x509.Name, issuer: x509.Name, key, signer, days: int = 365,
          ca: bool = False) -> x509.Certificate:
    start = NOW - dt.timedelta(days=1)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256()))


def _name(cn: str, org: str = "") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki():
    """Two client CAs (the cluster's and another cluster's) and a server CA."""
    ca_key, other_key = _key(), _key()
    ca = _cert(_name("k3s-client-ca"), _name("k3s-client-ca"), ca_key, ca_key, 3650, True)
    other = _cert(_name("k3s-client-ca"), _name("k3s-client-ca"), other_key, other_key,
                  3650, True)
    cas = cc.Cas(server_ca=b"SERVER CA PEM\n", client_ca=_pem(ca))
    return ca_key, other_key, cas


def _client(signer, cn: str = cc.USER, org: str = "", days: int = 365) -> bytes:
    return _pem(_cert(_name(cn, org), _name("k3s-client-ca"), _key(), signer, days))


def test_judge_table(pki) -> None:
    ca_key, other_key, cas = pki
    server_ca = cas.server_ca
    cases = [
        (None, server_ca, cc.Need.MISSING),
        (_client(ca_key), server_ca, cc.Need.VALID),
        (_client(other_key), server_ca, cc.Need.OTHER_CA),
        (_client(ca_key, cn="someone"), server_ca, cc.Need.OTHER_USER),
        (_client(ca_key, org="system:masters"), server_ca, cc.Need.OTHER_USER),
        (_client(ca_key, days=20), server_ca, cc.Need.EXPIRING),
        (_client(ca_key), b"an older server CA\n", cc.Need.SERVER_CA),
        (b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n", server_ca,
         cc.Need.OTHER_CA),
    ]
    assert [cc.judge(pem, ca, cas, NOW) for pem, ca, _ in cases] == [n for *_, n in cases]


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl CLI")
def test_issue_script_with_the_real_openssl(tmp_path: Path, pki) -> None:
    """The script a k3s server runs, against a throw-away client CA in a temp folder: one
    PEM with a certificate the judge accepts (CN only, clientAuth) and its key."""
    ca_key = _key()
    ca = _cert(_name("k3s-client-ca"), _name("k3s-client-ca"), ca_key, ca_key, 3650, True)
    (tmp_path / "client-ca.crt").write_bytes(_pem(ca))
    (tmp_path / "client-ca.key").write_bytes(ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    script = cc.issue_script().replace(cc.K3S_TLS, str(tmp_path))
    p = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    pem = p.stdout.encode()
    assert pem.count(b"BEGIN CERTIFICATE") == 1 and b"BEGIN PRIVATE KEY" in pem
    cert = x509.load_pem_x509_certificate(pem)
    cas = cc.Cas(server_ca=b"s", client_ca=_pem(ca))
    assert cc.judge(pem, b"s", cas, dt.datetime.now(dt.timezone.utc)) is cc.Need.VALID
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    key = serialization.load_pem_private_key(pem[pem.index(b"-----BEGIN PRIVATE KEY"):], None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert not [f for f in Path("/tmp").glob("tmp.*") if (f / "key.pem").exists()]


# HAProxy 2.6's answer to `show ssl cert /etc/haproxy/k3s-api-check/client.pem`
SHOW_SSL_CERT = """Filename: /etc/haproxy/k3s-api-check/client.pem
Status: Used
Serial: 5AE2A6E0C1B1E3F5C0D4E0F6A1B2C3D4
notBefore: Jun  1 10:00:00 2025 GMT
notAfter: Jun  1 10:00:00 2026 GMT
Subject Alternative Name:
Algorithm: EC256
SHA1 FingerPrint: 0123456789ABCDEF0123456789ABCDEF01234567
Subject: /CN=system:k3s-ha-health
Issuer: /CN=k3s-client-ca@1748772000
Chain Subject: /CN=k3s-client-ca@1748772000
"""


def test_parse_show_ssl_cert() -> None:
    got = cc.parse_show_ssl_cert(SHOW_SSL_CERT)
    assert got["Subject"] == "/CN=system:k3s-ha-health" and got["Status"] == "Used"
    assert got["notAfter"] == "Jun  1 10:00:00 2026 GMT"
    assert cc.parse_show_ssl_cert("Unknown command\n") == {}


# ------------------------------------------------------------------ deploy and status
def test_deploy_issues_the_certificate_right_after_the_servers(tmp_path: Path) -> None:
    def names(text: str) -> list[str]:
        return [n for s in stages.stages(load(text)) if s.name == "servers" for n, _ in s.tasks]

    assert names(READYZ) == ["k3s.install-server", "balancers.api-check-cert"]
    assert names(SHIPPED) == ["k3s.install-server"]


def test_cluster_status_names_a_balancer_still_on_ping(tmp_path: Path) -> None:
    from tests.unit.test_cluster_status import healthy, inv

    i = inv(tmp_path)
    v = healthy(i)
    api = [x for x in v.balancers if x.pair == "api"]
    api[0].api_check = "readyz (client certificate /CN=system:k3s-ha-health, expires x)"
    api[1].api_check = "httpchk (readyz configured, no check certificate loaded in HAProxy)"
    probs = st.judge(v, i)
    assert [(p.subject, p.text.split(" (")[0]) for p in probs] == \
        [(api[1].host, "API check httpchk")]
    out = st.render(v, probs, lab=True)
    assert f"{api[0].host}: API check readyz" in out and f"!! {api[1].host}" in out
