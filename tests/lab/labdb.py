"""Logging in to the datastore as a lab host would: a pymysql session whose TCP connection
is opened BY the host `via` (an SSH direct-tcpip channel), so the database, HAProxy and
PROXY protocol see that host's address, and TLS verified against the tool's CA under the
name the client dials (what k3s's kine does with datastore-cafile)."""
from __future__ import annotations

import tomllib
from contextlib import contextmanager
from typing import Iterator

import pymysql

from tasks.core import ssh
from tasks.db import session as dbsession
from tasks.db import tls


def secret(inv, name: str) -> str:
    return tomllib.loads(inv.resolve_path(inv.secrets["file"]).read_text())[name]


@contextmanager
def login_from(inv, via: str, user: str | None = None, password: str | None = None,
               target: str | None = None, ssl: dict | None | bool = True,
               **kw) -> Iterator[pymysql.Connection]:
    """A session as `user` (the k3s user) from host `via` to `target` (the datastore VIP's
    name); ssl=True: the tool's CA when [db] tls is on. Both closed on leaving."""
    conn = ssh.connect(inv, inv.host(via))
    try:
        ssh.open_checked(conn)
        host = target or inv.fqdn(inv.vips["db"].name)
        db = pymysql.connect(host=host, port=inv.db["port"], user=user or inv.db["user"],
                             password=secret(inv, "k3s_db_password") if password is None
                             else password, defer_connect=True, connect_timeout=10,
                             ssl=tls.client_ssl(inv) if ssl is True else ssl, **kw)
        db.connect(sock=dbsession.channel_socket(conn, host, inv.db["port"]))
        try:
            yield db
        finally:
            db.close()
    finally:
        conn.close()
