"""The replication-aware HTTP health endpoint HAProxy's httpchk asks on each db host.

A small Python program (files/db-health.py.j2) run by systemd: 200 when the replica's
threads run and it has applied what it received, 503 otherwise; it answers only the
datastore balancers, the peer, the host itself and localhost. It is also the datastore's
fence (the state machine is documented at the top of the program): it guards a new
writer's replication from a peer not proven clean, fails a node holding errant GTIDs and
cuts a dead peer's semi-sync wait short.
"""
from __future__ import annotations

from fabric import Connection

from ..core import render
from ..core.inventory import Host, Inventory
from ..core.ops import ensure_file, ensure_service, looked
from ..core.run import Run
from ..core.ssh import sh
from ..facts.datastore import WRITER_HEADER
from ..facts.mysql import server_version
from . import sql

HEALTH_BIN = "/usr/local/bin/k3s-ha-db-health"
HEALTH_UNIT = "/etc/systemd/system/k3s-ha-db-health.service"
HEALTH_SERVICE = HEALTH_UNIT.rsplit("/", 1)[-1].removesuffix(".service")


def peer_of(inv: Inventory, h: Host) -> Host:
    return next(x for x in inv.with_role("db") if x.name != h.name)


def health_allowed(inv: Inventory, h: Host) -> list[str]:
    """Addresses the health endpoint on `h` answers: the datastore balancers, the peer db
    host, `h`, localhost."""
    return sorted({"127.0.0.1", h.address, peer_of(inv, h).address}
                  | {b.address for b in inv.with_role("db-balancer")})


def health_script(inv: Inventory, h: Host, d: sql.Dialect) -> str:
    peer = peer_of(inv, h)
    return render.render("db-health.py.j2", port=inv.db["health_port"],
                         status_sql=sql.show_replica_status(d),
                         allowed=repr(health_allowed(inv, h)), peer=peer.address,
                         balancers=repr(sorted(b.address for b in inv.with_role("db-balancer"))),
                         my_id=h.server_id, peer_id=peer.server_id, client_user=inv.db["user"],
                         mysql_port=inv.db["port"], gtid_sql=sql.gtid_executed_var(d),
                         mariadb=d.mariadb, header=WRITER_HEADER,
                         stop_io=sql.stop_replica(d, "IO_THREAD"),
                         start_io=sql.start_replica(d, "IO_THREAD"))


def ensure_health(r: Run, conn: Connection, h: Host) -> None:
    """Script and unit in place, the service running; restarted only when one changed."""
    script = health_script(r.inv, h, server_version(conn, h.name))
    unit = render.render("db-health.service")
    with looked(conn, files=[HEALTH_BIN, HEALTH_UNIT], units=["k3s-ha-db-health"]):
        ch = r.step(h, "health script", lambda: ensure_file(conn, HEALTH_BIN, script,
                                                            mode="0755"))
        cu = r.step(h, "health unit", lambda: ensure_file(conn, HEALTH_UNIT, unit))
        if cu:
            sh(conn, "systemctl daemon-reload")
        r.step(h, "service k3s-ha-db-health", lambda: ensure_service(
            conn, "k3s-ha-db-health", changed_inputs=ch or cu))
