"""Nodes, leases and node-password secrets kept in kine (the stand-in's API storage)."""
from __future__ import annotations

import json
import time
from typing import Any

from . import nodes as N
from .kine import Kine, Row


class PasswordRejected(Exception):
    def __init__(self) -> None:
        super().__init__(N.PASSWORD_REJECTED)


def _load(row: Row | None) -> dict[str, Any] | None:
    if row is None or row.deleted or row.value is None:
        return None
    return json.loads(row.value)


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Registry:
    def __init__(self, kine: Kine):
        self.kine = kine

    # -------------------------------------------------------------- reads
    def leases(self) -> dict[str, dict[str, Any]]:
        return {r.name[len(N.LEASES):]: json.loads(r.value) for r in self.kine.list(N.LEASES)}

    def nodes(self, now: float) -> list[dict[str, Any]]:
        leases = self.leases()
        return [N.render_node(json.loads(r.value), leases.get(r.name[len(N.MINIONS):]), now, r.id)
                for r in self.kine.list(N.MINIONS)]

    def node(self, name: str, now: float) -> dict[str, Any] | None:
        row = self.kine.get(N.MINIONS + name)
        obj = _load(row)
        if obj is None or row is None:
            return None
        return N.render_node(obj, _load(self.kine.get(N.LEASES + name)), now, row.id)

    def secret(self, name: str) -> dict[str, Any] | None:
        return _load(self.kine.get(N.SECRETS + name))

    def servers(self, now: float) -> list[str]:
        """InternalIPs of servers whose heartbeat is fresh (the `kubernetes` endpoints)."""
        return sorted(N.internal_ip(n) for n in self.nodes(now)
                      if "control-plane" in N.roles(n).split(",")
                      and n["status"]["conditions"][0]["status"] == "True")

    # -------------------------------------------------------------- writes
    def register(self, node: dict[str, Any], password: str, ready: bool = True) -> bool:
        """Check the node password, (re)create the node if missing, renew its lease.

        Raises PasswordRejected like k3s when a secret for this name holds another
        password. Returns True when the node object was created.
        """
        name = node["metadata"]["name"]
        secret = self.secret(N.password_secret_name(name))
        if not N.check_password(secret, password):
            raise PasswordRejected()
        if secret is None:
            obj = N.password_secret(name, N.hash_password(password), time.time())
            self.kine.write("create", N.SECRETS + N.password_secret_name(name), _dump(obj),
                            self.kine.get(N.SECRETS + N.password_secret_name(name)))
        created = self._ensure_node(node)
        self.heartbeat(name, ready)
        return created

    def _ensure_node(self, node: dict[str, Any]) -> bool:
        key = N.MINIONS + node["metadata"]["name"]
        row = self.kine.get(key)
        old = _load(row)
        if old is None:
            self.kine.write("create", key, _dump(node), row)
            return True
        merged = {**old, "status": node["status"],
                  "metadata": {**old["metadata"], "labels": node["metadata"]["labels"]}}
        merged["spec"] = {**old.get("spec", {}), **node.get("spec", {})}
        if merged != old:
            self.kine.write("update", key, _dump(merged), row)
        return False

    def heartbeat(self, name: str, ready: bool = True) -> None:
        lease = {"holderIdentity": name, "renewTime": N.rfc3339(time.time()),
                 "leaseDurationSeconds": 40, "ready": ready}
        self.kine.put(N.LEASES + name, _dump(lease))

    def delete_node(self, name: str, now: float) -> dict[str, Any] | None:
        """kubectl delete node: the node, its lease and its password secret (as k3s)."""
        obj = self.node(name, now)
        if obj is None:
            return None
        self.kine.delete(N.MINIONS + name)
        self.kine.delete(N.LEASES + name)
        self.kine.delete(N.SECRETS + N.password_secret_name(name))
        return obj

    def delete_secret(self, name: str) -> dict[str, Any] | None:
        obj = self.secret(name)
        if obj is not None:
            self.kine.delete(N.SECRETS + name)
        return obj

    def set_unschedulable(self, name: str, value: bool, now: float) -> dict[str, Any] | None:
        key = N.MINIONS + name
        row = self.kine.get(key)
        old = _load(row)
        if old is None:
            return None
        spec = {**old.get("spec", {})}
        if value:
            spec["unschedulable"] = True
        else:
            spec.pop("unschedulable", None)
        if spec != old.get("spec", {}):
            self.kine.write("update", key, _dump({**old, "spec": spec}), row)
        return self.node(name, now)
