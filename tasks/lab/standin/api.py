"""HTTPS on :6443: k3s's anonymous endpoints, health, discovery, nodes (enough for kubectl).

Who may do what (as k3s with RBAC, reduced):
- anonymous: /ping, /cacerts;
- any client certificate signed by the client CA: health (/readyz /livez /healthz
  /version) and discovery; with O=system:masters (the admin in k3s.yaml): everything;
- nodes (HTTP basic auth `node:<agent secret>` or `server:<server secret>`): register and
  heartbeat (/v1-k3s/standin/node) and the `kubernetes` endpoints (the servers' addresses).
The TLS handshake runs in the connection's own thread; the hang fault blocks each request
after the handshake, except /ping and /cacerts: in k3s those are answered by k3s's own
supervisor router in front of kube-apiserver (k3s-io/k3s pkg/server/handlers/router.go:
`/cacerts` and `/ping` on the outer router, everything else falls through to the
APIServer handler), so a hung kube-apiserver still answers them. TCP, TLS and /ping checks
pass while the API (and /readyz) answers nothing.
"""
from __future__ import annotations

import base64
import http.server
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import K3S_VERSION
from . import nodes as N
from .kine import DatastoreError
from .registry import PasswordRejected

ANON, AUTH, NODE, ADMIN = 0, 1, 2, 3
SUPERVISOR_PATHS = ("/ping", "/cacerts")  # k3s's own router, not kube-apiserver: never hung


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def version_info() -> dict[str, str]:
    return {"major": "1", "minor": "31", "gitVersion": K3S_VERSION, "gitCommit": "standin",
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "none (k3s-ha lab stand-in, python)", "compiler": "standin",
            "platform": "linux/amd64"}


def resource_list() -> dict[str, Any]:
    def res(name: str, kind: str, namespaced: bool, verbs: list[str], short: list[str]) -> dict:
        return {"name": name, "singularName": kind.lower(), "namespaced": namespaced,
                "kind": kind, "verbs": verbs, "shortNames": short}
    return {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        res("nodes", "Node", False, ["delete", "get", "list", "patch"], ["no"]),
        res("pods", "Pod", True, ["list"], ["po"]),
        res("secrets", "Secret", True, ["delete", "get"], []),
        res("endpoints", "Endpoints", True, ["get"], ["ep"]),
    ]}


def endpoints(addresses: list[str], port: int) -> dict[str, Any]:
    return {"kind": "Endpoints", "apiVersion": "v1",
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": a} for a in addresses],
                         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}


def peer_identity(cert: dict[str, Any] | None) -> tuple[int, str]:
    """Access level and user name from a verified client certificate (pure)."""
    if not cert:
        return ANON, ""
    attrs = [a for rdn in cert.get("subject", ()) for a in rdn]
    cn = next((v for k, v in attrs if k == "commonName"), "")
    orgs = [v for k, v in attrs if k == "organizationName"]
    return (ADMIN if "system:masters" in orgs else AUTH), cn


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "k3s-standin"
    timeout = 60
    server: ApiServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # access logs would flood the journal (health checks every second)

    # -------------------------------------------------------------- plumbing
    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode())

    def _text(self, code: int, text: str) -> None:
        self._send(code, text.encode(), "text/plain; charset=utf-8")

    def _body(self) -> Any:
        return json.loads(self.raw_body) if self.raw_body.strip() else {}

    def _identity(self) -> tuple[int, str]:
        level, user = peer_identity(self.connection.getpeercert())  # type: ignore[attr-defined]
        if level:
            return level, user
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return ANON, ""
            if self.server.cluster.node_secret_ok(user, pw):
                return NODE, user
        return ANON, ""

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        if (url.path.rstrip("/") or "/") not in SUPERVISOR_PATHS:
            self.server.cluster.wait_if_hung()
        n = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(n) if n > 0 else b""  # always: keep-alive stays in sync
        route = self.server.route(method, url.path)
        if route is None:
            return self._json(404, status(404, "NotFound", "the server could not find the "
                                          "requested resource (k3s-ha stand-in)"))
        level, fn, args = route
        have, user = self._identity()
        if have < level:
            if have == ANON:
                return self._json(401, status(401, "Unauthorized", "Unauthorized"))
            return self._json(403, status(403, "Forbidden", f'User "{user}" cannot {method} '
                                          f'{url.path}'))
        try:
            fn(self, parse_qs(url.query), *args)
        except DatastoreError as e:
            self.server.cluster.log.warning("request %s %s: datastore error: %s",
                                            method, url.path, e)
            self._json(503, status(503, "ServiceUnavailable", "datastore unavailable"))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            self._json(400, status(400, "BadRequest", f"bad request: {type(e).__name__}"))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")


