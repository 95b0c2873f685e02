"""The drill lab test's own inventory: lab "dr" + 3 random characters, on 10.77.50.0/24 when free (tests/lab/labid.py).

Both balancer pairs, the two databases and two k3s servers (the API balancers' backends;
the k3s scenarios run once k3s is deployed on them)."""
from pathlib import Path
from tests.lab import labid, labinv

NAME, SUBNET = labid.claim("dr", "10.77.50")  # unique per run
API_VIP, DB_VIP = f"{SUBNET}.100", f"{SUBNET}.101"


API_PAIR = ("k3s-balancer-01", "k3s-balancer-02")
DB_PAIR = ("k3s-db-balancer-01", "k3s-db-balancer-02")
# the drill lab's [db] (a 3 s semi-sync timeout and rise 3 keep a run short)
DB_BASE = {"semi_sync": True, "semi_sync_timeout_ms": 3000, "rise": 3}


def inventory_text(db: str = "", balancers: str = "", failover: str = "") -> str:
    """`db`, `balancers`: TOML lines laid over those tables; `failover`: a raw [failover]
    body."""
    tables = {**labinv.base(NAME, SUBNET),
              # lab.up builds the k3s-ha stand-in (NOT k3s) into this airgap folder
              "cluster": {"domain": "lab.lan", "install_method": "binary",
                          "airgap_dir": f".lab/{NAME}/airgap"},
              "db": labinv.merge(DB_BASE, db),
              "balancers": balancers,
              "vips.api": labinv.vip(API_VIP, "k3s-balancer", 61),
              "vips.db": labinv.vip(DB_VIP, "k3s-db-balancer", 62)}
    if failover:
        tables["failover"] = failover
    hosts = {API_PAIR[0]: labinv.host(f"{SUBNET}.11", "k3s-balancer"),
             API_PAIR[1]: labinv.host(f"{SUBNET}.12", "k3s-balancer"),
             DB_PAIR[0]: labinv.host(f"{SUBNET}.21", "db-balancer"),
             DB_PAIR[1]: labinv.host(f"{SUBNET}.22", "db-balancer"),
             "k3s-db-01": labinv.host(f"{SUBNET}.31", "db", server_id=1),
             "k3s-db-02": labinv.host(f"{SUBNET}.32", "db", server_id=2),
             # two servers: stopping one must not stop the API (with one, the drill
             # measured the whole hold as outage)
             "k3s-server-01": labinv.host(f"{SUBNET}.41", "k3s-server"),
             "k3s-server-02": labinv.host(f"{SUBNET}.42", "k3s-server")}
    return labinv.render(tables, hosts)


def write_inventory(folder: Path, **kw: str) -> Path:
    return labinv.write(folder, inventory_text(**kw))
