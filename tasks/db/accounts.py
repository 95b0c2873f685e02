"""Accounts on one node: mysql_secure_installation as SQL, and accounts limited to a set of
addresses (the HAProxy check user, the k3s user). Each node's accounts are its own: the
statements are kept out of the binlog."""
from __future__ import annotations

from .replication import unlogged
from .session import Node, ssl_required
from . import sql


def secure(n: Node) -> bool:
    """Drop anonymous users, remote root and the test database; root keeps its socket
    login. True if something was dropped."""
    users = [(x["User"], x["Host"]) for x in n.q(sql.SECURE_FIND)]
    test = int(list(n.q(sql.SECURE_TEST_DB)[0].values())[0])
    if not users and not test:
        return False
    for stmt in sql.secure_sql(users, bool(test)):
        n.write(stmt)
    return True


def ensure_account(n: Node, user: str, hosts: list[str], stmts: list[str],
                   password: str | None, database: str | None = None,
                   tls: bool = False) -> bool:
    """Exactly `hosts` for `user` (extra hosts dropped), created by `stmts`; this node only.
    tls: the account must log in over TLS (REQUIRE SSL), else it may not."""
    rows = n.q("SELECT Host, ssl_type FROM mysql.user WHERE User=%s", (user,))
    have = {x["Host"] for x in rows}
    stale = sorted(have - set(hosts))
    ok = not stale and have == set(hosts) and all(
        ssl_required(x["ssl_type"]) == tls for x in rows)
    if ok and database is not None:
        ok = bool(n.q("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s",
                      (database,)))
    if ok and password is not None and n.d.mariadb:
        ok = all(x["same"] for x in n.q(
            "SELECT authentication_string = PASSWORD(%s) AS same FROM mysql.user WHERE User=%s",
            (password, user)))
    if ok:
        return False
    unlogged(n, [sql.drop_user(user, host) for host in stale] + stmts)
    return True

