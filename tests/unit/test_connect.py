"""Connection errors name the host and the cause (loopback only, no lab needed)."""
import socket
import threading
from pathlib import Path

import pytest

from tasks.core import inventory, ssh
from tasks.core.errors import ConnectError

ROOT = Path(__file__).resolve().parents[2]


def loopback_inventory(tmp_path, port):
    text = (ROOT / "hosts.toml").read_text().replace("enabled = true", "enabled = false")
    text = text.replace('address = "10.77.0.31"', 'address = "127.0.0.1"')
    text = text.replace("port = 22\n", f"port = {port}\n", 1)
    text = text.replace('known_hosts = ".lab/ssh/known_hosts"', f'known_hosts = "{tmp_path}/kh"')
    text = text.replace("connect_timeout = 10", "connect_timeout = 3")
    p = tmp_path / "inv.toml"
    p.write_text(text)
    return inventory.load(p)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_refused_port_names_host_and_cause(tmp_path):
    inv = loopback_inventory(tmp_path, free_port())
    conn = ssh.connect(inv, inv.hosts["k3s-db-01"])
    with pytest.raises(ConnectError) as ei:
        ssh.open_checked(conn)
    msg = str(ei.value)
    assert "k3s-db-01" in msg and "unreachable" in msg and "refused" in msg.lower()


def test_unknown_host_key_is_refused_not_accepted(tmp_path):
    """A real SSH server (paramiko) on loopback with a key not in known_hosts."""
    import paramiko

    host_key = paramiko.RSAKey.generate(2048)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]

    def serve():
        try:
            s, _ = lsock.accept()
            t = paramiko.Transport(s)
            t.add_server_key(host_key)
            t.start_server(server=paramiko.ServerInterface())
            t.accept(2)
            t.close()
        except Exception:
            pass

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    inv = loopback_inventory(tmp_path, port)
    conn = ssh.connect(inv, inv.hosts["k3s-db-01"])
    with pytest.raises(ConnectError) as ei:
        ssh.open_checked(conn)
    msg = str(ei.value)
    assert "host key unknown" in msg and "ssh-keyscan" in msg
    assert not (tmp_path / "kh").exists()  # nothing was auto-added
    lsock.close()
