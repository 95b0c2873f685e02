"""Node objects as the Kubernetes API shows them, and the node password (pure functions).

Stored in kine as JSON (k3s stores protobuf): /registry/minions/<node> (the node as
registered), /registry/leases/kube-node-lease/<node> (heartbeat renewTime) and
/registry/secrets/kube-system/<node>.node-password.k3s (the password hash).
Ready is derived when read: "True" while the lease is younger than NODE_GRACE seconds,
"Unknown" after (k3s: the node controller's 40 s grace period), "False" when the node
reported itself not ready.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import UTC, datetime
from typing import Any

from . import K3S_VERSION

NODE_GRACE = 40.0
MINIONS = "/registry/minions/"
LEASES = "/registry/leases/kube-node-lease/"
SECRETS = "/registry/secrets/kube-system/"
PASSWORD_REJECTED = (
    "Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' "
    "may not match server node-passwd entry, try enabling a unique node name with the "
    "--with-node-id flag")
SERVER_LABELS = {"node-role.kubernetes.io/control-plane": "true",
                 "node-role.kubernetes.io/master": "true"}


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str) -> float:
    s = s.replace("Z", "+00:00")
    return datetime.fromisoformat(s).timestamp()


def parse_taint(text: str) -> dict[str, str]:
    """`key=value:Effect` or `key:Effect` -> a taint object; ValueError when malformed."""
    kv, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute") or not kv:
        raise ValueError(f"invalid taint {text!r}: expected key=value:NoSchedule|"
                         "PreferNoSchedule|NoExecute")
    key, _, value = kv.partition("=")
    taint = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"invalid node label {text!r}: expected key=value")
    return key, value


def new_node(name: str, server: bool, address: str, labels: list[str], taints: list[str],
             now: float) -> dict[str, Any]:
    """The node object a node registers with (stored as-is in kine)."""
    lab = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
           "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "k3s"}
    if server:
        lab.update(SERVER_LABELS)
    lab.update(dict(parse_label(x) for x in labels))
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": lab, "creationTimestamp": rfc3339(now),
                     "annotations": {"k3s.io/node-args": "standin", "k3s.io/internal-ip": address}},
        "spec": {"taints": [parse_taint(t) for t in taints]} if taints else {},
        "status": {"addresses": [{"type": "InternalIP", "address": address},
                                 {"type": "Hostname", "address": name}]},
    }


def ready_status(lease: dict[str, Any] | None, now: float, grace: float = NODE_GRACE) -> str:
    """"True" / "False" / "Unknown" from the node's lease (pure)."""
    if not lease or "renewTime" not in lease:
        return "Unknown"
    if now - parse_time(lease["renewTime"]) > grace:
        return "Unknown"
    return "True" if lease.get("ready", True) else "False"


def render_node(node: dict[str, Any], lease: dict[str, Any] | None, now: float,
                revision: int = 0) -> dict[str, Any]:
    """The Node as the API returns it: stored object + conditions + nodeInfo."""
    out = {**node, "metadata": {**node["metadata"], "resourceVersion": str(revision)}}
    ready = ready_status(lease, now)
    beat = (lease or {}).get("renewTime", node["metadata"]["creationTimestamp"])
    reason = {"True": "KubeletReady", "False": "KubeletNotReady",
              "Unknown": "NodeStatusUnknown"}[ready]
    message = {"True": "kubelet is posting ready status (k3s-ha stand-in heartbeat)",
               "False": "node reported not ready",
               "Unknown": "Kubelet stopped posting node status."}[ready]
    out["status"] = {
        **node.get("status", {}),
        "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": message,
                        "lastHeartbeatTime": beat, "lastTransitionTime": beat}],
        "nodeInfo": {"kubeletVersion": K3S_VERSION, "kubeProxyVersion": K3S_VERSION,
                     "containerRuntimeVersion": "none://standin", "osImage": "k3s-ha stand-in",
                     "kernelVersion": os.uname().release, "operatingSystem": "linux",
                     "architecture": "amd64"},
    }
    return out


def roles(node: dict[str, Any]) -> str:
    prefix = "node-role.kubernetes.io/"
    r = sorted(k[len(prefix):] for k in node["metadata"].get("labels", {}) if k.startswith(prefix))
    return ",".join(r) or "<none>"


def status_text(node: dict[str, Any]) -> str:
    """kubectl's STATUS column: Ready / NotReady (+ ,SchedulingDisabled)."""
    cond = next((c for c in node["status"].get("conditions", []) if c["type"] == "Ready"), None)
    text = "Ready" if cond and cond["status"] == "True" else "NotReady"
    if node.get("spec", {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def human_age(seconds: float) -> str:
    """kubectl's AGE column (duration.HumanDuration, simplified)."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    return f"{d}d{h % 24}h" if d < 8 and h % 24 else f"{d}d"


def internal_ip(node: dict[str, Any]) -> str:
    return next((a["address"] for a in node["status"].get("addresses", [])
                 if a["type"] == "InternalIP"), "<none>")


def node_list(nodes: list[dict[str, Any]], revision: int) -> dict[str, Any]:
    return {"kind": "NodeList", "apiVersion": "v1",
            "metadata": {"resourceVersion": str(revision)}, "items": nodes}


_COLUMNS = [("Name", 0, "name"), ("Status", 0, ""), ("Roles", 0, ""), ("Age", 0, ""),
            ("Version", 0, ""), ("Internal-IP", 1, ""), ("External-IP", 1, ""),
            ("OS-Image", 1, ""), ("Kernel-Version", 1, ""), ("Container-Runtime", 1, "")]


def node_table(nodes: list[dict[str, Any]], now: float, revision: int) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table, what kubectl asks for (as=Table) to print its columns."""
    rows = []
    for n in nodes:
        info = n["status"]["nodeInfo"]
        age = human_age(now - parse_time(n["metadata"]["creationTimestamp"]))
        rows.append({
            "cells": [n["metadata"]["name"], status_text(n), roles(n), age,
                      info["kubeletVersion"], internal_ip(n), "<none>", info["osImage"],
                      info["kernelVersion"], info["containerRuntimeVersion"]],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": n["metadata"]},
        })
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(revision)},
            "columnDefinitions": [{"name": c, "type": "string", "format": f, "description": c,
                                   "priority": p} for c, p, f in _COLUMNS],
            "rows": rows}


# ------------------------------------------------------------------ node password
def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 10000)
    return f"$pbkdf2-sha256$10000${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, algo, rounds, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algo != "pbkdf2-sha256":
        return False
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(rounds))
    return hmac.compare_digest(got.hex(), digest)


def password_secret_name(node: str) -> str:
    return f"{node}.node-password.k3s"


def password_secret(node: str, password_hash: str, now: float) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "k3s.cattle.io/node-password",
            "immutable": True,
            "metadata": {"name": password_secret_name(node), "namespace": "kube-system",
                         "creationTimestamp": rfc3339(now)},
            "data": {"hash": base64.b64encode(password_hash.encode()).decode()}}


def check_password(secret: dict[str, Any] | None, password: str) -> bool:
    """True when there is no secret yet (first join) or the password matches it."""
    if secret is None:
        return True
    stored = base64.b64decode(secret.get("data", {}).get("hash", "")).decode()
    return verify_password(password, stored)
