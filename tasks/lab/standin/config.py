"""Settings for `k3s server` / `k3s agent`: flags, K3S_* env vars and config.yaml, like k3s.

Precedence as in k3s: a command-line flag beats config.yaml, which beats the env var.
Repeatable flags (lists) combine config.yaml and the command line. config.yaml is the
simple YAML subset k3s configs use (`key: value`, `key: [a, b]`, block lists, `key+:`
to append in config.yaml.d/*.yaml); anything else fails with the file and line.
"""
from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "/etc/rancher/k3s/config.yaml"
Value = str | bool | list[str]


class ConfigError(Exception):
    """Bad flags, config.yaml or datastore endpoint: exit 1 with the message."""


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str = "str"  # "str" | "bool" | "list"
    env: str | None = None
    default: Any = None
    short: str | None = None
    ignored: bool = False  # accepted (k3s has it) but without effect in the stand-in


_COMMON = [
    Flag("token", env="K3S_TOKEN", short="-t"),
    Flag("token-file", env="K3S_TOKEN_FILE"),
    Flag("node-name", env="K3S_NODE_NAME"),
    Flag("with-node-id", "bool"),
    Flag("node-label", "list"),
    Flag("node-taint", "list"),
    Flag("node-ip", env="K3S_NODE_IP", short="-i"),
    Flag("data-dir", env="K3S_DATA_DIR", default="/var/lib/rancher/k3s", short="-d"),
    Flag("config", env="K3S_CONFIG_FILE", default=DEFAULT_CONFIG, short="-c"),
    Flag("debug", "bool", env="K3S_DEBUG"),
] + [Flag(n, k, ignored=True) for n, k in [
    ("kubelet-arg", "list"), ("kube-proxy-arg", "list"), ("flannel-iface", "str"),
    ("node-external-ip", "str"), ("selinux", "bool"), ("protect-kernel-defaults", "bool"),
    ("prefer-bundled-bin", "bool"), ("resolv-conf", "str"), ("pause-image", "str")]]

SERVER_FLAGS = _COMMON + [
    Flag("agent-token", env="K3S_AGENT_TOKEN"),
    Flag("agent-token-file", env="K3S_AGENT_TOKEN_FILE"),
    Flag("datastore-endpoint", env="K3S_DATASTORE_ENDPOINT"),
    Flag("datastore-cafile", env="K3S_DATASTORE_CAFILE"),
    Flag("datastore-certfile", env="K3S_DATASTORE_CERTFILE"),
    Flag("datastore-keyfile", env="K3S_DATASTORE_KEYFILE"),
    Flag("tls-san", "list"),
    Flag("write-kubeconfig", env="K3S_KUBECONFIG_OUTPUT", default="/etc/rancher/k3s/k3s.yaml",
         short="-o"),
    Flag("write-kubeconfig-mode", env="K3S_KUBECONFIG_MODE", default="0600"),
    Flag("https-listen-port", default="6443"),
    Flag("bind-address", default="0.0.0.0"),
    Flag("advertise-address"),
    Flag("cluster-init", "bool"),
] + [Flag(n, k, ignored=True) for n, k in [
    ("disable", "list"), ("flannel-backend", "str"), ("cluster-cidr", "str"),
    ("service-cidr", "str"), ("cluster-dns", "str"), ("cluster-domain", "str"),
    ("kube-apiserver-arg", "list"), ("kube-controller-manager-arg", "list"),
    ("kube-scheduler-arg", "list"), ("secrets-encryption", "bool"),
    ("disable-network-policy", "bool"), ("disable-cloud-controller", "bool"),
    ("disable-helm-controller", "bool"), ("egress-selector-mode", "str"),
    ("etcd-expose-metrics", "bool"), ("embedded-registry", "bool")]]

AGENT_FLAGS = _COMMON + [Flag("server", env="K3S_URL", short="-s")]
FLAGS = {"server": SERVER_FLAGS, "agent": AGENT_FLAGS}


# ------------------------------------------------------------------ YAML subset (pure)
def _strip_comment(line: str) -> str:
    quote = ""
    for i, c in enumerate(line):
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _scalar(text: str, where: str) -> str | bool:
    text = text.strip()
    if text.startswith('"'):
        try:
            return json.loads(text)
        except ValueError:
            raise ConfigError(f"{where}: bad double-quoted string {text}") from None
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'"):
            raise ConfigError(f"{where}: unterminated single-quoted string")
        return text[1:-1].replace("''", "'")
    if text and text[0] in "|>{&*!%@`":
        raise ConfigError(f"{where}: unsupported YAML ({text[0]!r}); the stand-in reads only "
                          "key: value, key: [a, b] and block lists")
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    return text


