"""The API balancers' `readyz` check for real (the k3s lab's inventory,
tests/lab/kh3_inventory.py: a lab name and subnet of this run's own, shared with
test_k3s_lab.py: run the two modules one after the other, never at the same time), with
the k3s-ha stand-in (tasks/lab/standin: NOT k3s) behind real HAProxy 2.6.

Inventory: api_health_check = "readyz", two servers, no agent. The balancers are deployed
first (no k3s yet: the /ping check, said so; stage 0), then `fab cluster.deploy --yes`
(the `deployed` fixture, once) must end with the readyz check running (stage 1: the tests
after k3s; tests/lab/conftest.py runs stage 0 first, in any order within a stage). Then the point of it: the stand-in's hang fault on one server
(its API answers nothing, /ping still does, as k3s's own router answers it) takes THAT
server DOWN within the check's fall time under readyz, while the /ping variant keeps it UP.
State is read from HAProxy's runtime API (show stat, show ssl cert, show info).
"""
import os
import time

import pytest

from tasks.balancers.config import CHECK_CA, CHECK_PEM
from tasks.core import inventory
from tasks.facts.haproxy import parse_show_stat
from tasks.lab import labnet
from tests.lab.kh3_inventory import SERVERS, write_inventory
from tests.lab.test_k3s_lab import fab, ok, recap, ssh, wait_for

pytestmark = pytest.mark.lab
TIMINGS: dict[str, float] = {}
S1, S2 = SERVERS
LB1, LB2 = "k3s-balancer-01", "k3s-balancer-02"
SOCK = "socat -t 3 stdio UNIX-CONNECT:/run/haproxy/admin.sock"
WINDOW = 30.0  # s: readyz must mark a hung server DOWN within this (inter 1s fall 2 +
#                timeout check 5s per hung check ~ 12 s, with margin for a loaded machine)


def write(folder, check: str):
    return write_inventory(folder, agents=(), balancers={"api_health_check": check})


def runtime(inv, host: str, cmd: str) -> str:
    return ssh(inv, host, f"echo '{cmd}' | {SOCK}")


def api_servers(inv, host: str) -> dict[str, str]:
    """server -> 'UP'/'DOWN' ... of the k3s-api backend, from HAProxy's `show stat`."""
    rows = parse_show_stat(runtime(inv, host, "show stat"))
    return {r.server: r.status for r in rows if r.proxy == "k3s-api"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    inv = inventory.load(write(tmp_path_factory.mktemp("kh3-readyz"), "readyz"))
    try:
        t0 = time.monotonic()
        labnet.up(inv, log=lambda m: None)
        TIMINGS["lab up"] = time.monotonic() - t0
        ok(fab(inv, "balancers.deploy", "--yes"))
        yield inv
    finally:
        labnet.down(inventory.load(inv.path), log=lambda m: None)
        print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f}s" for k, v in TIMINGS.items()))


DEPLOYED: dict[str, object] = {}


@pytest.fixture(scope="module")
def deployed(lab):
    """Stage 1: cluster.deploy, once (k3s installed: readyz can be checked); its output and
    time kept for the test that checks it."""
    if "p" not in DEPLOYED:
        t0 = time.monotonic()
        DEPLOYED["p"] = fab(lab, "cluster.deploy", "--yes", timeout=1200)
        TIMINGS["cluster.deploy"] = time.monotonic() - t0
    return ok(DEPLOYED["p"])


@pytest.mark.stage(0)  # before k3s exists (tests/lab/conftest.py runs stage 0 first)
def test_before_k3s_the_ping_check_runs_and_status_says_so(lab):
    for lb in (LB1, LB2):
        cfg = ssh(lab, lb, "cat /etc/haproxy/haproxy.cfg")
        assert "option httpchk GET /ping" in cfg and CHECK_PEM not in cfg, cfg
    out = ok(fab(lab, "balancers.status", "--yes"))
    assert out.count("API check: httpchk (readyz configured, no check certificate") == 2, out
    p = fab(lab, "balancers.api-check-cert", "--yes")
    assert p.returncode != 0 and "the k3s servers are not installed yet" in p.stdout + p.stderr


