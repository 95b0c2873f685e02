"""k3s facts: `kubectl get nodes -o json`, /ping, /readyz, --version, journal problems."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from tasks.facts import k3s as f


def _node(name: str, ip: str, *, server: bool, ready: str, taint: bool = False) -> dict:
    labels = {"beta.kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
              "node.kubernetes.io/instance-type": "k3s"}
    if server:
        labels |= {"node-role.kubernetes.io/control-plane": "true",
                   "node-role.kubernetes.io/master": "true"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "uid": "3f0c",
                     "creationTimestamp": "2025-01-30T10:00:00Z",
                     "annotations": {"k3s.io/node-args": "[\"server\"]"}},
        "spec": {"podCIDR": "10.42.0.0/24", "providerID": f"k3s://{name}",
                 **({"taints": [{"key": "CriticalAddonsOnly", "value": "true",
                                 "effect": "NoExecute"}]} if taint else {})},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip},
                          {"type": "Hostname", "address": name}],
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "Ready", "status": ready, "reason": "KubeletReady",
                 "lastHeartbeatTime": "2025-01-30T10:05:00Z"}],
            "nodeInfo": {"kubeletVersion": "v1.31.5+k3s1", "containerRuntimeVersion":
                         "containerd://1.7.23-k3s2", "osImage": "Debian GNU/Linux 12 (bookworm)"},
        },
    }


SAMPLE = json.dumps({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                     "items": [_node("k3s-server-01", "10.77.0.41", server=True, ready="True",
                                     taint=True),
                               _node("k3s-agent-01", "10.77.0.51", server=False,
                                     ready="Unknown")]})


def test_parse_nodes() -> None:
    agent, server = f.parse_nodes(SAMPLE)
    assert server == f.NodeInfo("k3s-server-01", ("control-plane", "master"), "True",
                                "v1.31.5+k3s1", ("CriticalAddonsOnly=true:NoExecute",),
                                "10.77.0.41", "2025-01-30T10:00:00Z")
    assert server.is_ready and server.is_server
    assert (agent.roles, agent.ready, agent.is_ready, agent.taints, agent.is_server) == (
        (), "Unknown", False, (), False)


def test_a_node_without_ready_condition_is_unknown() -> None:
    doc = _node("n", "10.0.0.1", server=False, ready="True")
    doc["status"]["conditions"] = []
    (n,) = f.parse_nodes(json.dumps({"kind": "NodeList", "items": [doc]}))
    assert n.ready == "Unknown" and not n.is_ready


def test_parse_nodes_rejects_non_json() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        f.parse_nodes("The connection to the server 127.0.0.1:6443 was refused")


@pytest.mark.parametrize("secs,shown", [(5, "5s"), (119, "119s"), (600, "10m"),
                                        (3 * 3600, "3h"), (5 * 86400, "5d")])
def test_age(secs: int, shown: str) -> None:
    now = datetime(2025, 1, 30, 10, 0, 0, tzinfo=timezone.utc).timestamp() + secs
    assert f.age("2025-01-30T10:00:00Z", datetime.fromtimestamp(now, timezone.utc)) == shown


def test_version_ping_readyz() -> None:
    assert f.parse_version("k3s version v1.29.9+k3s1 (e92d3b3b)\ngo version go1.22.6\n") == \
        "v1.29.9+k3s1"
    assert f.parse_version("sh: k3s: not found") == ""
    assert f.parse_ping("200", "pong") and not f.parse_ping("401", "pong")
    assert f.parse_readyz("ok\n") and not f.parse_readyz("[-]etcd failed: reason withheld")


def test_journal_problems() -> None:
    journal = "\n".join([
        'level=info msg="Starting k3s agent v1.31.5+k3s1"',
        'level=error msg="Failed to retrieve agent config: Node password rejected, duplicate '
        "hostname or contents of '/etc/rancher/node/password' may not match server "
        'node-passwd entry, try enabling a unique node name with the --with-node-id flag"',
        'level=fatal msg="starting kubernetes: preparing server: bootstrap data already found '
        'and encrypted with different token"',
    ])
    assert f.parse_problems(journal) == [f.Problem.NODE_PASSWORD, f.Problem.DIFFERENT_TOKEN]
    assert f.parse_problems('level=info msg="Running kube-apiserver"') == []


def test_parallel_joins_share_one_node_listing():
    """Eight waiters polling at once run one `kubectl get nodes`, not eight; an API error
    reaches every waiter of that round."""
    import threading
    import time as _time

    from tasks.core.errors import StepFailed
    from tasks.facts.k3s import NodeInfo, SharedNodes
    calls = []

    def fetch():
        calls.append(1)
        _time.sleep(0.05)
        return [NodeInfo(name="a1", roles=(), ready="True", version="v", taints=(),
                         internal_ip="10.0.0.1", created="")]
    shared = SharedNodes(fetch, ttl=5)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(shared.node("a1"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(seen) == 8 and all(n.name == "a1" for n in seen)
    assert shared.node("a2") is None and len(calls) == 1

    def down():
        raise StepFailed("k3s-server-01: the k3s API did not list the nodes")
    broken = SharedNodes(down, ttl=5)
    for _ in range(2):
        with pytest.raises(StepFailed, match="did not list"):
            broken.node("a1")
