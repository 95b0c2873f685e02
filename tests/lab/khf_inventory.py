"""The drill lab test's own inventory: lab "khf" on 10.77.50.0/24.

Both balancer pairs, the two databases and one k3s server (the API balancers' backend;
the k3s scenarios run once k3s is deployed on it)."""
from pathlib import Path

NAME, SUBNET = "khf", "10.77.50"
API_VIP, DB_VIP = f"{SUBNET}.100", f"{SUBNET}.101"


def inventory_text(db: str = "", balancers: str = "", failover: str = "") -> str:
    return f"""
[lab]
enabled = true
name = "{NAME}"
subnet = "{SUBNET}.0/24"
operator_address = "{SUBNET}.1"

[ssh]
key = "ssh/id_ed25519"
known_hosts = "ssh/known_hosts"
connect_timeout = 3

[secrets]
file = "secrets.toml"
save_prompted = false

[cluster]
domain = "lab.lan"
# lab.up builds the k3s-ha stand-in (NOT k3s) into this airgap folder
install_method = "binary"
airgap_dir = ".lab/khf/airgap"

[db]
semi_sync = true
semi_sync_timeout_ms = 3000
rise = 3
{db}

[balancers]
{balancers}
{failover}

[vips.api]
address = "{API_VIP}"
prefix = 24
name = "k3s-balancer"
interface = "host0"
virtual_router_id = 61
priorities = [100, 90]

[vips.db]
address = "{DB_VIP}"
prefix = 24
name = "k3s-db-balancer"
interface = "host0"
virtual_router_id = 62
priorities = [100, 90]

[hosts.k3s-balancer-01]
address = "{SUBNET}.11"
roles = ["k3s-balancer"]

[hosts.k3s-balancer-02]
address = "{SUBNET}.12"
roles = ["k3s-balancer"]

[hosts.k3s-db-balancer-01]
address = "{SUBNET}.21"
roles = ["db-balancer"]

[hosts.k3s-db-balancer-02]
address = "{SUBNET}.22"
roles = ["db-balancer"]

[hosts.k3s-db-01]
address = "{SUBNET}.31"
roles = ["db"]
server_id = 1

[hosts.k3s-db-02]
address = "{SUBNET}.32"
roles = ["db"]
server_id = 2

[hosts.k3s-server-01]
address = "{SUBNET}.41"
roles = ["k3s-server"]

# two servers: stopping one must not stop the API (with one, the drill measured the whole
# hold as outage)
[hosts.k3s-server-02]
address = "{SUBNET}.42"
roles = ["k3s-server"]
"""


def write_inventory(folder: Path, **kw: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hosts.toml"
    path.write_text(inventory_text(**kw))
    return path
