"""`k3s agent`: join through --server, check the CA hash, register, heartbeat, fail over.

Like k3s's agent: /cacerts is fetched anonymously and checked against the token's CA hash,
then every call verifies the server certificate with that CA. After registering, the agent
learns every server's address (the `kubernetes` endpoints) and talks to them directly,
moving to the next one when a call fails; the --server URL (the VIP) is the last fallback.
No kubelet, no containers: the heartbeat is all an agent does.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import K3S_VERSION
from . import nodes as N
from . import tokens as T
from .api import local_ip_towards
from .client import ClientError, basic_auth, context, request
from .config import read_secret
from .host import Fatal, log, node_name, node_password, write_private
from .notify import sd_notify

HEARTBEAT = 5.0


def server_urls(learned: list[str], fallback: str, port: int) -> list[str]:
    """The agent's balancer list: every learned server, then the --server URL (pure)."""
    urls = [f"https://[{ip}]:{port}" if ":" in ip else f"https://{ip}:{port}" for ip in learned]
    return [u for u in urls if u != fallback] + [fallback]


class Agent:
    def __init__(self, settings: dict[str, Any]):
        url = settings["server"] or ""
        if not url.startswith("https://"):
            raise Fatal("k3s agent needs --server https://<server or VIP>:6443 (or K3S_URL)")
        text = read_secret(settings["token"], settings["token-file"], "token")
        if not text:
            raise Fatal("k3s agent needs a token: --token, --token-file or K3S_TOKEN")
        try:
            self.token = T.parse_token(text)
        except T.TokenError as e:
            raise Fatal(str(e)) from None
        self.fallback = url.rstrip("/")
        self.port = urlsplit(url).port or 443
        self.settings = settings
        self.urls = [self.fallback]
        self.current = 0

    def fetch_ca(self) -> bytes:
        """GET /cacerts without verification, then check it against the token's hash."""
        status, body = request(self.fallback, "GET", "/cacerts", context(None))
        if status != 200 or b"BEGIN CERTIFICATE" not in body:
            raise ClientError(f"/cacerts answered {status}")
        T.check_ca(self.token, body)  # TokenError: k3s's CA hash message
        return body

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """Try the current server, then the others in turn."""
        last: Exception | None = None
        for i in range(len(self.urls)):
            url = self.urls[(self.current + i) % len(self.urls)]
            try:
                result = request(url, method, path, self.ctx, body, self.headers)
                if result[0] < 500:
                    if i:
                        log.info("agent now talks to %s", url)
                    self.current = (self.current + i) % len(self.urls)
                    return result
                last = ClientError(f"{url} answered {result[0]}")
            except ClientError as e:
                last = e
            log.warning("server %s failed: %s", url, last)
        raise ClientError(str(last))

    def beat(self) -> None:
        """Register or heartbeat; raises Fatal on a rejected password or token."""
        status, body = self._call("POST", "/v1-k3s/standin/node",
                                  {"node": self.node, "ready": True})
        if status == 403:
            msg = json.loads(body).get("message", "")
            if N.PASSWORD_REJECTED in msg:
                raise Fatal(f"Failed to retrieve agent config: {N.PASSWORD_REJECTED}")
        if status == 401:
            raise Fatal(f"Failed to validate connection to cluster at {self.fallback}: "
                        "token is not valid")
        if status != 200:
            raise ClientError(f"register answered {status}: {body[:200]!r}")
        answer = json.loads(body)
        urls = server_urls(answer.get("servers", []), self.fallback, answer.get("port", 6443))
        if urls != self.urls:
            log.info("servers learned: %s", ", ".join(urls))
            cur = self.urls[self.current]
            self.urls = urls
            self.current = urls.index(cur) if cur in urls else 0

    def join(self) -> None:
        """Until registered: fetch and check the CA, then register (retry on network errors)."""
        while True:
            try:
                ca = self.fetch_ca()
                break
            except ClientError as e:
                log.info("Waiting to retrieve the cluster CA from %s: %s", self.fallback, e)
                time.sleep(5)
            except T.TokenError as e:
                raise Fatal(f"Failed to validate connection to cluster at {self.fallback}: {e}")
        data_dir = Path(self.settings["data-dir"]) / "agent"
        write_private(data_dir / "server-ca.crt", ca, 0o644)
        self.ctx = context(ca)
        name = node_name(self.settings)
        ip = self.settings["node-ip"] or local_ip_towards(urlsplit(self.fallback).hostname or "",
                                                         self.port)
        self.node = N.new_node(name, False, ip, self.settings["node-label"],
                               self.settings["node-taint"], time.time())
        self.headers = {**basic_auth(self.token.role or "node", self.token.secret),
                        "K3s-Node-Name": name, "K3s-Node-Password": node_password()}
        while True:
            try:
                self.beat()
                log.info("node %s joined through %s", name, self.fallback)
                return
            except ClientError as e:
                log.info("Waiting to register node %s: %s", name, e)
                time.sleep(5)

    def loop(self) -> None:
        while True:
            time.sleep(HEARTBEAT)
            try:
                self.beat()
            except ClientError as e:
                log.warning("heartbeat failed on every server: %s", e)


def run(settings: dict[str, Any]) -> int:
    log.info("Starting k3s agent %s (k3s-ha lab stand-in, NOT k3s)", K3S_VERSION)
    for f in settings["ignored"]:
        log.warning("flag --%s is accepted but has no effect in the k3s-ha stand-in", f)
    agent = Agent(settings)
    agent.join()
    sd_notify("READY=1")
    agent.loop()
    return 0