# ------------------------------------------------------------------ handlers
def ping(h: Handler, q: dict) -> None:
    h._text(200, "pong")


def cacerts(h: Handler, q: dict) -> None:
    h._send(200, h.server.cluster.ca_pem, "text/plain; charset=utf-8")


def health(h: Handler, q: dict) -> None:
    if h.server.cluster.datastore_ok():
        h._text(200, "ok")
    else:
        h._text(503, "[-]etcd failed: datastore unreachable\nhealthz check failed")


def version(h: Handler, q: dict) -> None:
    if h.server.cluster.datastore_ok():
        h._json(200, version_info())
    else:
        h._json(503, status(503, "ServiceUnavailable", "datastore unavailable"))


def api_versions(h: Handler, q: dict) -> None:
    addr = f"{h.server.cluster.node_ip}:{h.server.server_address[1]}"
    h._json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})


def api_groups(h: Handler, q: dict) -> None:
    h._json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})


def api_v1(h: Handler, q: dict) -> None:
    h._json(200, resource_list())


def _wants_table(h: Handler) -> bool:
    return "as=Table" in h.headers.get("Accept", "")


def list_nodes(h: Handler, q: dict) -> None:
    now = time.time()
    items = h.server.cluster.registry.nodes(now)
    rev = max([int(n["metadata"]["resourceVersion"]) for n in items] or [0])
    h._json(200, N.node_table(items, now, rev) if _wants_table(h) else N.node_list(items, rev))


def _not_found(h: Handler, kind: str, name: str) -> None:
    h._json(404, status(404, "NotFound", f'{kind} "{name}" not found'))


def get_node(h: Handler, q: dict, name: str) -> None:
    now = time.time()
    node = h.server.cluster.registry.node(name, now)
    if node is None:
        return _not_found(h, "nodes", name)
    rev = int(node["metadata"]["resourceVersion"])
    h._json(200, N.node_table([node], now, rev) if _wants_table(h) else node)


def delete_node(h: Handler, q: dict, name: str) -> None:
    node = h.server.cluster.registry.delete_node(name, time.time())
    if node is None:
        return _not_found(h, "nodes", name)
    h.server.cluster.log.info("node %s deleted (with its lease and node-password secret)", name)
    h._json(200, node)


def patch_node(h: Handler, q: dict, name: str) -> None:
    spec = (h._body() or {}).get("spec", {})
    if "unschedulable" not in spec:
        h._json(422, status(422, "Invalid", "the stand-in patches only spec.unschedulable"))
        return
    node = h.server.cluster.registry.set_unschedulable(name, bool(spec["unschedulable"]),
                                                       time.time())
    if node is None:
        return _not_found(h, "nodes", name)
    h._json(200, node)


def list_pods(h: Handler, q: dict, ns: str = "") -> None:
    h._json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "0"},
                  "items": []})


def get_secret(h: Handler, q: dict, name: str) -> None:
    obj = h.server.cluster.registry.secret(name)
    if obj is None:
        return _not_found(h, "secrets", name)
    h._json(200, obj)


def delete_secret(h: Handler, q: dict, name: str) -> None:
    obj = h.server.cluster.registry.delete_secret(name)
    if obj is None:
        return _not_found(h, "secrets", name)
    h.server.cluster.log.info("secret kube-system/%s deleted", name)
    h._json(200, obj)


