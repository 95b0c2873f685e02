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
    inv, lsock = _ssh_server(tmp_path, known=False)
    conn = ssh.connect(inv, inv.hosts["k3s-db-01"])
    with pytest.raises(ConnectError) as ei:
        ssh.open_checked(conn)
    msg = str(ei.value)
    assert "host key unknown" in msg and "ssh-keyscan" in msg
    assert not (tmp_path / "kh").exists()  # nothing was auto-added
    lsock.close()


def _ssh_server(tmp_path, *, known: bool):
    """A real SSH server (paramiko) on loopback; its host key in known_hosts if `known`."""
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
            t.accept(3)
            t.close()
        except Exception:
            pass

    threading.Thread(target=serve, daemon=True).start()
    inv = loopback_inventory(tmp_path, port)
    if known:
        (tmp_path / "kh").write_text(
            f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    return inv, lsock


def test_missing_key_file_is_named_not_reported_as_unreachable(tmp_path):
    """paramiko raises FileNotFoundError (an OSError) for a key file that does not exist:
    the message must name the key and the inventory setting, not "unreachable"."""
    import dataclasses

    inv, lsock = _ssh_server(tmp_path, known=True)
    host = dataclasses.replace(inv.hosts["k3s-db-01"], ssh_key=str(tmp_path / "no_such_key"))
    conn = ssh.connect(inv, host)
    with pytest.raises(ConnectError) as ei:
        ssh.open_checked(conn)
    msg = str(ei.value)
    assert "k3s-db-01" in msg and "no_such_key" in msg and "SSH key" in msg
    assert "unreachable" not in msg and "Fix: set [ssh] key" in msg
    lsock.close()
