"""Before a server starts: does the datastore already hold bootstrap data for another token?

k3s would fail with "bootstrap data already found and encrypted with different token" and
keep restarting. The kine table is read through the datastore VIP, tunnelled over the SSH
session of a k3s server (the path k3s itself takes), as the k3s datastore user.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import pymysql
from fabric import Connection

from ..core.errors import Refused, StepFailed
from ..core.inventory import Inventory
from ..core.ssh import host_name
from ..db.session import mysql_connect, q
from ..db.tls import client_ssl
from .token import Token, accepted_keys

# the latest row of every /bootstrap/ key (kine: highest id per name; deleted=1 is a tombstone)
KEYS_SQL = ("SELECT k.name, k.deleted FROM kine k JOIN (SELECT name, MAX(id) AS id FROM kine "
            "WHERE name LIKE '/bootstrap/%' GROUP BY name) m ON k.id = m.id")


class Held(Enum):
    EMPTY = "no bootstrap data yet"
    SAME = "bootstrap data for this token"
    OTHER = "bootstrap data for another token"


@dataclass(frozen=True)
class Verdict:
    held: Held
    keys: tuple[str, ...]
    holder: str = ""  # fingerprint of the known token the datastore holds, if any


def live_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Pure: the /bootstrap/ keys whose latest row is not a tombstone."""
    return sorted(str(r["name"]) for r in rows if not int(r.get("deleted") or 0))


def judge(keys: list[str], token: Token, known: list[tuple[str, Token]]) -> Verdict:
    """Pure: is `token` the one the datastore's bootstrap data is encrypted with?

    known: (where, token) pairs read from running servers, to name the holder.
    """
    if not keys:
        return Verdict(Held.EMPTY, ())
    if set(keys) & accepted_keys(token):
        return Verdict(Held.SAME, tuple(keys))
    holder = next((f"{t.fingerprint()}, as on {where}" for where, t in known
                   if set(keys) & accepted_keys(t)), "")
    return Verdict(Held.OTHER, tuple(keys), holder)


def read_keys(conn: Connection, inv: Inventory, db_password: str) -> list[str]:
    """The live /bootstrap/ keys of the kine table, through the datastore VIP."""
    try:
        db = mysql_connect(conn, user=inv.db["user"], password=db_password,
                           host=inv.vips["db"].address, port=inv.balancers["db_port"],
                           database=inv.db["database"], tls=inv.db.get("flavor") == "mysql",
                           ssl=client_ssl(inv))
    except pymysql.MySQLError as e:
        raise StepFailed(f"{host_name(conn)}: cannot read the datastore through the VIP "
                         f"{inv.vips['db'].address} as {inv.db['user']}: {e.args[-1]}. "
                         "Fix: fab db.users, and check fab db.status") from None
    try:
        return live_keys(q(db, KEYS_SQL))
    except pymysql.MySQLError as e:
        if e.args and e.args[0] == 1146:  # no kine table yet: a fresh datastore
            return []
        raise StepFailed(f"{host_name(conn)}: reading the kine table failed: {e.args[-1]}") \
            from None
    finally:
        db.close()


def refuse_other(verdict: Verdict, token: Token, server: str, inv: Inventory) -> None:
    """Raise Refused (nothing started) when the datastore holds another token's data."""
    if verdict.held is not Held.OTHER:
        return
    holder = verdict.holder or "a token no server of the inventory runs with"
    raise Refused(
        f"{server}: the datastore {inv.db['database']} (via {inv.vips['db'].address}) already "
        f"holds k3s bootstrap data encrypted with another token ({holder}; key "
        f"{', '.join(verdict.keys)}), not with the token given ({token.fingerprint()}); k3s "
        "would refuse to start (\"bootstrap data already found and encrypted with different "
        "token\"). Nothing was started. Fix: give the cluster's token (K3S_HA_K3S_TOKEN, the "
        "secrets file, or paste it), or, if that old cluster is gone for good, empty the "
        f"datastore (DROP TABLE {inv.db['database']}.kine on the writer) and run again")
