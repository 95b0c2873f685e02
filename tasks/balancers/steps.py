"""The balancer steps on one host (install, configure) and the settle check after them.

Each step is idempotent and recorded on the Run: packages present, configs validated on the
host before they replace the live files, HAProxy and keepalived reloaded (never restarted)
only when a file they read changed.
"""
from __future__ import annotations

from fabric import Connection

from ..core.errors import StepFailed
from ..core.cli import say
from ..core.inventory import Host
from ..core.ops import ensure_dir, ensure_file, ensure_packages, ensure_service, looked, path_stat
from ..core.run import FAILED, OK, Run
from ..core.ssh import sh
from ..facts import vrrp
from .config import (CHECK_CA, CHECK_PEM, HAPROXY_DOWN_FILE, HAPROXY_DROPIN, NOTIFY_SCRIPT,
                     failed_line, haproxy_config, haproxy_dropin, keepalived_config,
                     notify_script, pair_keys)

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
DROPIN_DIR = HAPROXY_DROPIN.rsplit("/", 1)[0]
PACKAGES = ["haproxy", "keepalived", "curl", "socat"]


def install_config(conn: Connection, path: str, content: str, validate: str,
                   mode: str = "0644") -> bool:
    """ensure_file with a validator; on rejection the message names the offending line."""
    try:
        return ensure_file(conn, path, content, mode=mode, validate=validate)
    except StepFailed as e:
        where = failed_line(str(e), content)
        if where:
            raise StepFailed(f"{e}\n    in the rendered {path}, {where}") from None
        raise


def install(r: Run, conn: Connection, h: Host) -> None:
    r.step(h, "packages", lambda: ensure_packages(conn, PACKAGES))


def has_check_cert(r: Run, conn: Connection, h: Host) -> bool:
    """readyz wanted on this API balancer and both check files there (so haproxy.cfg may
    name them; until then it checks /ping)."""
    if r.inv.balancers["api_health_check"] != "readyz" or "api" not in pair_keys(r.inv, h):
        return False
    return all((st := path_stat(conn, p)) is not None and st.size > 0
               for p in (CHECK_PEM, CHECK_CA))


def configure(r: Run, conn: Connection, h: Host) -> None:
    """The configs and services of one balancer; what it reads, in one round trip."""
    with looked(conn, files=[NOTIFY_SCRIPT, HAPROXY_CFG, KEEPALIVED_CONF, HAPROXY_DROPIN],
                stats=["/etc/keepalived", DROPIN_DIR, CHECK_PEM, CHECK_CA],
                units=["haproxy", "keepalived"]):
        _configure(r, conn, h)


def _configure(r: Run, conn: Connection, h: Host) -> None:
    hcfg = haproxy_config(r.inv, h, check_cert=has_check_cert(r, conn, h))
    kcfg = keepalived_config(r.inv, h)
    r.step(h, "/etc/keepalived", lambda: ensure_dir(conn, "/etc/keepalived"))
    nch = r.step(h, "notify script", lambda: ensure_file(conn, NOTIFY_SCRIPT, notify_script(),
                                                         mode="0755"))
    hch = r.step(h, "haproxy.cfg", lambda: install_config(conn, HAPROXY_CFG, hcfg,
                                                          "haproxy -c -f %s"))
    kch = r.step(h, "keepalived.conf", lambda: install_config(conn, KEEPALIVED_CONF, kcfg,
                                                              "keepalived -t -f %s"))
    dch = r.step(h, "haproxy drop-in", lambda: _dropin(conn))
    # a new drop-in takes effect on the next start: a reload does not run ExecStartPost, so
    # write the file's first value here (HAProxy is running, or the stats check says so)
    if dch:
        sh(conn, f"systemctl is-active -q haproxy && echo 0 > {HAPROXY_DOWN_FILE}; true")
    r.step(h, "haproxy running", lambda: ensure_service(conn, "haproxy", changed_inputs=hch,
                                                        reload=True))
    r.step(h, "keepalived running", lambda: ensure_service(
        conn, "keepalived", changed_inputs=kch or nch, reload=True))


def _dropin(conn: Connection) -> bool:
    ensure_dir(conn, DROPIN_DIR)
    changed = ensure_file(conn, HAPROXY_DROPIN, haproxy_dropin())
    if changed:
        sh(conn, "systemctl daemon-reload")
    return changed


def check_settled(r: Run, hosts: list[Host]) -> None:
    """Wait until each pair has its preferred holder; fail naming every unhealthy pair."""
    problems = []
    for key, seen in vrrp.wait_settled(r, hosts).items():
        if not seen:
            continue
        v = vrrp.verdict(key, r.inv.vips[key], seen)
        for s in seen:
            r.record(s.host, f"{key} VIP", OK if v.ok else FAILED, "holder" if s.holds else "")
        say(f"  {key} pair: {v.text}")
        if not v.ok:
            problems.append(v.text)
    if problems:
        raise StepFailed("the balancers did not settle: " + "; ".join(problems))
