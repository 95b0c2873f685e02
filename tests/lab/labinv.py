"""One builder for the lab tests' inventories (each module keeps its own hosts and knobs).

`tables` maps a TOML table name to its keys (a dict, rendered here) or to a raw TOML body
(a str: the knobs a test passes through, e.g. 'api_health_check = "ssl-hello-chk"'; a
key given there replaces the same key of `base`, TOML refuses a key set twice).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

Body = Union[dict[str, Any], str]


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)  # str, int and lists of them read the same in TOML


def merge(base: dict[str, Any], raw: str) -> dict[str, Any]:
    """`base` with the `key = value` lines of `raw` laid over it (values kept as written)."""
    given = {k.strip(): _Raw(v.strip()) for k, v in
             (line.split("=", 1) for line in raw.splitlines() if "=" in line)}
    return {**base, **given}


class _Raw(str):
    """A TOML value already written (from a raw body)."""


def _value(v: object) -> str:
    return str(v) if isinstance(v, _Raw) else _toml(v)


def base(name: str, net: str, connect_timeout: int | None = 3, *,
         secrets_file: str = "secrets.toml", save_prompted: bool = False
         ) -> dict[str, Body]:
    """[lab], [ssh] and [secrets] of a lab named `name` on `net`.0/24 (files beside the
    inventory; prompted secrets not saved unless `save_prompted`)."""
    ssh: dict[str, Any] = {"key": "ssh/id_ed25519", "known_hosts": "ssh/known_hosts"}
    if connect_timeout is not None:
        ssh["connect_timeout"] = connect_timeout
    return {"lab": {"enabled": True, "name": name, "subnet": f"{net}.0/24",
                    "operator_address": f"{net}.1"},
            "ssh": ssh,
            "secrets": {"file": secrets_file, "save_prompted": save_prompted}}


def vip(address: str, name: str, vrid: int, interface: str = "host0") -> dict[str, Any]:
    return {"address": address, "prefix": 24, "name": name, "interface": interface,
            "virtual_router_id": vrid, "priorities": [100, 90]}


def host(address: str, *roles: str, **extra: Any) -> dict[str, Any]:
    return {"address": address, "roles": list(roles), **extra}


def render(tables: dict[str, Body], hosts: dict[str, dict[str, Any]]) -> str:
    out = []
    for t, body in tables.items():
        lines = body if isinstance(body, str) else \
            "".join(f"{k} = {_value(v)}\n" for k, v in body.items())
        out.append(f"\n[{t}]\n{lines}")
    out += [f"\n[hosts.{h}]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in kv.items())
            for h, kv in hosts.items()]
    return "".join(out)


def write(folder: Path, text: str, name: str = "hosts.toml") -> Path:
    """`text` as `folder`/`name` (ssh key, known_hosts and secrets go beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path
