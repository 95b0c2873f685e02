"""`k3s kubectl`: the few kubectl commands the stand-in serves (nodes, node-password secrets).

get nodes|node NAME [-o json|wide|name], delete node NAME..., cordon|uncordon NAME,
drain NAME (cordon; there is nothing to evict), get|delete secret NAME -n kube-system.
Uses $KUBECONFIG or /etc/rancher/k3s/k3s.yaml (or --kubeconfig), like k3s kubectl.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import kubeconfig
from .client import ClientError, context, request

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
NODE_KINDS = ("nodes", "node", "no")
SECRET_KINDS = ("secrets", "secret")


class KubectlError(Exception):
    pass


def format_table(table: dict[str, Any], wide: bool) -> str:
    """kubectl's plain-text table from a meta.k8s.io Table (pure)."""
    cols = [i for i, c in enumerate(table["columnDefinitions"]) if wide or c["priority"] == 0]
    head = [table["columnDefinitions"][i]["name"].upper() for i in cols]
    rows = [[str(r["cells"][i]) for i in cols] for r in table["rows"]]
    if not rows:
        return "No resources found"
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = ["   ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
             for line in [head, *rows]]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="k3s kubectl", allow_abbrev=False,
                                description="k3s-ha stand-in kubectl (nodes only)")
    p.add_argument("verb", choices=["get", "delete", "drain", "cordon", "uncordon"])
    p.add_argument("args", nargs="*")
    p.add_argument("-o", "--output", default="")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--kubeconfig", default="")
    p.add_argument("--ignore-daemonsets", action="store_true")
    p.add_argument("--delete-emptydir-data", "--delete-local-data", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("--timeout", default="")
    p.add_argument("--grace-period", default="")
    p.add_argument("--ignore-not-found", action="store_true")
    p.add_argument("--request-timeout", default="")
    p.add_argument("--wait", default="true")  # delete: nothing to wait for in the stand-in
    p.add_argument("--raw", default="")  # get --raw /readyz (and other GET paths)
    return p


def seconds(text: str, default: float = 15) -> float:
    """kubectl's --request-timeout: 0 (none: the default here), 5, 5s, 1m (pure)."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip()
    try:
        val = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t or 0)
    except ValueError:
        raise KubectlError(f"invalid --request-timeout {text!r}: use 5, 5s or 1m") from None
    return val if val > 0 else default


class Kubectl:
    def __init__(self, path: str, timeout: float = 15):
        try:
            cfg = kubeconfig.parse(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise KubectlError(f"cannot read kubeconfig {path}: {e}") from None
        self.url = str(cfg["server"])
        self.timeout = timeout
        self.ctx = context(cfg["ca"], cfg["cert"], cfg["key"])  # type: ignore[arg-type]

    def call(self, method: str, path: str, body: Any = None,
             accept: str = "application/json") -> Any:
        try:
            code, data = request(self.url, method, path, self.ctx, body,
                                 {"Accept": accept}, timeout=self.timeout)
        except ClientError as e:
            raise KubectlError(f"The connection to the server {self.url} failed: {e}") from None
        obj = json.loads(data) if data.startswith(b"{") else {"message": data.decode()}
        if code >= 400:
            raise KubectlError(f"Error from server ({obj.get('reason', code)}): "
                               f"{obj.get('message', '')}")
        return obj

    def get_nodes(self, names: list[str], output: str) -> str:
        path = "/api/v1/nodes" + (f"/{names[0]}" if names else "")
        if output == "json":
            obj = self.call("GET", path)
            if not names:
                obj = {"apiVersion": "v1", "kind": "List", "items": obj["items"],
                       "metadata": {"resourceVersion": ""}}
            return json.dumps(obj, indent=4)
        table = self.call("GET", path, accept=TABLE)
        if output == "name":
            return "\n".join(f"node/{r['cells'][0]}" for r in table["rows"])
        if output not in ("", "wide"):
            raise KubectlError(f"output format {output!r} is not supported by the stand-in")
        return format_table(table, output == "wide")

    def cordon(self, name: str, value: bool) -> str:
        self.call("PATCH", f"/api/v1/nodes/{name}", {"spec": {"unschedulable": value}})
        return f"node/{name} {'cordoned' if value else 'uncordoned'}"


def _delete(k: Kubectl, what: str, path: str, ignore_not_found: bool) -> str:
    try:
        k.call("DELETE", path)
    except KubectlError as e:
        if ignore_not_found and "(NotFound)" in str(e):
            return ""
        raise
    return f'{what} deleted'


def run(argv: list[str]) -> int:
    try:
        a = _parser().parse_intermixed_args(argv)
    except SystemExit as e:
        return 1 if e.code else 0
    path = a.kubeconfig or os.environ.get("KUBECONFIG") or "/etc/rancher/k3s/k3s.yaml"
    try:
        out = dispatch(Kubectl(path, seconds(a.request_timeout)), a)
        if out:
            print(out)
        return 0
    except KubectlError as e:
        print(e, file=sys.stderr)
        return 1


def dispatch(k: Kubectl, a: argparse.Namespace) -> str:
    if a.raw:
        if a.verb != "get":
            raise KubectlError("--raw is only supported with get")
        obj = k.call("GET", a.raw, accept="*/*")
        return obj["message"] if set(obj) == {"message"} else json.dumps(obj, indent=4)
    kind, names = (a.args[0], a.args[1:]) if a.verb in ("get", "delete") and a.args else (
        "nodes", a.args)
    if a.verb in ("get", "delete") and not a.args:
        raise KubectlError("You must specify the type of resource: nodes")
    if kind in SECRET_KINDS:
        if a.namespace != "kube-system" or len(names) != 1:
            raise KubectlError("the stand-in serves only kube-system/<node>.node-password.k3s")
        path = f"/api/v1/namespaces/kube-system/secrets/{names[0]}"
        if a.verb == "delete":
            return _delete(k, f'secret "{names[0]}"', path, a.ignore_not_found)
        return json.dumps(k.call("GET", path), indent=4)
    if kind not in NODE_KINDS:
        raise KubectlError(f'the server doesn\'t have a resource type "{kind}" (stand-in: '
                           "nodes only)")
    if a.verb == "get":
        return k.get_nodes(names, a.output)
    if not names:
        raise KubectlError(f"{a.verb}: a node name is required")
    if a.verb == "delete":
        return "\n".join(_delete(k, f'node "{n}"', f"/api/v1/nodes/{n}", a.ignore_not_found)
                         for n in names).strip()
    if a.verb == "drain":
        return k.cordon(names[0], True) + f"\nnode/{names[0]} drained"
    return k.cordon(names[0], a.verb == "cordon")
