"""The datastore's TLS: the tool's CA, server certificates and when they are issued again
(pure, no host); the [db] tls / proxy_protocol inventory keys; the balancers' PROXY lines."""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import pytest
from cryptography import x509

from tasks.balancers import config as b
from tasks.core import inventory
from tasks.core.errors import InputError, InventoryError
from tasks.db import tls
from tasks.db.tasks import cnf_values, k3s_user_hosts

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / "hosts.toml").read_text()
CA = tls.new_ca()


def inv(text: str = SHIPPED, path: Path = ROOT / "hosts.toml") -> inventory.Inventory:
    return inventory.parse(text, path)


def with_db(lines: str) -> str:
    """The shipped inventory with these [db] lines instead of its own for those keys."""
    text = SHIPPED
    for line in lines.splitlines():
        key = line.split("=")[0].strip()
        text = re.sub(rf"(?m)^{key} = .*\n", "", text, count=1)
    return re.sub(r"(?m)^\[db\]\n", lambda m: "[db]\n" + lines + "\n", text, count=1)


def test_server_certificate_names_the_host_and_the_datastore_vip():
    i = inv()
    h = i.host("k3s-db-01")
    sans = tls.server_sans(i, h)
    vip = i.vips["db"]
    assert sans[:3] == ["k3s-db-01", "k3s-db-01.lab.lan", h.address]
    assert {vip.address, vip.name, i.fqdn(vip.name)} <= set(sans)
    key, cert = tls.issue(CA, "k3s-db-01.lab.lan", sans)
    c = x509.load_pem_x509_certificate(cert)
    c.verify_directly_issued_by(CA.cert)
    assert tls.cert_names(c) == set(sans)
    assert tls.reissue_reason(cert, CA, sans, tls.public_pem(key)) == ""


@pytest.mark.parametrize("case,why", [
    ("missing", "no certificate"), ("no key", "no key"), ("other CA", "not issued by this CA"),
    ("names", "names differ"), ("key", "key does not match"), ("expiring", "expires"),
])
def test_certificate_is_issued_again_only_when_it_must(case, why):
    sans = ["db", "10.0.0.31", "10.0.0.101"]
    key, cert = tls.issue(CA, "db", sans)
    pub = tls.public_pem(key)
    args = {"missing": (None, CA, sans, pub), "no key": (cert, CA, sans, None),
            "other CA": (cert, tls.new_ca(), sans, pub),
            "names": (cert, CA, sans + ["new-vip"], pub),
            "key": (cert, CA, sans, tls.public_pem(tls.issue(CA, "db", sans)[0])),
            "expiring": (cert, CA, sans, pub)}[case]
    now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=tls.CERT_DAYS - 10) \
        if case == "expiring" else None
    assert why in tls.reissue_reason(*args, now=now)


def test_ca_is_made_once_with_a_private_key(tmp_path):
    (tmp_path / "hosts.toml").write_text(SHIPPED)
    i = inv(path=tmp_path / "hosts.toml")
    ca, made = tls.ensure_ca(i, dry=False)
    d = tls.ca_dir(i)
    assert made and d == i.resolve_path(i.secrets["file"]).parent / "db-tls"  # beside it
    assert (d / "ca.key").stat().st_mode & 0o777 == 0o600
    assert d.stat().st_mode & 0o777 == 0o700
    again, made = tls.ensure_ca(i, dry=False)
    assert not made and again == ca
    os.chmod(d / "ca.key", 0o644)
    with pytest.raises(InputError, match="chmod 600"):
        tls.load_ca(i)


def test_dry_run_makes_no_ca(tmp_path):
    (tmp_path / "hosts.toml").write_text(SHIPPED)
    i = inv(path=tmp_path / "hosts.toml")
    _, made = tls.ensure_ca(i, dry=True)
    assert made and not tls.ca_dir(i).exists()


def test_tls_dir_from_the_inventory(tmp_path):
    (tmp_path / "hosts.toml").write_text(with_db('tls_dir = "pki"'))
    assert tls.ca_dir(inv(with_db('tls_dir = "pki"'), tmp_path / "hosts.toml")) == tmp_path / "pki"


def test_inventory_defaults_tls_and_proxy_protocol():
    d = inv().db
    assert d["tls"] is True and d["proxy_protocol"] is True
    assert inv(with_db('flavor = "mysql"')).db["proxy_protocol"] is False
    assert inv(with_db("tls = false")).db["tls"] is False
    with pytest.raises(InventoryError) as e:
        inv(with_db('flavor = "mysql"\nproxy_protocol = true'))
    assert "db.proxy_protocol: MySQL has no PROXY protocol" in str(e.value)
    with pytest.raises(InventoryError, match="db.tls"):
        inv(with_db('tls = "yes"'))


def test_grants_follow_proxy_protocol():
    i = inv()
    assert k3s_user_hosts(i) == [h.address for h in i.with_role("k3s-server")]
    off = inv(with_db("proxy_protocol = false"))
    assert k3s_user_hosts(off) == [h.address for h in off.with_role("db-balancer")]
    vals = cnf_values(i, i.host("k3s-db-01"), tls_dialect())
    nets = ",".join(h.address for h in i.with_role("db-balancer"))
    assert f"proxy_protocol_networks  = {nets}" in vals["extra"]
    assert f"ssl_ca                   = {tls.REMOTE_CA}" in vals["extra"]
    plain = cnf_values(inv(with_db("proxy_protocol = false\ntls = false")),
                       i.host("k3s-db-01"), tls_dialect())
    assert not [x for x in plain["extra"] if re.match(r"(ssl_|proxy_)", x)]


def tls_dialect():
    from tasks.db import sql
    return sql.parse_version("10.11.6-MariaDB")


def db_servers(text: str) -> list[str]:
    i = inv(text)
    hap = b.haproxy_config(i, i.host("k3s-db-balancer-01"))
    return [ln.strip() for ln in hap.splitlines() if ln.strip().startswith("server k3s-db")]


def test_haproxy_sends_the_client_address_with_proxy_protocol():
    assert all(s.endswith("send-proxy-v2") for s in db_servers(SHIPPED))  # http check
    mc = db_servers(with_db('health_check = "mysql-check"'))
    assert all("send-proxy-v2 check-send-proxy" in s for s in mc), mc  # the check logs in
    off = db_servers(with_db("proxy_protocol = false"))
    assert not any("proxy" in s for s in off), off


def test_standin_datastore_tls_is_kines():
    """--datastore-cafile: verify the server's certificate under the endpoint's name;
    a server offering no TLS is refused before the login (go-sql-driver's ErrNoTLS)."""
    import pymysql
    from pymysql.constants import CLIENT

    from tasks.lab.standin import kine

    assert kine.client_tls(None) is None and kine.client_tls({}) is None
    assert kine.client_tls({"ca": "/ca"}) == {"check_hostname": True, "ca": "/ca"}
    conn_cls = kine.tls_connection()
    fake = conn_cls.__new__(conn_cls)
    fake.ssl, fake.server_capabilities = True, CLIENT.PROTOCOL_41  # no CLIENT.SSL
    with pytest.raises(pymysql.err.OperationalError, match="does not support TLS"):
        fake._request_authentication()
