"""The db lab tests' own inventory: a lab name and /24 of this run's own (tag "db",
10.80.0.0/24 when free), only the hosts they need (built with tests/lab/labinv.py)."""
from pathlib import Path

from tests.lab import labid, labinv

NAME, SUBNET = labid.claim("db", "10.80.0")  # unique per run
DB1, DB2 = "k3s-db-01", "k3s-db-02"
DB_VIP = f"{SUBNET}.101"
# the db lab's [db] (a 3 s semi-sync timeout and rise 3 keep a run short)
DB_BASE = {"semi_sync": True, "semi_sync_timeout_ms": 3000, "rise": 3}


def inventory_text(extra_db: str = "", secrets_file: str = "secrets.toml",
                   save_prompted: bool = False, health_check: str = "mysql-check",
                   gtid: bool = False, lab: tuple[str, str, int] = (NAME, SUBNET, 44),
                   db_section: str | None = None, tls: bool | None = None,
                   proxy_protocol: bool | None = None) -> str:
    """The inventory's TOML; the arguments are write_inventory's."""
    lab_name, net, vrid = lab
    knobs = {k: v for k, v in (("tls", tls), ("proxy_protocol", proxy_protocol))
             if v is not None}
    db: labinv.Body
    if db_section is not None:  # passed through as written, the knobs after it
        db = db_section + "".join(f"\n{k} = {str(v).lower()}" for k, v in knobs.items()) \
            + "\n"
    else:
        db = {**labinv.merge({**DB_BASE, "health_check": health_check, "gtid": gtid},
                             extra_db), **knobs}
    tables = {**labinv.base(lab_name, net, connect_timeout=None, secrets_file=secrets_file,
                            save_prompted=save_prompted),
              "db": db,
              "vips.db": labinv.vip(f"{net}.101", "k3s-db-balancer", vrid)}
    hosts = {"k3s-db-balancer-01": labinv.host(f"{net}.21", "db-balancer"),
             "k3s-db-balancer-02": labinv.host(f"{net}.22", "db-balancer"),
             DB1: labinv.host(f"{net}.31", "db", server_id=1),
             DB2: labinv.host(f"{net}.32", "db", server_id=2),
             "k3s-server-01": labinv.host(f"{net}.41", "k3s-server")}
    return labinv.render(tables, hosts)


def write_inventory(folder: Path, extra_db: str = "", name: str = "hosts.toml",
                    secrets_file: str = "secrets.toml", save_prompted: bool = False,
                    health_check: str = "mysql-check", gtid: bool = False,
                    lab: tuple[str, str, int] = (NAME, SUBNET, 44),
                    db_section: str | None = None, tls: bool | None = None,
                    proxy_protocol: bool | None = None) -> Path:
    """hosts.toml (or `name`) for this run's db lab in `folder` (ssh key, known_hosts, secrets
    beside it). The guide's check and file/position replication unless told otherwise
    (the defaults, http and GTID, are what test_dbfailover_lab.py runs). `extra_db`: TOML
    lines laid over [db] (a key there replaces the same key); `lab`: (name, subnet's first
    three numbers, the VIP's router id); `db_section`: the whole [db] body, as written;
    tls / proxy_protocol: None leaves the defaults (on)."""
    return labinv.write(folder, inventory_text(
        extra_db, secrets_file, save_prompted, health_check, gtid, lab, db_section, tls,
        proxy_protocol), name)
