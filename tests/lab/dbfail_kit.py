"""Datastore failover under load, shared by tests/lab/test_dbfailover_lab.py and
bench/datastore_failover.py: a lab of its own per run ("df" + 3 random characters,
10.77.70.0/24 when free; two db balancers, two db hosts),
a writer client inserting through the datastore VIP and counting every acknowledgement,
the faults (through tasks.lab.labnet, plus `repl_cut`: the two databases cannot reach each
other while everything else can) and the verdicts read back from the databases.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from tasks.lab import labnet
from tasks.lab.names import lab_name, switch_ns
from tasks.db import tls
from tests.lab import khd_inventory, labid
from tests.lab.test_db_lab import (admin, fab, secret, wait_for,  # noqa: F401 - re-exported
                                   writable)

NAME, SUBNET = labid.claim("df", "10.77.70")  # unique per run
DB1, DB2 = "k3s-db-01", "k3s-db-02"
DB_VIP = f"{SUBNET}.101"
DB_BALANCERS = ("k3s-db-balancer-01", "k3s-db-balancer-02")
# the guide: mysql-check, primary + backup, file/position, no TLS
GUIDE = """health_check = "mysql-check"
rise = 30
fall = 3
check_inter_ms = 2000
gtid = false
tls = false"""


def write_inventory(folder: Path, extra_db: str = "") -> Path:
    """The db lab's hosts on this lab's subnet, [db] = the defaults + `extra_db`. No PROXY
    protocol: the writer client runs here, on the operator machine, and the k3s user is
    granted to the balancers (the grants under PROXY protocol are test_db_lab's)."""
    return khd_inventory.write_inventory(folder, lab=(NAME, SUBNET, 47),
                                         db_section=extra_db + "\nproxy_protocol = false")


def deploy(inv) -> None:
    for task in ("db.install", "db.secure", "db.configure", "db.replicate", "db.users",
                 "db.health", "balancers.deploy"):
        p = fab(inv, task, "--yes")
        assert p.returncode == 0, f"{task}:\n{p.stdout}\n{p.stderr}"


# ------------------------------------------------------------------ the writer client
@dataclass
class Writer:
    """Inserts rows through the VIP as fast as it can; one statement per row (autocommit).
    acked: (id, tag, monotonic time) of every acknowledged insert."""
    inv: object
    table: str = "k3s.ft"
    acked: list = field(default_factory=list)
    errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def connect(self):
        return pymysql.connect(host=DB_VIP, port=3306, user="k3s",
                               password=secret(self.inv, "k3s_db_password"), autocommit=True,
                               connect_timeout=1, read_timeout=15, write_timeout=15,
                               ssl=tls.client_ssl(self.inv))

    def setup(self):
        """The table created, retried for up to 10 s as a client would: right after a
        writer move the node HAProxy names stays read-only (1290) until its health daemon
        saw the old writer fenced."""
        deadline = time.monotonic() + 10
        while True:
            try:
                db = self.connect()
                with db.cursor() as c:
                    c.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (id BIGINT UNSIGNED "
                              "AUTO_INCREMENT PRIMARY KEY, tag VARCHAR(40) NOT NULL)")
                db.close()
                return
            except pymysql.MySQLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def run(self):
        db, n = None, 0
        while not self.stop.is_set():
            try:
                if db is None:
                    db = self.connect()
                n += 1
                tag = f"w{os.getpid()}-{n}"
                with db.cursor() as c:
                    c.execute(f"INSERT INTO {self.table} (tag) VALUES (%s)", (tag,))
                    self.acked.append((c.lastrowid, tag, time.monotonic()))
            except pymysql.MySQLError:
                self.errors += 1
                try:
                    if db is not None:
                        db.close()
                except Exception:  # noqa: BLE001
                    pass
                db = None
                time.sleep(0.02)

    def __enter__(self):
        self.setup()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)

    def outage(self, t0: float) -> float:
        """The longest gap between two acknowledgements after t0 (the fault)."""
        times = [t for _, _, t in self.acked]
        before = [t for t in times if t <= t0]
        after = [t for t in times if t > t0]
        prev, gap = (before[-1] if before else t0), 0.0
        for t in after:
            gap, prev = max(gap, t - prev), t
        return gap