def _flow_list(text: str, where: str) -> list[str]:
    if not text.endswith("]"):
        raise ConfigError(f"{where}: a flow list must end on the same line with ]")
    items, cur, quote = [], "", ""
    for c in text[1:-1]:
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == ",":
            items.append(cur)
            cur = ""
            continue
        cur += c
    if cur.strip():
        items.append(cur)
    return [str(_scalar(i, where)) for i in items]


_KEY = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]*\+?)\s*:(?:\s+(.*))?")


def parse_yaml(text: str, source: str = "config.yaml") -> dict[str, Value]:
    """Parse the YAML subset of k3s config files (pure)."""
    out: dict[str, Value] = {}
    list_key = None
    for n, raw in enumerate(text.splitlines(), 1):
        where = f"{source} line {n}"
        line = _strip_comment(raw).rstrip()
        if not line.strip() or line.strip() in ("---", "..."):
            continue
        item = line.lstrip()
        if item == "-" or item.startswith("- "):
            if list_key is None:
                raise ConfigError(f"{where}: list item outside a list")
            out[list_key].append(str(_scalar(item[1:], where)))  # type: ignore[union-attr]
            continue
        if line[0].isspace():
            raise ConfigError(f"{where}: nested mappings are not supported")
        m = _KEY.fullmatch(line)
        if not m:
            raise ConfigError(f"{where}: expected 'key: value'")
        key, rest = m.group(1), (m.group(2) or "").strip()
        list_key = None
        if not rest:
            out[key], list_key = [], key
        elif rest.startswith("["):
            out[key] = _flow_list(rest, where)
        else:
            out[key] = _scalar(rest, where)
    return out


def merge_config_files(docs: list[dict[str, Value]]) -> dict[str, Value]:
    """config.yaml then config.yaml.d/*.yaml in order: later keys win, `key+` appends."""
    out: dict[str, Value] = {}
    for doc in docs:
        for key, val in doc.items():
            if key.endswith("+"):
                base = key[:-1]
                prev = out.get(base, [])
                prev_list = prev if isinstance(prev, list) else [str(prev)]
                add = val if isinstance(val, list) else [str(val)]
                out[base] = prev_list + add
            else:
                out[key] = val
    return out


def read_config_files(path: str) -> dict[str, Value]:
    """config.yaml (missing is fine unless named explicitly) + config.yaml.d/*.yaml."""
    docs = []
    p = Path(path)
    if p.exists():
        docs.append(parse_yaml(p.read_text(), str(p)))
    elif path != DEFAULT_CONFIG:
        raise ConfigError(f"config file {path} does not exist")
    d = Path(str(p) + ".d")
    if d.is_dir():
        docs += [parse_yaml(f.read_text(), str(f)) for f in sorted(d.glob("*.yaml"))]
    return merge_config_files(docs)


# ------------------------------------------------------------------ flags
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"k3s {self.prog.split()[-1]}: {message}")


def _parser(role: str) -> _Parser:
    p = _Parser(prog=f"k3s {role}", allow_abbrev=False, add_help=True,
                description=f"k3s {role} (k3s-ha lab stand-in, not k3s)")
    for f in FLAGS[role]:
        names = [f"--{f.name}"] + ([f.short] if f.short else [])
        if f.kind == "bool":
            p.add_argument(*names, dest=f.name, action="store_true", default=None)
        elif f.kind == "list":
            p.add_argument(*names, dest=f.name, action="append", default=None)
        else:
            p.add_argument(*names, dest=f.name, default=None)
    return p


def _coerce(flag: Flag, val: Value, where: str) -> Value:
    if flag.kind == "list":
        if isinstance(val, list):
            return [str(v) for v in val]
        return [str(val)]
    if flag.kind == "bool":
        if isinstance(val, bool):
            return val
        if str(val).lower() in ("true", "1", "yes"):
            return True
        if str(val).lower() in ("false", "0", "no", ""):
            return False
        raise ConfigError(f"{where}: {flag.name} must be true or false, not {val!r}")
    if isinstance(val, list):
        raise ConfigError(f"{where}: {flag.name} takes one value, not a list")
    return str(val).lower() if isinstance(val, bool) else str(val)


