"""The balancer lab tests' own inventory: lab "ba" + 3 random characters, on 10.79.0.0/24 when free (tests/lab/labid.py).

Four balancers (two pairs) and two small backends that stand in for the k3s servers and
the databases (roles k3s-server + db): only VRRP and HAProxy matter here.
"""
from pathlib import Path
from tests.lab import labid, labinv

NAME, SUBNET = labid.claim("ba", "10.79.0")  # unique per run
API_PAIR = ("k3s-balancer-01", "k3s-balancer-02")
DB_PAIR = ("k3s-db-balancer-01", "k3s-db-balancer-02")
BACKENDS = ("k3s-server-01", "k3s-server-02")
API_VIP, DB_VIP = f"{SUBNET}.100", f"{SUBNET}.101"


def inventory_text(balancers: str = "", cluster: str = "") -> str:
    tables = {**labinv.base(NAME, SUBNET),
              "cluster": labinv.merge({"domain": "lab.lan"}, cluster),
              "db": {"health_check": "http", "rise": 3},
              "balancers": balancers,
              "vips.api": labinv.vip(API_VIP, "k3s-balancer", 53),
              "vips.db": labinv.vip(DB_VIP, "k3s-db-balancer", 54)}
    hosts = {API_PAIR[0]: labinv.host(f"{SUBNET}.11", "k3s-balancer"),
             API_PAIR[1]: labinv.host(f"{SUBNET}.12", "k3s-balancer"),
             DB_PAIR[0]: labinv.host(f"{SUBNET}.21", "db-balancer"),
             DB_PAIR[1]: labinv.host(f"{SUBNET}.22", "db-balancer"),
             BACKENDS[0]: labinv.host(f"{SUBNET}.41", "k3s-server", "db", server_id=1),
             BACKENDS[1]: labinv.host(f"{SUBNET}.42", "k3s-server", "db", server_id=2)}
    return labinv.render(tables, hosts)


def write_inventory(folder: Path, balancers: str = "", cluster: str = "",
                    name: str = "hosts.toml") -> Path:
    """An inventory for this lab in `folder` (ssh key, known_hosts, secrets beside it)."""
    return labinv.write(folder, inventory_text(balancers, cluster), name)


# ------------------------------------------------------------------ stand-in backends
# k3s servers: a TLS server answering 200 on /ping (:6443); databases: an HTTP 200 on the
# db health port (:9200). Transient systemd units, so a power cycle drops them.
_API = r"""
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"pong")
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("0.0.0.0", 6443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("/root/khb.crt", "/root/khb.key")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"""


def backend_command() -> str:
    import shlex

    return " && ".join([
        "test -s /root/khb.crt || openssl req -x509 -newkey rsa:2048 -nodes -days 3 "
        "-subj /CN=backend -keyout /root/khb.key -out /root/khb.crt 2>/dev/null",
        "(systemctl is-active -q khb-api || systemd-run -q --unit=khb-api python3 -c "
        + shlex.quote(_API) + ")",
        "(systemctl is-active -q khb-dbh || systemd-run -q --unit=khb-dbh python3 -m http.server "
        "9200 --directory /tmp)",
    ])


def start_backends(inv) -> None:
    import subprocess

    from tasks.lab import labnet

    for h in BACKENDS:
        subprocess.run(labnet.ssh_argv(inv, h, [backend_command()]), check=True,
                       capture_output=True, text=True, timeout=60)
