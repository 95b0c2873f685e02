"""The db lab tests' own inventory: lab "khd" on 10.80.0.0/24, only the hosts they need."""
from pathlib import Path

SUBNET = "10.80.0"
DB1, DB2 = "k3s-db-01", "k3s-db-02"
DB_VIP = f"{SUBNET}.101"


def write_inventory(folder: Path, extra_db: str = "", name: str = "hosts.toml",
                    secrets_file: str = "secrets.toml", save_prompted: bool = False,
                    health_check: str = "mysql-check", gtid: bool = False,
                    lab: tuple[str, str, int] = ("khd", SUBNET, 44),
                    db_section: str | None = None, tls: bool | None = None,
                    proxy_protocol: bool | None = None) -> Path:
    """hosts.toml (or `name`) for lab khd in `folder` (ssh key, known_hosts, secrets
    beside it). The guide's check and file/position replication unless told otherwise
    (the defaults, http and GTID, are what test_dbfailover_lab.py runs). `lab`: (name,
    subnet's first three numbers, the VIP's router id); `db_section`: the whole [db] body;
    tls / proxy_protocol: None leaves the defaults (on)."""
    lab_name, net, vrid = lab
    db = db_section if db_section is not None else f"""semi_sync = true
semi_sync_timeout_ms = 3000
rise = 3
health_check = "{health_check}"
gtid = {str(gtid).lower()}
{extra_db}"""
    db += "".join(f"\n{k} = {str(v).lower()}" for k, v in
                  (("tls", tls), ("proxy_protocol", proxy_protocol)) if v is not None)
    text = f"""
[lab]
enabled = true
name = "{lab_name}"
subnet = "{net}.0/24"
operator_address = "{net}.1"

[ssh]
key = "ssh/id_ed25519"
known_hosts = "ssh/known_hosts"

[secrets]
file = "{secrets_file}"
save_prompted = {str(save_prompted).lower()}

[db]
{db}

[vips.db]
address = "{net}.101"
prefix = 24
name = "k3s-db-balancer"
interface = "host0"
virtual_router_id = {vrid}
priorities = [100, 90]

[hosts.k3s-db-balancer-01]
address = "{net}.21"
roles = ["db-balancer"]

[hosts.k3s-db-balancer-02]
address = "{net}.22"
roles = ["db-balancer"]

[hosts.{DB1}]
address = "{net}.31"
roles = ["db"]
server_id = 1

[hosts.{DB2}]
address = "{net}.32"
roles = ["db"]
server_id = 2

[hosts.k3s-server-01]
address = "{net}.41"
roles = ["k3s-server"]
"""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path
