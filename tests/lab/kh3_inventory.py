"""The k3s lab test's own inventory: lab "k3" + 3 random characters, on 10.77.30.0/24 when free (tests/lab/labid.py).

Two API balancers, two db balancers (the rules want a pair per VIP), two databases, two servers, two agents; a third agent
(k3s-agent-03) is added later by `with_agent3=True`, as an operator adds a host.
"""
from pathlib import Path
from tests.lab import labid, labinv

NAME, SUBNET = labid.claim("k3", "10.77.30")  # unique per run
API_VIP, DB_VIP = f"{SUBNET}.100", f"{SUBNET}.101"
DBS = ("k3s-db-01", "k3s-db-02")
SERVERS = ("k3s-server-01", "k3s-server-02")
AGENTS = ("k3s-agent-01", "k3s-agent-02")
AGENT3 = "k3s-agent-03"


def _host(last: int, role: str, **extra: object) -> dict[str, object]:
    return labinv.host(f"{SUBNET}.{last}", role, **extra)


def inventory_text(with_agent3: bool = False, servers: tuple[str, ...] = SERVERS,
                   agents: tuple[str, ...] = AGENTS, balancers: dict | None = None) -> str:
    """servers: in the order given (the first one is the "first server"). balancers:
    [balancers] keys (test_api_check_lab: api_health_check)."""
    tables = {
        **labinv.base(NAME, SUBNET, connect_timeout=None),
        # lab.up builds the k3s-ha stand-in (NOT k3s) into this airgap folder
        "cluster": {"install_method": "binary", "airgap_dir": f".lab/{NAME}/airgap",
                    "domain": "lab.lan"},
        "db": {"rise": 3},
        **({"balancers": balancers} if balancers else {}),
        "vips.api": labinv.vip(API_VIP, "k3s-balancer", 63),
        "vips.db": labinv.vip(DB_VIP, "k3s-db-balancer", 64),
    }
    hosts = {"k3s-balancer-01": _host(11, "k3s-balancer"),
             "k3s-balancer-02": _host(12, "k3s-balancer"),
             "k3s-db-balancer-01": _host(21, "db-balancer"),
             "k3s-db-balancer-02": _host(22, "db-balancer"),
             DBS[0]: _host(31, "db", server_id=1), DBS[1]: _host(32, "db", server_id=2)}
    hosts |= {s: _host(41 + SERVERS.index(s), "k3s-server") for s in servers}
    hosts |= {a: _host(51 + AGENTS.index(a), "k3s-agent") for a in agents}
    if with_agent3:
        hosts[AGENT3] = _host(53, "k3s-agent")
    return labinv.render(tables, hosts)


def write_inventory(folder: Path, with_agent3: bool = False, servers: tuple[str, ...] = SERVERS,
                    name: str = "hosts.toml", **kw: object) -> Path:
    return labinv.write(folder, inventory_text(with_agent3, servers, **kw), name)  # type: ignore[arg-type]
