"""ssh.Pool: one SSH connection per host for a whole `fab` invocation (every Run and
every nested task in it), leased extra connections for parallel threads, all closed when
the outermost task ends."""
from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from invoke import Context

from tasks.core import cli, inventory, ssh
from tasks.core.run import Run

ROOT = Path(__file__).resolve().parents[2]


class FakeConn:
    """Counts what the pool does with it: opens (SSH handshakes) and closes."""

    def __init__(self, host: Any) -> None:
        self.host, self.opens, self.closed, self.is_connected = host, 0, False, False
        self.k3s_host = host
        self.keepalive = 0
        transport = SimpleNamespace(set_keepalive=lambda s: setattr(self, "keepalive", s))
        self.client = SimpleNamespace(get_transport=lambda: transport)

    def open(self) -> None:
        self.opens += 1
        self.is_connected = True

    def close(self) -> None:
        self.closed, self.is_connected = True, False


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[FakeConn]:
    out: list[FakeConn] = []

    def connect(inv: Any, host: Any, config: Any = None) -> FakeConn:
        out.append(FakeConn(host))
        return out[-1]

    monkeypatch.setattr(ssh, "connect", connect)
    monkeypatch.setattr(ssh, "POOL", ssh.Pool())
    monkeypatch.setattr("tasks.core.run.POOL", ssh.POOL)
    monkeypatch.setattr(cli, "POOL", ssh.POOL)
    return out


@pytest.fixture
def inv(tmp_path: Path) -> inventory.Inventory:
    text = (ROOT / "hosts.toml").read_text().replace("enabled = true", "enabled = false")
    p = tmp_path / "hosts.toml"
    p.write_text(text)
    return inventory.load(p)


def test_runs_of_one_invocation_share_one_connection_per_host(made, inv) -> None:
    db1, db2 = inv.host("k3s-db-01"), inv.host("k3s-db-02")
    with ssh.POOL.scope():
        for title in ("db.install", "db.configure", "db.users"):  # cluster.deploy's steps
            r = Run(Context(), title, inv=inv)
            r.each([db1, db2], lambda conn, h: conn)
            r.close()
        assert len(made) == 2 and all(c.opens == 1 and not c.closed for c in made)
        assert all(c.keepalive == ssh.KEEPALIVE_S for c in made)  # idle between stages
    assert all(c.closed for c in made)  # the outermost scope closed them


def test_a_run_outside_any_task_closes_its_connections(made, inv) -> None:
    r = Run(Context(), "script", inv=inv)
    conn = r.conn(inv.host("k3s-db-01"))
    r.close()
    assert conn.closed


def test_a_dropped_connection_is_opened_again(made, inv) -> None:
    h = inv.host("k3s-db-01")
    with ssh.POOL.scope():
        first = Run(Context(), "a", inv=inv).conn(h)
        first.is_connected = False  # the host went away and came back
        again = Run(Context(), "b", inv=inv).conn(h)
        assert again is first and first.opens == 2


def test_dry_and_real_runs_do_not_share(made, inv) -> None:
    h = inv.host("k3s-db-01")
    with ssh.POOL.scope():
        real = Run(Context(), "a", inv=inv).conn(h)
        dry = Run(Context(), "b", inv=inv, dry=True).conn(h)
        assert dry is not real


def test_parallel_leases_get_their_own_connection_and_reuse_idle_ones(made, inv) -> None:
    h = inv.host("k3s-server-01")
    inside = threading.Barrier(3, timeout=5)
    got: list[Any] = []

    def lease() -> None:
        with ssh.POOL.lease(inv, h) as conn:
            got.append(conn)
            inside.wait()  # all three hold a lease at once

    with ssh.POOL.scope():
        threads = [threading.Thread(target=lease) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(c) for c in got}) == 3  # never one Connection in two threads
        with ssh.POOL.lease(inv, h) as again:
            assert again in got and len(made) == 3  # an idle one, no new handshake
    assert all(c.closed for c in made)


