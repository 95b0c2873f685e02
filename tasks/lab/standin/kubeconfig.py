"""/etc/rancher/k3s/k3s.yaml: render it (as k3s writes it) and read one (pure)."""
from __future__ import annotations

import base64
import re


def render(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> str:
    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()
    return f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {b64(ca_pem)}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {b64(cert_pem)}
    client-key-data: {b64(key_pem)}
"""


def parse(text: str) -> dict[str, bytes | str]:
    """The first cluster's server and CA and the first user's client cert/key.

    Enough for k3s.yaml and the single-context files k3s-ha writes; not a general parser.
    """
    def field(name: str) -> str:
        m = re.search(rf"^\s*{name}:\s*['\"]?([^'\"\s]+)", text, re.MULTILINE)
        if not m:
            raise ValueError(f"kubeconfig: no {name}")
        return m.group(1)
    return {"server": field("server"),
            "ca": base64.b64decode(field("certificate-authority-data")),
            "cert": base64.b64decode(field("client-certificate-data")),
            "key": base64.b64decode(field("client-key-data"))}
