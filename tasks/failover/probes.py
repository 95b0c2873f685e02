"""The drill's probes: each a thread that records a `Series` of samples until stopped.

From the operator's machine, straight to the VIPs (no SSH in the path): the API's TLS
/ping (10 Hz), an authenticated API request with the kubeconfig's client certificate
(2 Hz), a TCP connect to the datastore VIP with the VIP's ARP entry (who answers for it) as
detail. Over SSH, one thread per balancer: does its NIC carry the VIP (`ip -o -4 addr show`,
parsed by facts.vrrp, ~3 Hz); and the k3s nodes' Ready state (facts.k3s, 1 Hz).
The writer probe is in writer.py.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from typing import Callable

from fabric import Connection

from ..core.inventory import Host, Inventory, Vip
from ..core.ssh import connect, open_checked
from ..facts import k3s as k3sfacts
from ..facts.vrrp import addresses
from .timeline import Outcome, Sample, Series

Attempt = Callable[[], tuple[Outcome, str]]


class Probe(threading.Thread):
    """Calls `attempt` every `interval` seconds and records (t, outcome, latency, detail);
    t is seconds on `clock` (the drill's monotonic clock)."""

    def __init__(self, name: str, attempt: Attempt, interval: float,
                 clock: Callable[[], float]):
        super().__init__(name=f"probe-{name}", daemon=True)
        self.series = Series(name)
        self.attempt, self.interval, self.clock = attempt, interval, clock
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            t0 = self.clock()
            try:
                outcome, detail = self.attempt()
            except Exception as e:  # noqa: BLE001 - a probe records, never raises
                outcome, detail = Outcome.INDETERMINATE, f"{type(e).__name__}: {e}"[:200]
            t1 = self.clock()
            self.series.add(Sample(round(t0, 3), outcome, round(t1 - t0, 4), detail))
            self.halt.wait(max(0.0, self.interval - (t1 - t0)))

    def stop(self) -> None:
        self.halt.set()


# ------------------------------------------------------------------ from the operator
def tls_context(ca_pem: str | None = None, cert_file: str | None = None,
                key_file: str | None = None) -> ssl.SSLContext:
    """Verifies the API's certificate against the cluster CA when given (the name is not
    checked: the VIP's address need not be in the certificate), else no verification."""
    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else \
        ssl._create_unverified_context()  # noqa: S323 - /ping only, no credentials sent
    ctx.check_hostname = False
    if cert_file and key_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def https_get(address: str, port: int, path: str, ctx: ssl.SSLContext,
              timeout: float = 1.0) -> tuple[int, str]:
    c = http.client.HTTPSConnection(address, port, timeout=timeout, context=ctx)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read(2048).decode(errors="replace")
    finally:
        c.close()


def classify_exc(e: BaseException) -> Outcome:
    """Refused / unreachable before a request went out: FAIL; a timeout or a connection
    lost after sending: INDETERMINATE."""
    if isinstance(e, (ConnectionRefusedError, socket.gaierror)):
        return Outcome.FAIL
    if isinstance(e, OSError) and getattr(e, "errno", None) in (111, 113, 101):
        return Outcome.FAIL
    return Outcome.INDETERMINATE


def api_attempt(address: str, port: int, path: str, ctx: ssl.SSLContext,
                expect: Callable[[int, str], bool], timeout: float = 1.0) -> Attempt:
    def attempt() -> tuple[Outcome, str]:
        try:
            status, body = https_get(address, port, path, ctx, timeout)
        except (OSError, http.client.HTTPException) as e:
            return classify_exc(e), f"{type(e).__name__}: {e}"[:160]
        ok = expect(status, body)
        return (Outcome.OK if ok else Outcome.FAIL), f"{status} {body.strip()[:40]}"
    return attempt


def arp_mac(address: str, table: str = "/proc/net/arp") -> str:
    """The MAC this machine's ARP cache has for `address` ('' when none)."""
    try:
        with open(table) as f:
            for line in f.read().splitlines()[1:]:
                parts = line.split()
                if parts and parts[0] == address and len(parts) > 3:
                    return parts[3]
    except OSError:
        pass
    return ""


def tcp_attempt(address: str, port: int, timeout: float = 1.0) -> Attempt:
    def attempt() -> tuple[Outcome, str]:
        try:
            socket.create_connection((address, port), timeout=timeout).close()
        except OSError as e:
            return classify_exc(e), f"{e} mac={arp_mac(address)}"[:160]
        return Outcome.OK, f"mac={arp_mac(address)}"
    return attempt


# ------------------------------------------------------------------ over SSH
class Remote:
    """One SSH session to a host for one probe thread, reopened after a failure; every
    command has a short timeout so a dead host costs a sample, not the thread."""

    def __init__(self, inv: Inventory, host: Host, timeout: float = 2.0):
        self.inv, self.host, self.timeout = inv, host, timeout
        self.conn: Connection | None = None

    def run(self, cmd: str) -> str:
        if self.conn is None or not self.conn.is_connected:
            self.conn = connect(self.inv, self.host)
            self.conn.connect_timeout = self.timeout
            open_checked(self.conn)
        try:
            _, out, _ = self.conn.client.exec_command(cmd, timeout=self.timeout)
            return out.read().decode(errors="replace")
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001
                pass
        self.conn = None


def holder_attempt(remote: Remote, vip: Vip) -> Attempt:
    """OK: the host's NIC carries the VIP; FAIL: it does not; INDETERMINATE: unreadable."""
    def attempt() -> tuple[Outcome, str]:
        held = vip.address in addresses(remote.run("ip -o -4 addr show"))
        return (Outcome.OK, "holds") if held else (Outcome.FAIL, "does not hold")
    return attempt


def ready_attempt(remotes: list[Remote]) -> Attempt:
    """OK when a server's API lists every node Ready (servers tried in turn)."""
    def attempt() -> tuple[Outcome, str]:
        why = []
        for r in remotes:
            try:
                out = r.run(f"{k3sfacts.KUBECTL} get nodes -o json --request-timeout=2s")
                nodes = k3sfacts.parse_nodes(out)
            except Exception as e:  # noqa: BLE001
                why.append(f"{r.host.name}: {str(e)[:60]}")
                continue
            late = [n.name for n in nodes if not n.is_ready]
            if nodes and not late:
                return Outcome.OK, f"{len(nodes)} Ready"
            return Outcome.FAIL, "not Ready: " + ", ".join(late or ["no nodes"])
        return Outcome.INDETERMINATE, "; ".join(why)
    return attempt


def clock_from(t0: float) -> Callable[[], float]:
    return lambda: time.monotonic() - t0