def kubernetes_endpoints(h: Handler, q: dict) -> None:
    h._json(200, endpoints(h.server.cluster.registry.servers(time.time()),
                           h.server.server_address[1]))


def node_register(h: Handler, q: dict) -> None:
    """Agents: register / heartbeat with their node password (k3s: K3s-Node-Password)."""
    body = h._body()
    password = h.headers.get("K3s-Node-Password", "")
    node = body.get("node") or {}
    if not password or node.get("metadata", {}).get("name") != h.headers.get("K3s-Node-Name"):
        return h._json(400, status(400, "BadRequest", "node name and password required"))
    try:
        if h.server.cluster.registry.register(node, password, bool(body.get("ready", True))):
            h.server.cluster.log.info("node %s registered", node["metadata"]["name"])
    except PasswordRejected as e:
        h.server.cluster.log.warning("node %s: %s", node["metadata"]["name"], e)
        return h._json(403, status(403, "Forbidden", str(e)))
    h._json(200, {"servers": h.server.cluster.registry.servers(time.time()),
                  "port": h.server.server_address[1]})


_NAME = r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?)"
ROUTES: list[tuple[str, str, int, Callable[..., None]]] = [
    ("GET", "/ping", ANON, ping),
    ("GET", "/cacerts", ANON, cacerts),
    ("GET", "/(?:readyz|livez|healthz)", AUTH, health),
    ("GET", "/version", AUTH, version),
    ("GET", "/api", AUTH, api_versions),
    ("GET", "/apis", AUTH, api_groups),
    ("GET", "/api/v1", AUTH, api_v1),
    ("GET", "/api/v1/nodes", ADMIN, list_nodes),
    ("GET", f"/api/v1/nodes/{_NAME}", ADMIN, get_node),
    ("DELETE", f"/api/v1/nodes/{_NAME}", ADMIN, delete_node),
    ("PATCH", f"/api/v1/nodes/{_NAME}", ADMIN, patch_node),
    ("GET", "/api/v1/pods", ADMIN, list_pods),
    ("GET", f"/api/v1/namespaces/{_NAME}/pods", ADMIN, list_pods),
    ("GET", f"/api/v1/namespaces/kube-system/secrets/{_NAME}", ADMIN, get_secret),
    ("DELETE", f"/api/v1/namespaces/kube-system/secrets/{_NAME}", ADMIN, delete_secret),
    ("GET", "/api/v1/namespaces/default/endpoints/kubernetes", NODE, kubernetes_endpoints),
    ("POST", "/v1-k3s/standin/node", NODE, node_register),
]


def match_route(method: str, path: str) -> tuple[int, Callable[..., None], tuple] | None:
    """(access level, handler, path arguments) for a request, or None (pure)."""
    path = path.rstrip("/") or "/"
    for m, pattern, level, fn in ROUTES:
        hit = re.fullmatch(pattern, path)
        if m == method and hit:
            args = tuple(g for i, g in enumerate(hit.groups()) if i % 2 == 0 and g is not None)
            return level, fn, args
    return None


class ApiServer(http.server.ThreadingHTTPServer):
    """Threaded HTTPS server; TLS is set up per connection in that connection's thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], cluster: Any, ctx: ssl.SSLContext):
        self.cluster, self.ctx = cluster, ctx
        super().__init__(addr, Handler)

    def route(self, method: str, path: str) -> tuple[int, Callable[..., None], tuple] | None:
        return match_route(method, path)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            tls.settimeout(Handler.timeout)
            Handler(tls, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.cluster.log.warning("request from %s failed", client_address[0], exc_info=True)


def server_context(tls_dir: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{tls_dir}/serving-kube-apiserver.crt",
                        f"{tls_dir}/serving-kube-apiserver.key")
    ctx.load_verify_locations(f"{tls_dir}/client-ca.crt")
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def serve(server: ApiServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="api", daemon=True)
    t.start()
    return t


def local_ip_towards(host: str, port: int) -> str:
    """The address this host uses to reach host:port (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((socket.gethostbyname(host), port))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
