"""Which database host the datastore VIP sends writes to, as HAProxy itself reports it.

The balancer holding the datastore VIP is found by asking each db-balancer whether the
address is on one of its interfaces; its HAProxy's runtime API (`show stat`) then says
which servers are UP, and `show table k3s-db` which server the sticky writer entry holds
(health_check "http"). Writes go to the stuck server while it is UP; else (and with the
guide's primary + backup) to the first UP primary, else the first UP backup. Read-only;
used by db.status, db.switchover, cluster.deploy's wait and the drill.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.run import Run, poll
from fabric import Connection

from .haproxy import ServerStat, runtime, show_stat
from .vrrp import vip_holder


@dataclass(frozen=True)
class Writer:
    """host: the db host writes go to (None: no writer); via: the VIP holder asked;
    known: its HAProxy answered (False: the writer is unknown); reason: why no writer."""
    host: str | None
    via: str | None
    known: bool = True
    reason: str = ""


@dataclass(frozen=True)
class VipView:
    """The datastore backend as the VIP holder's HAProxy sees it (servers None: unread);
    stuck: the server name the sticky-writer entry holds (None: no entry)."""
    servers: list[ServerStat] | None
    via: str | None
    reason: str = ""
    stuck: str | None = None


DB_BACKEND = "k3s-db"
# the header each HAProxy check of a db server carries: the server id the writer entry
# holds (0: none yet); the health daemon there acts on it (files/db-health.py.j2)
WRITER_HEADER = "X-K3s-Ha-Writer"


def parse_stick_table(text: str) -> int | None:
    """The writer's server id (gpt0) of the one entry of `show table k3s-db` (pure); None
    when there is no entry or it holds no writer yet (0)."""
    m = re.search(r"\bkey=1\b.*?\bgpt0=(\d+)", text)
    return int(m.group(1)) or None if m else None


def stuck_server_id(conn: Connection) -> int | None:
    out = runtime(conn, f"show table {DB_BACKEND}")
    return parse_stick_table(out) if out is not None else None


def admin_command(conn: Connection, command: str) -> str:
    """One runtime API command on a balancer's HAProxy; its answer ("" if none)."""
    return (runtime(conn, command) or "").strip()


def vip_servers(r: Run) -> VipView:
    """The datastore backend as the HAProxy of the balancer holding the VIP reports it."""
    vip = r.inv.vip_for_role("db-balancer")
    if vip is None:
        return VipView(None, None, "no datastore VIP in the inventory")
    holder, why = vip_holder(r, vip)
    if holder is None:
        return VipView(None, None, why)
    try:
        conn = r.conn(holder)
        servers = show_stat(conn)
        sid = stuck_server_id(conn) if servers is not None else None
    except Exception as e:  # noqa: BLE001 - an observation, never a failure
        return VipView(None, holder.name, f"{holder.name}: {e}")
    if servers is None:
        return VipView(None, holder.name, f"{holder.name}: no HAProxy admin socket")
    names = {h.server_id: h.name for h in r.inv.with_role("db")}
    return VipView(servers, holder.name, stuck=names.get(sid) if sid is not None else None)


def _order(servers: list[ServerStat], db_names: set[str]) -> list[ServerStat]:
    """Datastore servers in HAProxy's order of preference: primaries, then backups."""
    mine = [x for x in servers if x.server in db_names]
    return [x for x in mine if not x.backup] + [x for x in mine if x.backup]


def writer(servers: list[ServerStat], db_names: set[str], stuck: str | None = None
           ) -> str | None:
    """The server HAProxy sends writes to: the stuck one while it is UP, else (`balance
    first` + `backup`) the first UP primary, else the first UP backup; None when none is UP."""
    if stuck is not None and any(x.server == stuck and x.status.startswith("UP")
                                 for x in servers):
        return stuck
    for x in _order(servers, db_names):
        if x.status.startswith("UP"):
            return x.server
    return None


def rising_ahead(servers: list[ServerStat], db_names: set[str]) -> str | None:
    """A server HAProxy prefers to the current writer that is passing checks on its way up
    ("DOWN 6/30"): once up it takes the writes over (on-marked-up). None if there is none."""
    for x in _order(servers, db_names):
        if x.status.startswith("UP"):
            return None
        m = re.fullmatch(r"DOWN (\d+)/\d+", x.status)
        if m and int(m.group(1)) > 0:
            return x.server
    return None


def _db_names(r: Run) -> set[str]:
    return {h.name for h in r.inv.with_role("db")}


def of_view(view: VipView, names: set[str]) -> Writer:
    """The writer a VipView names (pure)."""
    if view.servers is None:
        return Writer(None, view.via, known=False, reason=view.reason)
    who = writer(view.servers, names, view.stuck)
    return Writer(who, view.via, reason="" if who else "all DOWN")


def find_writer(r: Run) -> Writer:
    return of_view(vip_servers(r), _db_names(r))


def wait_writer(r: Run, timeout: float) -> Writer:
    """Poll the VIP holder until HAProxy admits a writer (a returning server needs `rise`
    checks) and no server it prefers is still rising, so the writer named is the one that
    stays; the last answer when the timeout passes first."""
    names = _db_names(r)

    def settled(view: VipView) -> bool:
        return (view.servers is not None
                and writer(view.servers, names, view.stuck) is not None
                and (view.stuck is not None or rising_ahead(view.servers, names) is None))

    _, view = poll(lambda: vip_servers(r), timeout=timeout, interval=2, until=settled)
    return of_view(view, names)