def writer_host(inv) -> str:
    """The db host the VIP writes to now (its server_id through the VIP)."""
    w = Writer(inv)
    db = w.connect()
    with db.cursor() as c:
        c.execute("SELECT @@server_id")
        sid = c.fetchone()[0]
    db.close()
    return {1: DB1, 2: DB2}[sid]


def on_host(inv, host: str, command: str) -> str:
    """A shell command on a lab host over SSH; its stdout."""
    p = subprocess.run(labnet.ssh_argv(inv, host, [command]), capture_output=True,
                       text=True, timeout=60)
    return p.stdout


def stick_entry(inv, balancer: str) -> int | None:
    """The writer entry (gpt0) of that balancer's HAProxy, read from its runtime API."""
    from tasks.facts.datastore import parse_stick_table
    return parse_stick_table(on_host(inv, balancer, "echo 'show table k3s-db' | socat stdio "
                                     "UNIX-CONNECT:/run/haproxy/admin.sock"))


def vip_on(inv, balancer: str) -> bool:
    return f" {DB_VIP}/" in on_host(inv, balancer, "ip -o -4 addr show")


# ------------------------------------------------------------------ faults
def _switch_drop(inv, name: str, rules: list[str]) -> None:
    """nftables drop rules in the lab switch's namespace (table bridge <lab>_<name>);
    none: the table removed."""
    table = f"{lab_name(inv)}_{name}"
    body = f"table bridge {table}\ndelete table bridge {table}\n"
    if rules:
        body += (f"table bridge {table} {{\n chain forward {{\n"
                 "  type filter hook forward priority -10; policy accept;\n"
                 + "".join(f"  {x} drop\n" for x in rules) + " }\n}\n")
    subprocess.run(["ip", "netns", "exec", switch_ns(lab_name(inv)), "nft", "-f", "-"],
                   input=body, text=True, check=True, timeout=30)


def repl_cut(inv, on: bool) -> None:
    """The two databases cannot reach each other; everything else can."""
    a, b = inv.host(DB1).address, inv.host(DB2).address
    _switch_drop(inv, "dbcut", [f"ip saddr {a} ip daddr {b}", f"ip saddr {b} ip daddr {a}"]
                 if on else [])


def cut_off(inv, host: str, on: bool) -> None:
    """`host` reaches no lab host and no lab host reaches it; only the operator still does:
    a writer cut off from its peer and the balancers that a test can still log in to."""
    a, op = inv.host(host).address, f"{SUBNET}.1"
    _switch_drop(inv, "cutoff", [f"ip saddr {a} ip daddr != {op}",
                                 f"ip daddr {a} ip saddr != {op}"] if on else [])


@dataclass
class Fault:
    name: str
    target: str        # "writer" | "standby"
    kind: str          # power | partition | replcut


FAULTS = [Fault("writer power cut", "writer", "power"),
          Fault("writer partition", "writer", "partition"),
          Fault("standby power cut", "standby", "power"),
          Fault("replication link cut", "writer", "replcut")]


OPS = {"power": (labnet.power_off, labnet.power_on),
       "partition": (labnet.partition, labnet.heal),
       "replcut": (lambda inv, _: repl_cut(inv, True), lambda inv, _: repl_cut(inv, False))}


def inject(inv, f: Fault, host: str) -> None:
    OPS[f.kind][0](inv, host)


def repair(inv, f: Fault, host: str) -> None:
    OPS[f.kind][1](inv, host)


# ------------------------------------------------------------------ verdicts
@dataclass
class Result:
    fault: str
    outage: float
    acked: int
    lost: int
    reused: int
    errant: str          # the node db.rejoin rebuilt, "" when none
    healthy_after: float | None  # seconds from the repair to both replicas healthy +
    #                              equal; None: not within the wait
    checksum_ok: bool


