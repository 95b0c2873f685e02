"""failover.drill on a small deployed cluster in the lab (instance "dr" + 3 random characters, 10.77.50.0/24 when free).

Required set: API balancer HAProxy stopped, primary database host down, primary database
returning (and the k3s server stopped once k3s is deployed in the lab). Asserts outages
within the thresholds, no acknowledged write lost, checksums equal, replication healthy,
every node Ready afterwards, the report's JSON and PNGs written.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fabric import Config
from invoke import Context

from tasks.core import inventory
from tasks.core.run import Run
from tasks.failover import health, session
from tasks.lab import labnet
from tests.lab.khf_inventory import write_inventory

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
TIMINGS: dict[str, float] = {}
ISSUE_12 = ("issue 12 (datastore failover safe for kine) is not on main yet: a power cut of "
            "the writer leaves an errant AUTO_INCREMENT row on it, the returning node's SQL "
            "thread stops on 1062 and the cluster never gets healthy; the drill measures "
            "exactly that. Remove this xfail when issue 12 lands.")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    path = write_inventory(tmp_path_factory.mktemp("khf"))
    inv = inventory.load(path)
    try:
        t0 = time.monotonic()
        labnet.up(inv, log=lambda m: None)
        TIMINGS["lab up"] = time.monotonic() - t0
        env = {k: v for k, v in os.environ.items() if not k.startswith("K3S_HA_")}
        env["K3S_HA_INVENTORY"] = str(path)
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "fabric", "cluster.deploy", "--yes"],
                           cwd=ROOT, env=env, text=True, capture_output=True, timeout=900,
                           stdin=subprocess.DEVNULL)
        TIMINGS["deploy"] = time.monotonic() - t0
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        yield inv
    finally:
        labnet.down(inv, log=lambda m: None)
        print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f}s" for k, v in TIMINGS.items()))


def run(inv):
    return Run(Context(config=Config()), "failover.drill (test)", yes=True, inv=inv)


def test_drill_api_and_k3s(cluster, tmp_path):
    r = run(cluster)
    names = ["api-haproxy-stopped"]
    if health.Part.K3S in health.deployed(r):
        names.append("k3s-server-stopped")
    drill(cluster, r, names, tmp_path)


def test_unhealthy_cluster_refused(cluster, tmp_path):
    """A stopped HAProxy on the API VIP's standby: the drill names it and disrupts nothing."""
    r = run(cluster)
    try:
        conn = r.conn(cluster.host("k3s-balancer-02"))
        conn.run("systemctl stop haproxy", hide=True, in_stream=False)
        with pytest.raises(Exception) as e:
            session.run_drill(r, ["db-standby-down"], 1, True, str(tmp_path / "r"))
        assert "k3s-balancer-02: haproxy inactive" in str(e.value)
        assert not (tmp_path / "r").exists()
    finally:
        r.conn(cluster.host("k3s-balancer-02")).run("systemctl start haproxy", hide=True,
                                                    in_stream=False)
        r.close()


@pytest.mark.xfail(reason=ISSUE_12, strict=False)
def test_drill_primary_down_and_returning(cluster, tmp_path):
    drill(cluster, run(cluster), ["db-primary-down", "db-primary-returning"], tmp_path)


def _k3s_uptime(cluster, host: str) -> float:
    """Seconds since the k3s unit's main process started on `host`."""
    p = subprocess.run(labnet.ssh_argv(cluster, host, [
        "ps -o etimes= -p $(systemctl show -p MainPID --value k3s)"]),
        capture_output=True, text=True, timeout=30)
    return float(p.stdout.strip())


def drill(cluster, r, names, tmp_path):
    t0 = time.monotonic()
    try:
        results = session.run_drill(r, names, 1, True, str(tmp_path / "report"))
    finally:
        r.close()
    TIMINGS["drill " + " ".join(names)] = time.monotonic() - t0
    doc = json.loads((tmp_path / "report" / "report.json").read_text())
    print(json.dumps([{k: x[k] for k in ("scenario", "target", "outages", "writes",
                                          "healthy_after_s", "breaches")}
                      for x in doc["results"]], indent=1))
    assert [x["scenario"] for x in doc["results"]] == names
    for res, breaches in results:
        name = res.scenario.name
        assert not breaches, f"{name}: " + "; ".join(b.text for b in breaches)
        if name == "k3s-server-stopped":
            # with two servers the API balancer retries on the other one: no outage is the
            # expected result, so prove the fault happened (k3s restarted during the drill)
            assert _k3s_uptime(cluster, res.target) < time.monotonic() - t0, name
        elif name != "db-primary-returning":
            assert res.measured is not None and res.measured.detect_s is not None, \
                f"{name}: the fault was never seen by a probe"
        if res.writes is not None:
            assert res.writes.acknowledged > 50, name
            assert not res.writes.lost and res.writes.duplicates == 0, name
            assert res.checksums_equal and all(v == "" for v in res.replication.values())
        assert all(res.nodes_ready.values())
        assert (tmp_path / "report" / f"{name}-1.png").stat().st_size > 10_000
    assert doc["passed"] is True
    # the cluster is healthy again afterwards, read from the programs
    r = run(cluster)
    try:
        assert health.problems(r, health.deployed(r)) == []
    finally:
        r.close()
