"""The report: JSON shape, table, bands and a PNG per scenario; hostfault and labcut
rendering; the writer's outcome classification; the kubeconfig parser."""
import base64
import json

import pymysql

from tasks.failover import hostfault, kubecreds, labcut, report
from tasks.failover import scenarios as S
from tasks.failover.accounting import SetResult, WriteOutcome
from tasks.failover.timeline import Outage, Outcome, Sample, Series
from tasks.failover.verdict import Breach, Result
from tasks.failover.writer import DrillWriter


def result():
    sc = S.BY_NAME["db-primary-down"]
    r = Result(sc, 1, "k3s-db-01", 2.0, 17.0, 30.0, healthy_after_s=4.2)
    s = Series("db-writer", [Sample(t / 10, Outcome.FAIL if 25 < t < 60 else Outcome.OK)
                             for t in range(300)])
    r.series = {"db-writer": s, "vip-db@b1": Series("vip-db@b1", [Sample(0, Outcome.OK)])}
    r.outages["db-writer"] = Outage(0.6, 3.4, 3.4)
    r.writes = SetResult(250, 250, {}, {}, {}, {}, 3, 1)
    r.dual_ownership_s = {"db": 0.0}
    return r


def test_json_shape(tmp_path):
    r = result()
    doc = report.to_json([(r, []), (r, [Breach("db-writer outage", "12 s", "10 s")])])
    json.dumps(doc)
    assert doc["passed"] is False
    one = doc["results"][0]
    assert set(one) >= {"scenario", "cycle", "target", "outages", "writes", "kine",
                        "dual_ownership_s", "checksums_equal", "replication",
                        "nodes_ready", "healthy_after_s", "breaches", "passed"}
    assert one["outages"]["db-writer"] == {"detect_s": 0.6, "longest_s": 3.4, "total_s": 3.4}
    assert one["writes"]["acknowledged"] == 250 and one["writes"]["lost"] == 0
    assert doc["results"][1]["breaches"] == ["db-writer outage: 12 s (limit 10 s)"]


def test_table_and_files(tmp_path):
    r = result()
    text = report.table([(r, [Breach("x", "1", "0")])])
    assert "db-primary-down" in text and "FAIL" in text and "Breaches:" in text
    paths = report.write(tmp_path, [(r, [])])
    assert paths[1].name == "db-primary-down-1.png"
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bands_merge_equal_outcomes():
    s = Series("p", [Sample(0, Outcome.OK), Sample(1, Outcome.OK), Sample(2, Outcome.FAIL),
                     Sample(3, Outcome.OK, latency=0.05)])
    got = [(a, round(b, 6), o) for a, b, o in report.bands(s)]
    assert got == [(0, 2, Outcome.OK), (2, 1, Outcome.FAIL), (3, 0.1, Outcome.OK)]


def test_hostfault_arms_the_undo_before_the_fault():
    fault, undo = hostfault.service_fault("haproxy", 130)
    assert fault.index("--on-active=130s") < fault.index("systemctl stop haproxy")
    assert "systemctl start haproxy" in undo
    iso = hostfault.render_isolation("10.0.0.1", 22)
    assert "policy drop" in iso and "ip saddr 10.0.0.1 tcp dport 22 accept" in iso
    cmd = hostfault.nft_fault(iso, 60)
    assert cmd.index("systemd-run") < cmd.index("nft -f -")
    assert "ip saddr 10.0.0.2 drop" in hostfault.render_block_peer("10.0.0.2")


def test_labcut_drops_only_between_the_two_databases():
    text = labcut.render_cut("khf_drill", "10.1.0.31", "10.1.0.32")
    assert "ip saddr 10.1.0.31 ip daddr 10.1.0.32 drop" in text
    assert "ip saddr 10.1.0.32 ip daddr 10.1.0.31 drop" in text
    assert text.count("drop") == 2


def test_kubeconfig_fields_decoded():
    b = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    text = (f"    certificate-authority-data: {b('CA')}\n"
            f"    client-certificate-data: {b('CERT')}\n    client-key-data: {b('KEY')}\n")
    assert kubecreds.parse(text) == {"certificate-authority-data": "CA",
                                     "client-certificate-data": "CERT",
                                     "client-key-data": "KEY"}


class Cur:
    def __init__(self, exc=None):
        self.exc, self.lastrowid = exc, 42

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def execute(self, *a):
        if self.exc:
            raise self.exc


class Db:
    def __init__(self, exc=None):
        self.exc = exc

    def cursor(self):
        return Cur(self.exc)

    def close(self):
        pass


def test_writer_outcomes():
    w = DrillWriter("127.0.0.1", 1, "pw", base=1000)
    w.db = Db()
    assert w.insert(1001, 0.0)[0].outcome is WriteOutcome.ACK
    w.db = Db(pymysql.err.OperationalError(2013, "Lost connection during query"))
    assert w.insert(1002, 0.0)[0].outcome is WriteOutcome.INDETERMINATE
    w.db = Db(pymysql.err.OperationalError(1290, "read-only"))
    assert w.insert(1003, 0.0)[0].outcome is WriteOutcome.FAIL
    w.db = None
    w._connect = lambda: (_ for _ in ()).throw(pymysql.err.OperationalError(2003, "refused"))
    assert w.insert(1004, 0.0)[0].outcome is WriteOutcome.FAIL
