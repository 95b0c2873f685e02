"""What the inventory may contain: every key with its type, default and allowed values,
and the pure type/value checks that compare a table against it."""
from __future__ import annotations

import difflib
from typing import Any

# section -> key -> (type, default, allowed values or None)
Spec = tuple[Any, Any, Any]
_ANY = None
SCHEMA: dict[str, dict[str, Spec]] = {
    "lab": {
        "enabled": (bool, False, _ANY),
        "name": (str, "kha", _ANY),
        "subnet": (str, "10.77.0.0/24", _ANY),
        "operator_address": (str, "", _ANY),
        "suite": (str, "bookworm", _ANY),
        "mirror": (str, "", _ANY),
        "extra_packages": (list, [], _ANY),
    },
    "ssh": {
        "user": (str, "root", _ANY),
        "port": (int, 22, _ANY),
        "key": (str, "", _ANY),
        "known_hosts": (str, "~/.ssh/known_hosts", _ANY),
        "connect_timeout": (int, 10, _ANY),
    },
    "secrets": {
        "file": (str, "", _ANY),
        "save_prompted": (bool, False, _ANY),
    },
    "cluster": {
        "k3s_version": (str, "v1.31.5+k3s1", _ANY),
        "install_method": (str, "script", ("script", "binary")),
        "node_taint": (str, "CriticalAddonsOnly=true:NoExecute", _ANY),
        "tls_san": (list, [], _ANY),
        "domain": (str, "lab.lan", _ANY),
        "airgap_dir": (str, "", _ANY),
        "agent_token": (bool, False, _ANY),
    },
    "db": {
        "flavor": (str, "auto", ("auto", "mysql", "mariadb")),
        "database": (str, "k3s", _ANY),
        "user": (str, "k3s", _ANY),
        "replication_user": (str, "repl", _ANY),
        "check_user": (str, "haproxy-check", _ANY),
        "health_check": (str, "http", ("mysql-check", "http")),
        "health_port": (int, 9200, _ANY),
        "port": (int, 3306, _ANY),
        "rise": (int, 3, _ANY),
        "fall": (int, 3, _ANY),
        "check_inter_ms": (int, 500, _ANY),
        "semi_sync": (bool, True, _ANY),
        "semi_sync_timeout_ms": (int, 10000, _ANY),
        "gtid": (bool, True, _ANY),
        "auto_increment_increment": (int, 1, _ANY),
        "auto_increment_offset": (int, 1, _ANY),
        "tls": (bool, True, _ANY),
        "tls_dir": (str, "", _ANY),
        "proxy_protocol": (bool, True, _ANY),  # off by default with flavor = "mysql"
    },
    "balancers": {
        "api_backend": (str, "primary-backup", ("primary-backup", "roundrobin")),
        # readyz: HTTPS GET /readyz with a client certificate (fab balancers.api-check-cert)
        "api_health_check": (str, "httpchk", ("httpchk", "readyz", "ssl-hello-chk",
                                               "tcp-check")),
        "api_port": (int, 6443, _ANY),
        "db_port": (int, 3306, _ANY),
        "stats_port": (int, 9000, _ANY),
        "timeout_connect": (str, "5s", _ANY),
        "timeout_client": (str, "30m", _ANY),
        "timeout_server": (str, "30m", _ANY),
        "timeout_check": (str, "5s", _ANY),
        "check_interval": (float, 1, _ANY),
        "check_fall": (int, 2, _ANY),
        "check_rise": (int, 2, _ANY),
        "unicast": (bool, False, _ANY),
        "fast_mode": (bool, False, _ANY),
        "advert_int": (float, 1, _ANY),
        "garp_master_refresh": (int, 1, _ANY),
    },
    "failover": {
        "max_lost_writes": (int, 0, _ANY),
        "max_duplicates": (int, 0, _ANY),
        "max_dual_ownership_s": (float, 2.0, _ANY),
        "max_outage_s": (dict, {}, _ANY),   # scenario kind -> seconds; see FAILOVER_KINDS
    },
}
VIP_SCHEMA: dict[str, Spec] = {
    "address": (str, None, _ANY),
    "prefix": (int, 24, _ANY),
    "name": (str, "", _ANY),
    "interface": (str, "eth0", _ANY),
    "virtual_router_id": (int, None, _ANY),
    "priorities": (list, [], _ANY),
}
HOST_SCHEMA: dict[str, Spec] = {
    "address": (str, None, _ANY),
    "roles": (list, None, _ANY),
    "server_id": (int, None, _ANY),  # unset: numbered by position among the db hosts
    "ssh_user": (str, "", _ANY),
    "ssh_port": (int, 0, _ANY),
    "ssh_key": (str, "", _ANY),
}
TOP_LEVEL = tuple(SCHEMA) + ("vips", "hosts")
# the drill's scenario kinds with their default outage limit in seconds ([failover] max_outage_s)
FAILOVER_KINDS = {"haproxy-stopped": 4.0, "balancer-down": 5.0, "balancer-partitioned": 5.0,
                  "primary-down": 10.0, "primary-partitioned": 15.0, "primary-returning": 1.0,
                  "standby-down": 1.0, "replication-cut": 1.0, "server-down": 5.0,
                  "api-hung": 10.0}


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _typename(t: Any) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(t, str(t))


def _example(typ: Any, default: Any) -> str:
    if default is not None and not isinstance(default, list):
        return repr(default).replace("True", "true").replace("False", "false").replace("'", '"')
    return {bool: "true", int: "1", float: "1.0", str: '"..."', list: "[]"}.get(typ, "...")


def check_value(path: str, value: Any, spec: Spec, problems: list[str]) -> Any:
    """`value` if it has the spec's type (ints widen to float) and is allowed, else the
    spec's default, with a problem naming `path` and the fix."""
    typ, default, choices = spec
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        problems.append(f"{path}: expected {_typename(typ)}, got {value!r}. "
                        f"Fix: write e.g. {path.split('.')[-1]} = {_example(typ, default)}")
        return default
    if choices and value not in choices:
        problems.append(f"{path}: '{value}' is not allowed{suggest(value, choices)}. "
                        f"Fix: use one of {', '.join(choices)}")
        return default
    return value


def check_table(raw: dict[str, Any], path: str, schema: dict[str, Spec], problems: list[str],
                *, unknown_fix: str = "use one of") -> dict[str, Any]:
    """The keys of `raw` that the schema knows, each checked; unknown keys are problems."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if k not in schema:
            problems.append(f"{path}.{k}: unknown key{suggest(k, list(schema))}. "
                            f"Fix: {unknown_fix} {', '.join(schema)}")
            continue
        out[k] = check_value(f"{path}.{k}", v, schema[k], problems)
    return out


def check_top_level(raw: dict[str, Any]) -> list[str]:
    return [f"{k}: unknown table or key{suggest(k, TOP_LEVEL)}. Fix: use only {', '.join(TOP_LEVEL)}"
            for k in raw if k not in TOP_LEVEL]


def check_section(raw: Any, name: str, problems: list[str]) -> dict[str, Any]:
    """The checked keys given in section [name] (defaults are assigned elsewhere)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{name}: expected a table [{name}]. Fix: write it as [{name}] with keys")
        return {}
    return check_table(raw, name, SCHEMA[name], problems, unknown_fix="remove it or use one of")
