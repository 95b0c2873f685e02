"""The nftables scripts the drill loads on real hosts, checked by the real nft (in a
private network namespace, `nft -c`: nothing is loaded). A syntax error here made every
real-host isolation and replication cut fail on the host (found by the lab test)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tasks.failover import hostfault

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft")
                                or not shutil.which("unshare"),
                                reason="needs root, nft and unshare (scripts/install-lab-deps.sh)")


def nft_check(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "-n", "nft", "-c", "-f", "-"], input=script, text=True,
                          capture_output=True, timeout=30)


@pytest.mark.parametrize("script", [hostfault.render_isolation("192.0.2.1", 2222),
                                    hostfault.render_block_peer("192.0.2.7")],
                         ids=["isolation", "block-peer"])
def test_real_nft_accepts_the_rules(script):
    p = nft_check(script)
    assert p.returncode == 0, p.stderr


def test_the_check_can_fail():
    assert nft_check("table inet x { chain c { ip saddr 1.2.3.4 drop } }").returncode != 0


def test_isolation_keeps_only_loopback_and_the_operators_ssh():
    s = hostfault.render_isolation("192.0.2.1", 2222)
    assert "policy drop;" in s and "iif lo accept" in s and "oif lo accept" in s
    assert "ip saddr 192.0.2.1 tcp dport 2222 accept" in s
    assert "ip daddr 192.0.2.1 tcp sport 2222 accept" in s
    assert s.count("accept") == 4
