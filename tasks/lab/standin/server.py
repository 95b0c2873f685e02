"""`k3s server`: datastore, bootstrap (token + CAs), certificates, API, heartbeat, watchdog."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from . import K3S_VERSION, certs, kubeconfig
from . import nodes as N
from . import tokens as T
from .api import ApiServer, local_ip_towards, serve, server_context
from .client import ClientError, context, request
from .config import ConfigError, Dsn, parse_dsn, read_secret
from .host import Fatal, log, node_name, node_password, write_private
from .kine import DatastoreError, Kine, Poller
from .notify import sd_notify
from .registry import PasswordRejected, Registry

DATASTORE_DEADLINE = 10.0  # k3s loses its leader-election leases at about this point
HEARTBEAT = 5.0
COMPACT_EVERY, COMPACT_KEEP = 300.0, 1000
CA_FILES = ["server-ca.crt", "server-ca.key", "client-ca.crt", "client-ca.key"]


class Cluster:
    """What the API handlers see: the registry, the secrets nodes may use, health, hang."""

    def __init__(self, registry: Registry, poller: Poller, ca_pem: bytes, server_secret: str,
                 agent_secret: str | None, node_ip: str):
        self.registry, self.poller, self.ca_pem = registry, poller, ca_pem
        self.server_secret, self.agent_secret, self.node_ip = server_secret, agent_secret, node_ip
        self.hung = threading.Event()
        self.log = log

    def wait_if_hung(self) -> None:
        while self.hung.is_set():
            time.sleep(0.2)

    def datastore_ok(self) -> bool:
        return time.monotonic() - self.poller.last_ok < 3.0

    def node_secret_ok(self, user: str, password: str) -> bool:
        """`server:<server secret>` for anyone; `node:<agent secret>` for agents."""
        ok = [self.server_secret] + ([self.agent_secret] if self.agent_secret else [])
        if user == "server":
            ok = [self.server_secret]
        elif user != "node":
            return False
        return any(hmac.compare_digest(password.encode(), s.encode()) for s in ok)


# ------------------------------------------------------------------ bootstrap
def _new_bootstrap(tls: Path, agent_secret: str | None) -> dict[str, str]:
    certs.make_ca(tls, "server-ca", "k3s-server-ca")
    certs.make_ca(tls, "client-ca", "k3s-client-ca")
    data = {f: (tls / f).read_text() for f in CA_FILES}
    data["agent-token-hash"] = _hash(agent_secret)
    return data


def _hash(secret: str | None) -> str:
    return hashlib.sha256(secret.encode()).hexdigest() if secret else ""


def bootstrap(kine: Kine, token: T.Token | None, agent_secret: str | None,
              tls: Path) -> tuple[str, dict[str, str]]:
    """Find or create the sealed bootstrap data; returns (server secret, CA files).

    A token that does not open existing bootstrap data fails with k3s's message.
    """
    existing = kine.list("/bootstrap/")
    secret = token.secret if token else T.generate_secret()
    key = T.bootstrap_key(secret)
    mine = next((r for r in existing if r.name == key), None)
    if mine is not None and mine.value is not None:
        data = json.loads(T.unseal(secret, mine.value))
    elif existing:
        hint = "" if token else " (no token given: pass the cluster's token with --token)"
        raise T.TokenError(T.DIFFERENT_TOKEN + hint)
    elif token and token.ca_hash:
        raise T.TokenError(f"{T.CA_MISMATCH}: the token names a cluster CA but the datastore "
                           "holds no bootstrap data")
    else:
        data = _new_bootstrap(tls, agent_secret)
        kine.write("create", key, T.seal(secret, json.dumps(data).encode()), None)
        log.info("bootstrap data created in the datastore (key %s)", key)
    if data.get("agent-token-hash", "") != _hash(agent_secret):
        raise Fatal("critical configuration value mismatch between servers: agent-token")
    if token:
        T.check_ca(token, data["server-ca.crt"].encode())
    for f in CA_FILES:
        write_private(tls / f, data[f])
    return secret, data


def server_token(settings: dict[str, Any], token_file: Path) -> T.Token | None:
    text = read_secret(settings["token"], settings["token-file"], "token")
    if not text and token_file.exists():
        text = token_file.read_text().strip()
    if not text:
        return None
    tok = T.parse_token(text)
    if tok.role == "node":
        raise Fatal("a server needs the server token (K10...::server:...), not the agent token")
    return tok


def write_tokens(server_dir: Path, ca_pem: bytes, secret: str, agent_secret: str | None) -> None:
    write_private(server_dir / "token", T.format_token(ca_pem, "server", secret) + "\n")
    link = server_dir / "node-token"
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to("token")
    if agent_secret:
        write_private(server_dir / "agent-token",
                      T.format_token(ca_pem, "node", agent_secret) + "\n")
    else:
        (server_dir / "agent-token").unlink(missing_ok=True)


# ------------------------------------------------------------------ start-up
def open_datastore(settings: dict[str, Any]) -> tuple[Kine, Dsn]:
    endpoint = settings["datastore-endpoint"]
    if not endpoint:
        raise Fatal("the stand-in needs an external datastore: set --datastore-endpoint or "
                    "K3S_DATASTORE_ENDPOINT=mysql://user:pass@tcp(host:3306)/db "
                    "(embedded sqlite/etcd are not provided)")
    try:
        dsn = parse_dsn(endpoint)
    except ConfigError as e:
        raise Fatal(str(e)) from None
    tls = {k: settings[f"datastore-{k}file"] for k in ("ca", "cert", "key")
           if settings[f"datastore-{k}file"]}
    kine = Kine(dsn, ssl=tls or None)
    log.info("Configuring mysql database connection: %s", dsn.masked())
    try:
        kine.setup()
    except DatastoreError as e:
        raise Fatal(f"starting kubernetes: preparing server: creating storage endpoint: "
                    f"building kine: {e}") from None
    log.info("Database tables and indexes are up to date")
    return kine, dsn


def write_certs(settings: dict[str, Any], tls: Path, data: dict[str, str], name: str,
                node_ip: str) -> None:
    sans = certs.subject_alt_names(settings["tls-san"], name, [node_ip, socket.gethostname()])
    if certs.ensure_serving(tls, sans, data["server-ca.crt"].encode()):
        log.info("serving certificate issued for %s", ", ".join(sans))
    certs.ensure_client(tls, "client-admin", "/O=system:masters/CN=system:admin",
                        data["client-ca.crt"].encode())
    try:
        mode = int(settings["write-kubeconfig-mode"], 8)
    except ValueError:
        raise Fatal("--write-kubeconfig-mode must be octal, e.g. 0600") from None
    port = settings["https-listen-port"]
    text = kubeconfig.render(f"https://127.0.0.1:{port}", data["server-ca.crt"].encode(),
                             (tls / "client-admin.crt").read_bytes(),
                             (tls / "client-admin.key").read_bytes())
    write_private(Path(settings["write-kubeconfig"]), text, mode)
    log.info("Wrote kubeconfig %s", settings["write-kubeconfig"])


def prepare(settings: dict[str, Any]) -> tuple[Cluster, str]:
    """Everything before serving; raises Fatal with k3s's messages."""
    kine, dsn = open_datastore(settings)
    server_dir = Path(settings["data-dir"]) / "server"
    tls = server_dir / "tls"
    agent_text = read_secret(settings["agent-token"], settings["agent-token-file"], "agent token")
    agent_secret = T.parse_token(agent_text).secret if agent_text else None
    try:
        token = server_token(settings, server_dir / "token")
        secret, data = bootstrap(kine, token, agent_secret, tls)
    except T.TokenError as e:
        raise Fatal(f"starting kubernetes: preparing server: {e}") from None
    except DatastoreError as e:
        raise Fatal(f"starting kubernetes: preparing server: bootstrap data: {e}") from None
    ca_pem = data["server-ca.crt"].encode()
    write_tokens(server_dir, ca_pem, secret, agent_secret)
    name = node_name(settings)
    node_ip = settings["node-ip"] or settings["advertise-address"] or local_ip_towards(
        dsn.host, dsn.port)
    write_certs(settings, tls, data, name, node_ip)
    registry = Registry(kine)
    node = N.new_node(name, True, node_ip, settings["node-label"], settings["node-taint"],
                      time.time())
    try:
        registry.register(node, node_password())
    except PasswordRejected as e:
        raise Fatal(f"Failed to register node {name}: {e}") from None
    except DatastoreError as e:
        raise Fatal(f"registering node {name}: {e}") from None
    poller = Poller(kine, log)
    poller.start()
    return Cluster(registry, poller, ca_pem, secret, agent_secret, node_ip), name