def test_nested_tasks_share_the_pool_and_the_outermost_closes_it(made, inv) -> None:
    h = inv.host("k3s-db-01")
    seen: list[Any] = []

    @cli.k3s_task
    def inner(c: Context) -> None:
        r = Run(c, "inner", inv=inv)
        seen.append(r.conn(h))
        r.close()
        assert not seen[-1].closed

    @cli.k3s_task
    def outer(c: Context) -> None:
        inner(c)
        inner(c)
        assert not seen[0].closed

    outer(Context())
    assert len(made) == 1 and seen[0] is seen[1] and made[0].opens == 1 and made[0].closed


# ---- fewer round trips per step: what every step asks, asked once

class Shell(FakeConn):
    """Answers commands from a dict; keeps what was run."""

    def __init__(self, answers: dict[str, tuple[int, str]]) -> None:
        super().__init__(None)
        self.user, self.answers, self.ran = "root", answers, []
        self.config = Context().config

    def run(self, command: str, **kw: Any) -> Any:
        from invoke import Result

        self.ran.append(command)
        code, out = self.answers[command]
        return Result(out, exited=code)


def test_os_release_is_read_once_per_connection() -> None:
    conn = Shell({"test -e /etc/os-release && base64 -w0 /etc/os-release":
                  (0, "SUQ9ZGViaWFuClZFUlNJT05fSUQ9IjEyIgo=")})  # ID=debian VERSION_ID="12"
    assert ssh.os_family(conn) == "debian" and ssh.os_release(conn)["VERSION_ID"] == "12"
    ssh.os_release(conn)["ID"] = "changed by a caller"
    assert ssh.os_release(conn)["ID"] == "debian" and len(conn.ran) == 1


def test_file_content_and_mode_in_one_round_trip() -> None:
    cmd = "test -e /etc/x.cfg && stat -c '%a %U %G' /etc/x.cfg && base64 -w0 /etc/x.cfg"
    conn = Shell({cmd: (0, "644 root haproxy\naGVsbG8K")})
    assert ssh.read_file_meta(conn, "/etc/x.cfg") == (b"hello\n", ("0644", "root", "haproxy"))
    assert conn.ran == [cmd]
    missing = Shell({cmd: (1, "")})
    assert ssh.read_file_meta(missing, "/etc/x.cfg") == (None, None)


def test_server_version_asked_once_per_connection_unless_it_failed() -> None:
    from tasks.core.errors import StepFailed
    from tasks.facts import mysql

    cmd = "mysql -NBe 'SELECT VERSION()'"
    down = Shell({cmd: (1, "")})
    for _ in range(2):  # not answering is never remembered
        with pytest.raises(StepFailed, match="does not answer"):
            mysql.server_version(down, "db1")
    up = Shell({cmd: (0, "10.11.6-MariaDB-0+deb12u1\n")})
    assert mysql.server_version(up, "db1") is mysql.server_version(up, "db1")
    assert up.ran == [cmd] and mysql.server_version(up, "db1").mariadb


def test_hosts_failing_the_same_way_keep_its_exit_code():
    """A wrong admin password typed once fails every db node as bad input: exit 2, not 1
    (the README's exit codes); connect failures everywhere: 3; mixed: 1."""
    from tasks.core.errors import ConnectError, InputError, StepFailed
    from tasks.core.run import _Failures
    a, b = SimpleNamespace(name="db-1"), SimpleNamespace(name="db-2")
    wrong = [(a, InputError("db-1: wrong password")), (b, InputError("db-2: wrong password"))]
    assert _Failures(wrong).exit_code == 2
    assert _Failures([(a, ConnectError("x")), (b, ConnectError("y"))]).exit_code == 3
    assert _Failures([(a, InputError("x")), (b, StepFailed("y"))]).exit_code == 1
    assert _Failures([(a, RuntimeError("boom"))]).exit_code == 1