def replica_ok(inv, host) -> str | None:
    """The node's executed GTIDs when both replica threads run, else None."""
    s = admin(inv, host)
    try:
        st = s("SHOW SLAVE STATUS")
        ok = bool(st) and st[0]["Slave_IO_Running"] == "Yes" and \
            st[0]["Slave_SQL_Running"] == "Yes"
        return s("SELECT @@gtid_binlog_pos g")[0]["g"] if ok else None
    finally:
        s.close()


def converge(inv, t_repair: float, timeout: float = 60) -> tuple[str, float]:
    """Wait for both replicas running and the same GTIDs executed on both; when db.status
    names a node ERRANT, db.rejoin it. (the node rebuilt, seconds from the repair to
    healthy); raises when it never is."""
    rebuilt, end = "", time.monotonic() + timeout
    while time.monotonic() < end:
        a, b = replica_ok(inv, DB1), replica_ok(inv, DB2)
        if a is not None and a == b:
            st = fab(inv, "db.status", "--yes")
            if st.returncode == 0:
                return rebuilt, time.monotonic() - t_repair
        st = fab(inv, "db.status", "--yes")
        line = next((ln for ln in st.stdout.splitlines() if "ERRANT" in ln), "")
        if line and not rebuilt:
            rebuilt = line.split()[0]
            p = fab(inv, "db.rejoin", "--host", rebuilt, "--yes")
            assert p.returncode == 0, p.stdout + p.stderr
            continue
        time.sleep(1)
    raise AssertionError(f"replication not healthy {timeout} s after the repair:\n"
                         + fab(inv, "db.status", "--yes").stdout + io_errors(inv))


def io_errors(inv) -> str:
    out = ""
    for h in (DB1, DB2):
        s = admin(inv, h)
        st = (s("SHOW SLAVE STATUS") or [{}])[0]
        out += (f"\n{h}: {st.get('Last_IO_Error')} | {st.get('Last_SQL_Error')} | slave_pos "
                f"{s('SELECT @@gtid_slave_pos g')[0]['g']} | binlog "
                f"{s('SELECT @@gtid_binlog_pos g')[0]['g']}")
        s.close()
    return out


def verdict(inv, w: Writer, fault: str, t_fault: float, rebuilt: str,
            healthy: float | None) -> Result:
    ids = Counter(i for i, _, _ in w.acked)
    s = admin(inv, writer_host(inv))
    try:
        rows = dict((r["id"], r["tag"]) for r in s(f"SELECT id, tag FROM {w.table}"))
    finally:
        s.close()
    lost = sum(1 for i, tag, _ in w.acked if rows.get(i) != tag)
    ck = fab(inv, "db.checksum", "--yes")
    return Result(fault, w.outage(t_fault), len(w.acked), lost,
                  sum(1 for c in ids.values() if c > 1), rebuilt, healthy, ck.returncode == 0)


def run_fault(inv, f: Fault, heal_after: float, table: str, must_heal: bool = True
              ) -> Result:
    """One fault under load: client, fault, repair after `heal_after`, convergence, verdict.
    must_heal False (the bench): replication never healthy again is a figure
    (healthy_after None), not an error."""
    w = Writer(inv, table=table)
    with w:
        time.sleep(2)
        writer = writer_host(inv)
        host = writer if f.target == "writer" else (DB2 if writer == DB1 else DB1)
        t_fault = time.monotonic()
        inject(inv, f, host)
        try:
            time.sleep(heal_after)
        finally:
            repair(inv, f, host)
        t_repair = time.monotonic()
        time.sleep(3)
    try:
        rebuilt, healthy = converge(inv, t_repair)
    except AssertionError:
        if must_heal:
            raise
        rebuilt, healthy = "", None
    return verdict(inv, w, f.name, t_fault, rebuilt, healthy)
