"""The k3s lab test's own inventory: lab "kh3" on 10.77.30.0/24.

Two API balancers, two db balancers (the rules want a pair per VIP), two databases, two servers, two agents; a third agent
(k3s-agent-03) is added later by `with_agent3=True`, as an operator adds a host.
"""
import json
from pathlib import Path

NAME, SUBNET = "kh3", "10.77.30"
API_VIP, DB_VIP = f"{SUBNET}.100", f"{SUBNET}.101"
DBS = ("k3s-db-01", "k3s-db-02")
SERVERS = ("k3s-server-01", "k3s-server-02")
AGENTS = ("k3s-agent-01", "k3s-agent-02")
AGENT3 = "k3s-agent-03"


def _host(name: str, last: int, role: str, extra: str = "") -> str:
    return f'\n[hosts.{name}]\naddress = "{SUBNET}.{last}"\nroles = ["{role}"]\n{extra}'


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)  # str, int and lists of them read the same in TOML


def _vip(address: str, name: str, vrid: int) -> dict[str, object]:
    return {"address": address, "prefix": 24, "name": name, "interface": "host0",
            "virtual_router_id": vrid, "priorities": [100, 90]}


def inventory_text(with_agent3: bool = False, servers: tuple[str, ...] = SERVERS,
                   agents: tuple[str, ...] = AGENTS, balancers: dict | None = None) -> str:
    """servers: in the order given (the first one is the "first server"). balancers:
    [balancers] keys (test_api_check_lab: api_health_check)."""
    tables = {
        "lab": {"enabled": True, "name": NAME, "subnet": f"{SUBNET}.0/24",
                "operator_address": f"{SUBNET}.1"},
        "ssh": {"key": "ssh/id_ed25519", "known_hosts": "ssh/known_hosts"},
        "secrets": {"file": "secrets.toml", "save_prompted": False},
        # lab.up builds the k3s-ha stand-in (NOT k3s) into this airgap folder
        "cluster": {"install_method": "binary", "airgap_dir": f".lab/{NAME}/airgap",
                    "domain": "lab.lan"},
        "db": {"rise": 3},
        **({"balancers": balancers} if balancers else {}),
        "vips.api": _vip(API_VIP, "k3s-balancer", 63),
        "vips.db": _vip(DB_VIP, "k3s-db-balancer", 64),
    }
    text = "".join(f"\n[{t}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in kv.items())
                   for t, kv in tables.items())
    text += _host("k3s-balancer-01", 11, "k3s-balancer")
    text += _host("k3s-balancer-02", 12, "k3s-balancer")
    text += _host("k3s-db-balancer-01", 21, "db-balancer")
    text += _host("k3s-db-balancer-02", 22, "db-balancer")
    text += _host(DBS[0], 31, "db", "server_id = 1\n") + _host(DBS[1], 32, "db", "server_id = 2\n")
    text += "".join(_host(s, 41 + SERVERS.index(s), "k3s-server") for s in servers)
    text += "".join(_host(a, 51 + AGENTS.index(a), "k3s-agent") for a in agents)
    if with_agent3:
        text += _host(AGENT3, 53, "k3s-agent")
    return text


def write_inventory(folder: Path, with_agent3: bool = False, servers: tuple[str, ...] = SERVERS,
                    name: str = "hosts.toml", **kw: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(inventory_text(with_agent3, servers, **kw))  # type: ignore[arg-type]
    return path
