"""What a k3s node is given (pure): config.yaml, the service's environment file, the
datastore endpoint, the API URL agents join through, and the installer's input.

Secrets (the datastore endpoint with its password, the tokens) go only into the
environment file /etc/systemd/system/<unit>.service.env (0600), which is also how the
upstream installer passes them on; config.yaml (0600) holds everything else.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from enum import Enum

from ..core.errors import InputError
from ..core.inventory import Host, Inventory
from .token import Token, parse_token, same_secret

CONFIG_DIR = "/etc/rancher/k3s"
CONFIG_PATH = f"{CONFIG_DIR}/config.yaml"
STATE_DIR = "/var/lib/k3s-ha"
INSTALLER_PATH = f"{STATE_DIR}/k3s-install.sh"
BIN_PATH = "/usr/local/bin/k3s"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
DATASTORE_CA_PATH = "/etc/rancher/k3s/datastore-ca.crt"  # [db] tls: the tool's CA
HEADER = "# Written by k3s-ha (fab k3s.*): change the inventory, not this file.\n"
_DSN_BAD = re.compile(r"[/@()'\"\\\s]")
TOKEN_VARS = ("K3S_TOKEN", "K3S_AGENT_TOKEN")


class Role(Enum):
    SERVER = "server"
    AGENT = "agent"

    @property
    def unit(self) -> str:
        return "k3s" if self is Role.SERVER else "k3s-agent"

    @property
    def env_path(self) -> str:
        return f"/etc/systemd/system/{self.unit}.service.env"

    @property
    def unit_path(self) -> str:
        return f"/etc/systemd/system/{self.unit}.service"

    @property
    def inventory_role(self) -> str:
        return f"k3s-{self.value}"

    @property
    def uninstall_script(self) -> str:
        return "/usr/local/bin/k3s-uninstall.sh" if self is Role.SERVER \
            else "/usr/local/bin/k3s-agent-uninstall.sh"


@dataclass(frozen=True)
class NodeSpec:
    """The desired state of one node: what its files must hold."""

    host: Host
    role: Role
    config_yaml: str
    env: dict[str, str]
    datastore_ca: str = ""  # the CA certificate the datastore's is verified with (servers)


# ------------------------------------------------------------------ addresses
def vip_host(inv: Inventory, key: str) -> str:
    """The VIP's name under the domain when it has one, else its address."""
    vip = inv.vips[key]
    return inv.fqdn(vip.name) if vip.name else vip.address


def api_url(inv: Inventory) -> str:
    """Where agents register and kubectl connects: the API VIP through the balancers."""
    return f"https://{vip_host(inv, 'api')}:{inv.balancers['api_port']}"


def datastore_endpoint(inv: Inventory, password: str) -> str:
    """mysql://USER:PASS@tcp(DB_VIP:PORT)/DB through the datastore VIP (a secret)."""
    if not password or _DSN_BAD.search(password):
        raise InputError("the k3s datastore password (k3s_db_password) is empty or holds a "
                         "character the MySQL DSN cannot carry (/ @ ( ) quotes, backslash, "
                         "space). Fix: choose one of letters, digits and - _ . ~ ! # $ % ^ & * "
                         "+ = : , ; ? and set it with fab db.users")
    db = inv.db
    return (f"mysql://{db['user']}:{password}@tcp({vip_host(inv, 'db')}:"
            f"{inv.balancers['db_port']})/{db['database']}")


def tls_sans(inv: Inventory) -> list[str]:
    """The API VIP's address and name, then [cluster] tls_san; no duplicates."""
    vip = inv.vips["api"]
    names = [vip.address] + ([inv.fqdn(vip.name), vip.name] if vip.name else [])
    names += [str(x) for x in inv.cluster.get("tls_san", [])]
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------ config.yaml
def node_config(inv: Inventory, host: Host, role: Role) -> dict[str, str | list[str]]:
    cfg: dict[str, str | list[str]] = {"node-name": host.name, "node-ip": host.address}
    if role is Role.SERVER:
        cfg["tls-san"] = tls_sans(inv)
        taint = inv.cluster.get("node_taint", "")
        if taint:
            cfg["node-taint"] = [taint]
        cfg["write-kubeconfig-mode"] = "0600"
        if inv.db["tls"]:  # TLS to the datastore, its certificate checked against our CA
            cfg["datastore-cafile"] = DATASTORE_CA_PATH
    return cfg