def split_commas(name: str, values: list[str]) -> list[str]:
    """k3s's list flags are string slices: `--tls-san a,b` is two values (not *-arg flags)."""
    if name.endswith("-arg"):
        return values
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def merge_settings(role: str, cli: Mapping[str, Any], files: Mapping[str, Value],
                   env: Mapping[str, str]) -> dict[str, Any]:
    """Combine flags, config.yaml and env (pure). Unknown config keys fail."""
    flags = {f.name: f for f in FLAGS[role]}
    other = {f.name for r, fl in FLAGS.items() if r != role for f in fl}
    for key in files:
        if key not in flags and key not in other:
            raise ConfigError(f"config.yaml: unknown key {key!r} (keys are k3s flag names, "
                              "e.g. tls-san, node-taint, token)")
    out: dict[str, Any] = {}
    for name, f in flags.items():
        cli_val, file_val = cli.get(name), files.get(name)
        if f.kind == "list":
            merged = _coerce(f, file_val, "config.yaml") if file_val is not None else []
            out[name] = split_commas(name, list(merged) + list(cli_val or []))
            continue
        if cli_val is not None:
            out[name] = cli_val
        elif file_val is not None:
            out[name] = _coerce(f, file_val, "config.yaml")
        elif f.env and env.get(f.env, "") != "":
            out[name] = _coerce(f, env[f.env], f.env)
        else:
            out[name] = f.default if f.kind != "bool" else bool(f.default)
    return out


def load_settings(role: str, argv: list[str], env: Mapping[str, str]) -> dict[str, Any]:
    """Parse `k3s <role> ARGS` with config.yaml and env; raises ConfigError."""
    ns = vars(_parser(role).parse_args(argv))
    path = ns.get("config") or env.get("K3S_CONFIG_FILE") or DEFAULT_CONFIG
    files = read_config_files(path)
    files.pop("config", None)
    settings = merge_settings(role, ns, files, env)
    settings["ignored"] = sorted(f.name for f in FLAGS[role]
                                 if f.ignored and settings.get(f.name) not in (None, [], False))
    return settings


def read_secret(value: str | None, file: str | None, what: str) -> str | None:
    """A token from its flag or its file (the file wins when both are set, like k3s)."""
    if file:
        try:
            return Path(file).read_text().strip() or None
        except OSError as e:
            raise ConfigError(f"cannot read {what} file {file}: {e.strerror}") from None
    return value or None


# ------------------------------------------------------------------ datastore endpoint
@dataclass(frozen=True)
class Dsn:
    user: str
    password: str
    host: str
    port: int
    database: str
    unix_socket: str | None = None

    def masked(self) -> str:
        where = f"unix({self.unix_socket})" if self.unix_socket else f"tcp({self.host}:{self.port})"
        pw = ":*****" if self.password else ""
        return f"mysql://{self.user}{pw}@{where}/{self.database}"


def parse_dsn(endpoint: str) -> Dsn:
    """`mysql://user:pass@tcp(host:3306)/db` parsed like go-sql-driver (pure): the last '/'
    ends the address, the last '@' before it ends the credentials, so a password may hold
    ':', '@' and '/'."""
    if not endpoint.startswith("mysql://"):
        scheme = endpoint.split("://")[0] if "://" in endpoint else endpoint[:10]
        raise ConfigError(f"datastore endpoint: only mysql:// is supported by the stand-in "
                          f"(got {scheme!r}); embedded etcd/sqlite are not")
    rest = endpoint[len("mysql://"):]
    slash = rest.rfind("/")
    if slash < 0:
        raise ConfigError("datastore endpoint: missing '/<database>' "
                          "(form: mysql://user:pass@tcp(host:3306)/db)")
    head, dbpart = rest[:slash], rest[slash + 1:]
    database = dbpart.split("?")[0] or "kubernetes"
    at = head.rfind("@")
    cred, addr = (head[:at], head[at + 1:]) if at >= 0 else ("", head)
    user, _, password = cred.partition(":")
    m = re.fullmatch(r"(?:(tcp|unix)\((.*)\))?", addr) if addr else None
    if addr and not m:
        raise ConfigError("datastore endpoint: the address must be tcp(host:port) or unix(path)")
    proto, inner = (m.group(1), m.group(2)) if m and m.group(1) else ("tcp", "127.0.0.1:3306")
    if proto == "unix":
        return Dsn(user or "root", password, "localhost", 3306, database, unix_socket=inner)
    if inner.startswith("["):
        host, _, port = inner[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = inner.rpartition(":") if ":" in inner else (inner, "", "")
    host = host or "127.0.0.1"
    if port and not port.isdigit():
        raise ConfigError(f"datastore endpoint: bad port {port!r}")
    return Dsn(user or "root", password, host, int(port or 3306), database)