@pytest.mark.stage(1)
def test_cluster_deploy_ends_with_readyz_active(lab, deployed):
    out = deployed
    for lb in (LB1, LB2):
        cert = runtime(lab, lb, f"show ssl cert {CHECK_PEM}")
        assert "Subject: /CN=system:k3s-ha-health" in cert, cert
        assert wait_for(lambda: set(api_servers(lab, lb).values()) == {"UP"}, 30), \
            api_servers(lab, lb)
        # both servers' last check answered 200 (a check running right now shows as
        # "* L7OK,0" in `show stat`: [CI] read again)
        assert wait_for(lambda: runtime(lab, lb, "show stat").count("L7OK,200") == 2, 30), \
            runtime(lab, lb, "show stat")
        modes = ssh(lab, lb, f"stat -c '%a %U' {CHECK_PEM} {CHECK_CA}").split("\n")
        assert modes[:2] == ["600 root", "644 root"], modes
    key = ssh(lab, LB1, f"sed -n '/PRIVATE KEY/,$p' {CHECK_PEM}").strip().splitlines()
    assert len(key) > 2 and not [ln for ln in key[1:-1] if ln in out], "key in the output"
    status = ok(fab(lab, "balancers.status", "--yes"))
    assert status.count("API check: readyz (client certificate /CN=system:k3s-ha-health") == 2
    assert "API check readyz" in ok(fab(lab, "cluster.status", "--yes"))


def _worker_pid(inv, host: str) -> str:
    info = runtime(inv, host, "show info")
    return next(ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("Pid:"))


@pytest.mark.stage(1)
def test_second_run_issues_nothing_and_reloads_nothing(lab, deployed):
    before = {lb: _worker_pid(lab, lb) for lb in (LB1, LB2)}
    pems = {lb: ssh(lab, lb, f"sha256sum {CHECK_PEM}") for lb in (LB1, LB2)}
    out = ok(fab(lab, "balancers.api-check-cert", "--yes"))
    assert "changed" not in recap(out) and "no changes" in out, out
    assert {lb: _worker_pid(lab, lb) for lb in (LB1, LB2)} == before
    assert {lb: ssh(lab, lb, f"sha256sum {CHECK_PEM}") for lb in (LB1, LB2)} == pems
    # and balancers.configure keeps readyz now that the certificate is there
    out = ok(fab(lab, "balancers.configure", "--role", "api", "--yes"))
    assert "changed" not in recap(out), out


@pytest.mark.stage(1)
def test_anonymous_readyz_refused_the_check_certificate_admitted(lab, deployed):
    # the serving certificate names the node, its address and the tls-san names (as k3s)
    url = f"--resolve {S1}:6443:{lab.host(S1).address} https://{S1}:6443/readyz"
    anon = ssh(lab, LB1, f"curl -s -o /dev/null -w '%{{http_code}}' --cacert {CHECK_CA} {url}")
    assert anon == "401"
    # curl takes the certificate and key from the one PEM HAProxy uses
    withcert = ssh(lab, LB1, f"curl -s --cacert {CHECK_CA} --cert {CHECK_PEM} {url}")
    assert withcert == "ok"


def _time_to(inv, host: str, server: str, state: str, window: float) -> float | None:
    """Seconds until HAProxy on `host` shows `server` in `state`, or None within window."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < window:
        if api_servers(inv, host).get(server, "").startswith(state):
            return time.monotonic() - t0
        time.sleep(0.5)
    return None


def _hung(inv, server: str):
    ssh(inv, server, "k3s standin-hang on")
    return time.monotonic()


@pytest.mark.stage(1)
def test_readyz_marks_the_hung_server_down_ping_keeps_it_up(lab, deployed):
    assert "pong" in ssh(lab, LB1, f"curl -sk https://{S1}.lab.lan:6443/ping")
    try:
        _hung(lab, S1)
        took = _time_to(lab, LB1, S1, "DOWN", WINDOW)
        assert took is not None, f"readyz: {S1} not DOWN within {WINDOW} s while hung"
        TIMINGS["readyz: hung server DOWN after"] = took
        assert api_servers(lab, LB1)[S2].startswith("UP")
        # the /ping answer that keeps the other variant's check green is still there
        assert "pong" in ssh(lab, LB1, f"curl -sk -m 3 https://{S1}.lab.lan:6443/ping")
    finally:
        ssh(lab, S1, "k3s standin-hang off")
    assert _time_to(lab, LB1, S1, "UP", WINDOW) is not None, "readyz: not UP again"
    # the same fault under the httpchk (/ping) variant: the hung server stays UP
    write(lab.path.parent, "httpchk")
    ping = inventory.load(lab.path)
    ok(fab(ping, "balancers.configure", "--role", "api", "--yes"))
    try:
        assert "GET /ping" in ssh(ping, LB1, "cat /etc/haproxy/haproxy.cfg")
        _hung(ping, S1)
        assert _time_to(ping, LB1, S1, "DOWN", WINDOW) is None, "httpchk saw the hang?"
        assert api_servers(ping, LB1)[S1].startswith("UP")
    finally:
        ssh(ping, S1, "k3s standin-hang off")
        write(lab.path.parent, "readyz")
    ok(fab(lab, "balancers.configure", "--role", "api", "--yes"))
    assert "GET /readyz" in ssh(lab, LB1, "cat /etc/haproxy/haproxy.cfg")
    assert wait_for(lambda: set(api_servers(lab, LB1).values()) == {"UP"}, 30)