def render_yaml(cfg: dict[str, str | list[str]]) -> str:
    """k3s config.yaml: flag names as keys, block lists for repeatable flags, JSON quoting."""
    out = [HEADER]
    for key, val in cfg.items():
        if isinstance(val, list):
            out.append(f"{key}:\n" + "".join(f"  - {json.dumps(v)}\n" for v in val))
        else:
            out.append(f"{key}: {json.dumps(val)}\n")
    return "".join(out)


# ------------------------------------------------------------------ environment file
def server_env(inv: Inventory, db_password: str, token: Token,
               agent_token: Token | None = None) -> dict[str, str]:
    env = {"K3S_DATASTORE_ENDPOINT": datastore_endpoint(inv, db_password),
           "K3S_TOKEN": token.text}
    if agent_token is not None:
        env["K3S_AGENT_TOKEN"] = agent_token.text
    return env


def agent_env(inv: Inventory, token: Token) -> dict[str, str]:
    return {"K3S_TOKEN": token.text, "K3S_URL": api_url(inv)}


def render_env(env: dict[str, str]) -> str:
    """KEY='value' lines, sorted, as the installer's `export` listing writes them."""
    return "".join(f"{k}={_sq(v)}\n" for k, v in sorted(env.items()))


def _sq(v: str) -> str:
    return "'" + v.replace("'", "'\\''") + "'"


def parse_env(text: str) -> dict[str, str]:
    """An environment file (KEY=value, 'quoted', "quoted", optional `export `) as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, rest = line.removeprefix("export ").partition("=")
        try:
            out[key.strip()] = "".join(shlex.split(rest)) if rest else ""
        except ValueError:
            out[key.strip()] = rest
    return out


def reconcile_env(current: dict[str, str], desired: dict[str, str]) -> dict[str, str]:
    """`desired`, keeping the node's token spellings that mean the same token (a bare
    secret and its K10 form), so a second run changes nothing and restarts nothing."""
    out = dict(desired)
    for var in TOKEN_VARS:
        if var in current and var in desired:
            try:
                have = parse_token(current[var], want_user=_user(current[var]))
                want = parse_token(desired[var], want_user=_user(desired[var]))
            except InputError:
                continue
            if same_secret(have, want):
                out[var] = current[var]
    return out


def _user(text: str) -> str:
    m = re.match(r"K10[0-9a-f]{64}::([a-z]+):", text.strip())
    return m.group(1) if m else "server"


# ------------------------------------------------------------------ installer
def installer_env(inv: Inventory, env: dict[str, str], *, method: str) -> dict[str, str]:
    """What the installer reads: the node's K3S_* variables (it writes them to the .env
    file) and its own INSTALL_K3S_* switches. Enable and start are always ours, never the
    installer's: it reloads systemd twice (enable, then daemon-reload), we once, and that
    reload is the costly part of a join with many agents at once [lab: 1.6-2.0 s for 8]."""
    out = dict(env)
    out["INSTALL_K3S_SKIP_ENABLE"] = "true"
    out["INSTALL_K3S_SKIP_START"] = "true"
    if method == "binary":
        out["INSTALL_K3S_SKIP_DOWNLOAD"] = "true"
    else:
        out["INSTALL_K3S_VERSION"] = inv.cluster["k3s_version"]
    return out


def installer_command(role: Role) -> str:
    """Runs the installer with its variables read from stdin: nothing secret in argv."""
    inner = f"set -a; . /dev/stdin; set +a; exec sh {INSTALLER_PATH} {role.value}"
    return f"sh -c {shlex.quote(inner)}"


def node_spec(inv: Inventory, host: Host, role: Role, env: dict[str, str],
              datastore_ca: str = "") -> NodeSpec:
    """datastore_ca: the CA certificate (PEM) a server pushes for datastore-cafile."""
    cfg = node_config(inv, host, role)
    if "datastore-cafile" in cfg and not datastore_ca:
        raise InputError("[db] tls is on but the datastore CA is missing. Fix: fab "
                         "db.configure (it makes the CA and the databases' certificates)")
    return NodeSpec(host=host, role=role, config_yaml=render_yaml(cfg), env=env,
                    datastore_ca=datastore_ca if role is Role.SERVER else "")
