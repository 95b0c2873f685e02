"""Carry out a scenario's fault and its restore: the lab's fault API in the lab, expiring
host rules (hostfault.py) on real hosts. `resolve` names the host(s) a scenario hits, from
the live cluster; `inflict` applies the fault and returns the restore to call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..core.errors import StepFailed
from ..core.inventory import Host
from ..core.run import Run
from ..core.ssh import sh
from ..facts import datastore
from ..facts.vrrp import vip_holder
from ..lab import labnet
from . import hostfault, labcut
from .scenarios import Action, Scenario, Target

EXPIRE_MARGIN_S = 120  # real hosts: the undo timer fires this long after the planned restore
# a fault or restore command on a host (systemctl, systemd-run, nft): seen taking over 60 s
# in the lab with three labs and a benchmark on two cores
CMD_TIMEOUT_S = 180


def db_writer(r: Run) -> str | None:
    """The db host the datastore VIP sends writes to (HAProxy's own view), or None."""
    return datastore.find_writer(r).host


def resolve(r: Run, target: Target) -> list[Host]:
    """The host(s) the scenario disrupts, now (StepFailed when it cannot be told)."""
    inv = r.inv
    if target in (Target.API_VIP_HOLDER, Target.DB_VIP_HOLDER):
        vip = inv.vips["api" if target is Target.API_VIP_HOLDER else "db"]
        holder, why = vip_holder(r, vip)
        if holder is None:
            raise StepFailed(f"cannot choose the target: {why}")
        return [holder]
    dbs = inv.with_role("db")
    if target is Target.DB_PAIR:
        return dbs
    if target in (Target.DB_WRITER, Target.DB_STANDBY):
        w = db_writer(r)
        if w is None:
            raise StepFailed("cannot choose the target: the datastore VIP has no writer")
        return [h for h in dbs if (h.name == w) == (target is Target.DB_WRITER)][:1]
    return inv.with_role("k3s-server")[:1]


def unit_for(r: Run, host: Host, service: str) -> str:
    if service != "mysqld":
        return service
    res = sh(r.conn(host), "systemctl cat mariadb.service >/dev/null 2>&1 && echo mariadb "
             "|| echo mysql", warn=True, write=False, timeout=15)
    return res.stdout.strip() or "mysql"


@dataclass
class Inflicted:
    """A fault in force: `restore()` undoes it (idempotent)."""
    what: str
    restore: Callable[[], None]


def inflict(r: Run, sc: Scenario, hosts: list[Host]) -> Inflicted:
    """Apply the scenario's fault to `hosts`; the returned restore undoes it."""
    expire = int(sc.hold_s) + EXPIRE_MARGIN_S
    fn = _lab if r.inv.is_lab else _real
    return fn(r, sc, hosts, expire)


def _lab(r: Run, sc: Scenario, hosts: list[Host], expire: int) -> Inflicted:
    inv, h = r.inv, hosts[0]
    if sc.fault is Action.POWER_OFF:
        labnet.power_off(inv, h.name)
        return Inflicted(f"{h.name} powered off", lambda: labnet.power_on(inv, h.name))
    if sc.fault is Action.PARTITION:
        labnet.partition(inv, h.name)
        return Inflicted(f"{h.name} partitioned", lambda: labnet.heal(inv, h.name))
    if sc.fault is Action.CUT_LINK:
        labcut.cut(inv, hosts[0].address, hosts[1].address)
        return Inflicted("replication link cut", lambda: labcut.mend(inv))
    if sc.fault is Action.FREEZE:
        def hang(state: str) -> None:
            sh(r.conn(h), f"k3s standin-hang {state}", timeout=20)
        hang("on")
        return Inflicted(f"{h.name}: API hung (stand-in's hang fault)", lambda: hang("off"))
    return _service(r, sc, h, expire)


def _service(r: Run, sc: Scenario, h: Host, expire: int) -> Inflicted:
    unit = unit_for(r, h, sc.service)
    fault, undo = hostfault.service_fault(unit, expire)
    sh(r.conn(h), fault, timeout=CMD_TIMEOUT_S)

    def restore() -> None:
        sh(fresh(r, h), undo, timeout=CMD_TIMEOUT_S)
    return Inflicted(f"{h.name}: {unit} stopped", restore)


def fresh(r: Run, h: Host):  # noqa: ANN201 - a Connection
    """The host's connection, reopened when a fault broke it."""
    conn = r.conn(h)
    try:
        conn.run("true", hide=True, timeout=5)
    except Exception:  # noqa: BLE001 - a dead session after a fault
        conn.close()
        conn = r.conn(h)
    return conn


def _real(r: Run, sc: Scenario, hosts: list[Host], expire: int) -> Inflicted:
    h = hosts[0]
    if sc.fault is Action.STOP_SERVICE:
        return _service(r, sc, h, expire)
    if sc.fault is Action.FREEZE:
        fault, undo = hostfault.freeze_fault(sc.service, expire)
        sh(r.conn(h), fault, timeout=CMD_TIMEOUT_S)
        return Inflicted(f"{h.name}: {sc.service} frozen (SIGSTOP)",
                         lambda: sh(fresh(r, h), undo, timeout=CMD_TIMEOUT_S) and None)
    if sc.fault is Action.CUT_LINK:
        pairs = [(hosts[0], hosts[1]), (hosts[1], hosts[0])]
        for me, peer in pairs:
            sh(r.conn(me), hostfault.nft_fault(hostfault.render_block_peer(peer.address),
                                               expire), timeout=CMD_TIMEOUT_S)

        def mend() -> None:
            for me, _ in pairs:
                sh(fresh(r, me), hostfault.disarm(hostfault.UNDO_NFT), timeout=CMD_TIMEOUT_S)
        return Inflicted("replication link cut (expiring rules)", mend)
    op = sh(r.conn(h), hostfault.operator_address_cmd(), write=False).stdout.strip()
    sh(r.conn(h), hostfault.nft_fault(hostfault.render_isolation(op, h.ssh_port), expire),
       timeout=CMD_TIMEOUT_S)
    return Inflicted(f"{h.name} isolated (expiring rules, {expire} s at most)",
                     lambda: sh(fresh(r, h), hostfault.disarm(hostfault.UNDO_NFT), timeout=CMD_TIMEOUT_S)
                     and None)


# real hosts: what each fault runs there (systemd-run arms the undo timer of every fault)
NFT_FAULTS = (Action.POWER_OFF, Action.PARTITION, Action.CUT_LINK)


def tools_needed(chosen: list[Scenario], targets: dict[str, list[Host]]
                 ) -> dict[str, set[str]]:
    """Real hosts: host name -> the tools the chosen faults run there (pure)."""
    need: dict[str, set[str]] = {}
    for sc in chosen:
        for h in targets[sc.name]:
            need.setdefault(h.name, {"systemd-run"}).update(
                {"nft"} if sc.fault in NFT_FAULTS else set())
    return need


def tools_missing(r: Run, need: dict[str, set[str]]) -> list[str]:
    """"<host>: <tool> missing" for every needed tool a host lacks."""
    out = []
    for name, tools in need.items():
        probe = " ".join(f"command -v {t} >/dev/null || echo {t};" for t in sorted(tools))
        res = sh(r.conn(r.inv.host(name)), probe, warn=True, write=False, timeout=15)
        out += [f"{name}: {t} missing" for t in res.stdout.split()]
    return out


def describe(sc: Scenario, hosts: list[Host]) -> str:
    return f"{sc.name}: {', '.join(h.name for h in hosts)}: {sc.disrupts}"