# ------------------------------------------------------------------ running
def _poll_loop(cluster: Cluster) -> None:
    last_compact = time.monotonic()
    while True:
        time.sleep(1.0)
        try:
            cluster.poller.step()
            if time.monotonic() - last_compact > COMPACT_EVERY:
                last_compact = time.monotonic()
                cluster.registry.kine.compact(cluster.poller.last - COMPACT_KEEP)
        except DatastoreError as e:
            log.error("datastore: %s", e)


def _watchdog(cluster: Cluster) -> None:
    while True:
        time.sleep(0.5)
        silent = time.monotonic() - cluster.poller.last_ok
        if silent > DATASTORE_DEADLINE:
            log.critical("datastore unreachable for %.0fs: leader election lost, exiting "
                         "(systemd restarts k3s)", silent)
            os._exit(255)


def _heartbeat_loop(cluster: Cluster, name: str) -> None:
    while True:
        time.sleep(HEARTBEAT)
        if cluster.hung.is_set():
            continue  # a hung apiserver: its own kubelet cannot post status either
        try:
            cluster.registry.heartbeat(name)
        except DatastoreError as e:
            log.warning("node heartbeat failed: %s", e)


def _wait_answering(port: str, ca_pem: bytes, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    ctx = context(ca_pem)
    while time.monotonic() < end:
        try:
            if request(f"https://127.0.0.1:{port}", "GET", "/ping", ctx, timeout=2)[0] == 200:
                return
        except ClientError:
            time.sleep(0.2)
    raise Fatal("the API server did not answer on its own port")


def _signals(cluster: Cluster) -> None:
    def hang(signum: int, frame: Any) -> None:
        cluster.hung.set()
        log.warning("HANG FAULT ON (SIGUSR1): API requests get no answer until SIGUSR2")

    def resume(signum: int, frame: Any) -> None:
        cluster.hung.clear()
        log.warning("hang fault off (SIGUSR2): API answering again")
    signal.signal(signal.SIGUSR1, hang)
    signal.signal(signal.SIGUSR2, resume)


def run(settings: dict[str, Any]) -> int:
    if settings["cluster-init"]:
        raise Fatal("--cluster-init (embedded etcd) is not provided by the stand-in")
    for f in settings["ignored"]:
        log.warning("flag --%s is accepted but has no effect in the k3s-ha stand-in", f)
    log.info("Starting k3s %s server (k3s-ha lab stand-in, NOT k3s)", K3S_VERSION)
    cluster, name = prepare(settings)
    port = settings["https-listen-port"]
    if not str(port).isdigit():
        raise Fatal(f"--https-listen-port must be a number, not {port!r}")
    try:
        api = ApiServer((settings["bind-address"], int(port)), cluster,
                        server_context(str(Path(settings["data-dir"]) / "server" / "tls")))
    except OSError as e:
        raise Fatal(f"cannot listen on :{port}: {e.strerror}") from None
    _signals(cluster)
    serve(api)
    for fn, args in ((_poll_loop, (cluster,)), (_watchdog, (cluster,)),
                     (_heartbeat_loop, (cluster, name))):
        threading.Thread(target=fn, args=args, name=fn.__name__, daemon=True).start()
    _wait_answering(port, cluster.ca_pem)
    sd_notify("READY=1")
    log.info("k3s is up and running: node %s, API on :%s (stand-in)", name, port)
    while True:
        time.sleep(3600)
