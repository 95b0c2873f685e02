"""Idempotent primitives, run against a real local shell in a scratch folder
(LocalConn: the same commands Fabric would send, executed by invoke locally),
and against invoke's MockContext where the exact command conversation matters."""
import grp
import os
import pwd
import subprocess
from types import SimpleNamespace

import pytest
from invoke import Config, Context, MockContext, Result

from tasks.core import ops, run, ssh
from tasks.core.errors import InputError, StepFailed
from tasks.core.inventory import Host
from tests.unit.fakesftp import FakeSftp

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


class LocalConn(Context):
    """A stand-in for fabric.Connection that runs commands on this machine."""

    def __init__(self, dry: bool = False):
        cfg = Config(overrides={"run": {"dry": dry}})
        super().__init__(config=cfg)
        self.k3s_host = Host(name="local", address="127.0.0.1", roles=("db",))
        self.user = "root"
        self.host = "local"
        self.commands: list[str] = []

    def run(self, command, **kw):  # noqa: D401
        self.commands.append(command)
        return super().run(command, **kw)

    def sftp(self):
        def write(path, data, mode):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        return FakeSftp(write)


@pytest.fixture
def conn():
    return LocalConn()


def _meta(**kw):
    return dict(mode="0640", owner=USER, group=GROUP, **kw)


def test_ensure_file_creates_then_reports_unchanged(tmp_path, conn):
    target = tmp_path / "app.cfg"
    assert ops.ensure_file(conn, str(target), "a = 1\n", **_meta()) is True
    assert target.read_text() == "a = 1\n"
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    n = len(conn.commands)
    assert ops.ensure_file(conn, str(target), "a = 1\n", **_meta()) is False
    # unchanged: only read-only probes ran (no install/mv)
    assert not any(c.startswith(("install", "mv", "cp")) for c in conn.commands[n:])


def test_ensure_file_keeps_backup_and_replaces_atomically(tmp_path, conn):
    target = tmp_path / "app.cfg"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    assert ops.ensure_file(conn, str(target), "new\n", **_meta()) is True
    assert target.read_text() == "new\n"
    assert (tmp_path / "app.cfg.bak").read_text() == "old\n"
    assert not list(tmp_path.glob("*.k3sha-new"))


def test_validator_failure_leaves_live_file_untouched(tmp_path, conn):
    target = tmp_path / "haproxy.cfg"
    target.write_text("good\n")
    with pytest.raises(StepFailed) as ei:
        ops.ensure_file(conn, str(target), "bad line 3\n", **_meta(),
                           validate="sh -c 'echo \"[ALERT] parsing line 3\" >&2; exit 1' %s")
    assert target.read_text() == "good\n"
    assert "line 3" in str(ei.value) and "untouched" in str(ei.value)
    assert not list(tmp_path.glob("*.k3sha-new"))
    assert not (tmp_path / "haproxy.cfg.bak").exists()


def test_validator_sees_the_staged_copy(tmp_path, conn):
    target = tmp_path / "x.cfg"
    ops.ensure_file(conn, str(target), "ok\n", **_meta(), validate="grep -q ok %s")
    assert target.read_text() == "ok\n"


def test_dry_run_changes_nothing_and_shows_diff(tmp_path, capsys):
    conn = LocalConn(dry=True)
    target = tmp_path / "x.cfg"
    target.write_text("timeout 1s\n")
    os.chmod(target, 0o640)
    assert ops.ensure_file(conn, str(target), "timeout 5s\n", **_meta()) is True
    out = capsys.readouterr().out
    assert "-timeout 1s" in out and "+timeout 5s" in out
    assert target.read_text() == "timeout 1s\n"
    assert ops.ensure_dir(conn, str(tmp_path / "newdir"), mode="0750", owner=USER,
                             group=GROUP) is True
    assert not (tmp_path / "newdir").exists()


def test_dry_run_hides_secret_content(tmp_path, capsys):
    conn = LocalConn(dry=True)
    ops.ensure_file(conn, str(tmp_path / "s.env"), "PASSWORD=hunter2\n", **_meta(),
                       secret=True)
    out = capsys.readouterr().out
    assert "hunter2" not in out and "secret" in out


def test_mode_only_change_is_fixed(tmp_path, conn):
    target = tmp_path / "x"
    target.write_text("same\n")
    os.chmod(target, 0o644)
    assert ops.ensure_file(conn, str(target), "same\n", **_meta()) is True
    assert oct(target.stat().st_mode & 0o777) == "0o640"


def test_ensure_dir(tmp_path, conn):
    d = tmp_path / "logs"
    assert ops.ensure_dir(conn, str(d), mode="0750", owner=USER, group=GROUP) is True
    assert d.is_dir() and oct(d.stat().st_mode & 0o777) == "0o750"
    assert ops.ensure_dir(conn, str(d), mode="0750", owner=USER, group=GROUP) is False


def test_secret_goes_through_stdin_not_argv(conn):
    res = ssh.sh(conn, "cat", stdin="s3cret-value", write=False)
    assert res.stdout == "s3cret-value"
    assert all("s3cret" not in c for c in conn.commands)


def test_failed_command_names_host_and_command(conn):
    with pytest.raises(StepFailed) as ei:
        ssh.sh(conn, "echo boom >&2; exit 7")
    assert "local" in str(ei.value) and "exited 7" in str(ei.value) and "boom" in str(ei.value)


def test_timeout_names_host_and_command_or_returns_nonzero_with_warn(conn):
    with pytest.raises(StepFailed, match=r"local: 'sleep 5' did not finish within 1 s"):
        ssh.sh(conn, "sleep 5", timeout=1)
    assert ssh.sh(conn, "sleep 5", timeout=1, warn=True).exited == 124


def test_timeout_stops_the_command_on_the_host_itself(conn):
    # the host's own `timeout` ends it: nothing is left running (and holding locks)
    # once sh() returns, even when the command ignores SIGTERM
    marker = f"k3s-ha-test-{os.getpid()}"
    cmd = f"trap '' TERM; sleep 30 # {marker}"
    res = ssh.sh(conn, cmd, timeout=1, warn=True)
    assert res.exited == 137  # SIGKILL after -k 10
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    assert left == "", left
    assert conn.commands[-1].startswith("timeout -k 10 1 sh -c ")


def test_probe_exit_codes(conn):
    assert ssh.probe(conn, "true") == 0
    assert ssh.probe(conn, "false") == 1
    with pytest.raises(StepFailed):
        ssh.probe(conn, "exit 3")


# ---- MockContext: the exact conversation for packages and services

def _mock(results: dict) -> MockContext:
    c = MockContext(run=results, config=Config(overrides={"run": {"dry": False}}))
    c.k3s_host = Host(name="db1", address="192.0.2.1", roles=("db",))
    c.user = "root"
    return c


OS_RELEASE_CMD = "test -e /etc/os-release && base64 -w0 /etc/os-release"
DEBIAN = __import__("base64").b64encode(b'ID=debian\nVERSION_ID="12"\n').decode()
DPKG = ("dpkg-query -W -f='${Package} ${db:Status-Status}\\n' haproxy keepalived 2>/dev/null")


def test_ensure_packages_no_index_update_when_all_present():
    c = _mock({OS_RELEASE_CMD: Result(DEBIAN),
               DPKG: Result("haproxy installed\nkeepalived installed\n")})
    assert ops.ensure_packages(c, ["haproxy", "keepalived"]) is False
    # any apt-get call would have raised NotImplementedError in MockContext


UPDATE = "timeout -k 10 {} sh -c 'DEBIAN_FRONTEND=noninteractive apt-get update -q'; exit $?"
INSTALL_KEEPALIVED = ("timeout -k 10 1200 sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install "
                      "-y -q -o Dpkg::Options::=--force-confold keepalived'; exit $?")


def _keepalived_missing(updates: dict) -> MockContext:
    """haproxy present, keepalived missing; `updates`: try's timeout -> its Result."""
    return _mock({OS_RELEASE_CMD: Result(DEBIAN), DPKG: Result("haproxy installed\n"),
                  INSTALL_KEEPALIVED: Result(""),
                  **{UPDATE.format(t): res for t, res in updates.items()}})


def test_ensure_packages_installs_only_missing():
    c = _keepalived_missing({60: Result("")})
    assert ops.ensure_packages(c, ["haproxy", "keepalived"]) is True


def test_ensure_packages_retries_a_stuck_index_update(monkeypatch):
    monkeypatch.setattr(ops.time, "sleep", lambda s: None)
    c = _keepalived_missing({60: Result("", exited=124), 180: Result("")})
    assert ops.ensure_packages(c, ["haproxy", "keepalived"]) is True
    ran = [call.args[0] for call in c.run.call_args_list]
    assert ran[-3:] == [UPDATE.format(60), UPDATE.format(180), INSTALL_KEEPALIVED]


def test_ensure_packages_names_host_when_index_update_keeps_failing(monkeypatch):
    monkeypatch.setattr(ops.time, "sleep", lambda s: None)
    gone = Result("", stderr="E: mirror gone", exited=100)
    c = _keepalived_missing({60: gone, 180: gone, 600: gone})
    with pytest.raises(ops.StepFailed, match="db1: .*apt-get update.*exited 100"):
        ops.ensure_packages(c, ["haproxy", "keepalived"])


# enabled + active in one round trip
STATE_HAPROXY = 'echo "$(systemctl is-enabled haproxy 2>/dev/null)"; systemctl is-active haproxy'


def test_ensure_service_untouched_when_running_and_unchanged():
    c = _mock({STATE_HAPROXY: Result("enabled\nactive\n")})
    assert ops.ensure_service(c, "haproxy") is False


def test_ensure_service_reloads_on_change():
    c = _mock({STATE_HAPROXY: Result("enabled\nactive\n"),
               "systemctl reload haproxy": Result(""),
               "systemctl is-active haproxy": Result("active\n")})
    # "systemctl restart haproxy" is not in the mock: calling it would raise
    assert ops.ensure_service(c, "haproxy", changed_inputs=True, reload=True) is True


def test_os_family_parsing():
    assert ssh.parse_os_family('ID=ubuntu\nID_LIKE=debian\n') == "debian"
    assert ssh.parse_os_family('ID="rocky"\nID_LIKE="rhel centos fedora"\n') == "redhat"
    with pytest.raises(InputError, match="unsupported OS"):
        ssh.parse_os_family("ID=alpine\n")


def test_non_root_user_gets_sudo(tmp_path):
    c = _mock({"sudo -n sh -c 'id -u'": Result("0\n")})
    c.user = "deploy"
    assert ssh.sh(c, "id -u", write=False).stdout == "0\n"


def test_fan_out_reports_every_failure():
    def fn(x):
        if x % 2:
            raise RuntimeError(f"odd {x}")
        return x * 10

    res = run.fan_out([1, 2, 3, 4], fn)
    assert res[2] == (True, 20) and res[4] == (True, 40)
    assert not res[1][0] and "odd 1" in str(res[1][1])
    assert not res[3][0] and "odd 3" in str(res[3][1])



def test_debug_log_shows_commands_with_secret_masked(conn, caplog):
    caplog.set_level("DEBUG", logger="k3sha")
    ssh.sh(conn, "echo 'user=k3s password=HUNTER2' >/dev/null", write=False, mask="HUNTER2")
    assert "password=***" in caplog.text and "HUNTER2" not in caplog.text


# ---- issue 16: the breakages a unit test must catch

class FakeSystemd(Context):
    """A host whose systemd answers `systemctl` like the real one: a reload or start
    passes through "reloading"/"activating" for `settle` polls; every command is kept.
    (Context keeps public attributes in its config, so the unit's state lives in `_unit`.)"""

    def __init__(self, *, enabled=True, active=True, settle=2, ends_active=True):
        super().__init__(config=Config(overrides={"run": {"dry": False}}))
        self._unit = SimpleNamespace(enabled=enabled, active=active, settle=settle,
                                     ends_active=ends_active, passing="")
        self.k3s_host = Host(name="lb1", address="192.0.2.11", roles=("k3s-balancer",))
        self.user = "root"
        self.host = "lb1"
        self.commands: list[str] = []

    def run(self, command, **kw):
        self.commands.append(command)
        u = self._unit
        verb = command.split()[1] if command.startswith("systemctl ") else ""
        if command.startswith('echo "$(systemctl is-enabled '):  # ops.service_state
            return Result(("enabled" if u.enabled else "disabled") + f"\n{self._state()}\n")
        if verb == "is-enabled":
            return Result("enabled\n" if u.enabled else "disabled\n", exited=0 if u.enabled else 1)
        if verb == "is-active":
            return Result(self._state() + "\n")
        if verb in ("enable", "start", "reload", "restart"):
            u.enabled = u.enabled or verb == "enable"
            u.passing = {"start": "activating", "reload": "reloading",
                         "restart": "activating"}.get(verb, u.passing)
            return Result("")
        if command.startswith("journalctl"):
            return Result("haproxy[1]: [ALERT] config invalid\n")
        raise NotImplementedError(command)

    def _state(self):
        u = self._unit
        if u.passing and u.settle > 0:
            u.settle -= 1
            return u.passing
        if u.passing:
            u.active, u.passing = u.ends_active, ""
        return "active" if u.active else "failed"


def test_config_change_reloads_haproxy_never_restarts():
    """issue 16 (a): a changed haproxy.cfg is applied by `systemctl reload` (no dropped
    connections); a restart would drop every client."""
    c = FakeSystemd()
    assert ops.ensure_service(c, "haproxy", changed_inputs=True, reload=True) is True
    assert "systemctl reload haproxy" in c.commands
    assert not any("restart" in cmd for cmd in c.commands), c.commands
    # it waited through "reloading" until the unit was active again
    assert c.commands[-1] == "systemctl is-active haproxy" and c.commands.count(
        "systemctl is-active haproxy") == 3


def test_unchanged_running_service_is_left_alone():
    c = FakeSystemd()
    assert ops.ensure_service(c, "haproxy", changed_inputs=False, reload=True) is False
    assert not any(v in cmd for cmd in c.commands for v in ("reload", "restart", "start "))


def test_change_without_reload_support_restarts():
    c = FakeSystemd()
    assert ops.ensure_service(c, "keepalived", changed_inputs=True) is True
    assert "systemctl restart keepalived" in c.commands
    assert "systemctl reload keepalived" not in c.commands


def test_stopped_service_is_started_not_reloaded():
    c = FakeSystemd(enabled=False, active=False)
    assert ops.ensure_service(c, "haproxy", changed_inputs=True, reload=True) is True
    assert c.commands[1:3] == ["systemctl enable haproxy", "systemctl start haproxy"]
    assert not any(v in cmd for cmd in c.commands for v in ("reload", "restart"))


def test_service_that_fails_after_reload_names_host_and_journal(monkeypatch):
    monkeypatch.setattr(ops, "SERVICE_SETTLE_TIMEOUT", 1)
    c = FakeSystemd(ends_active=False)
    with pytest.raises(StepFailed, match=r"lb1: service haproxy is not active(.|\n)*ALERT"):
        ops.ensure_service(c, "haproxy", changed_inputs=True, reload=True)


def test_service_stuck_reloading_gives_up_at_the_deadline(monkeypatch):
    monkeypatch.setattr(ops, "SERVICE_SETTLE_TIMEOUT", 0.5)
    c = FakeSystemd(settle=10 ** 6)
    with pytest.raises(StepFailed, match="not active"):
        ops.ensure_service(c, "haproxy", changed_inputs=True, reload=True)


MARKER = "CONTENT-MUST-NOT-BE-IN-ARGV-7f3a"


@pytest.mark.parametrize("secret", [False, True])
def test_ensure_file_never_puts_content_in_argv(tmp_path, conn, secret):
    """issue 16 (b): file content (a password in a config, say) is uploaded, never part
    of a command line, whether the file is created, replaced or only re-moded."""
    target = tmp_path / "app.env"
    ops.ensure_file(conn, str(target), f"PASSWORD={MARKER}\n", **_meta(), secret=secret)
    ops.ensure_file(conn, str(target), f"PASSWORD={MARKER}-2\n", **_meta(), secret=secret)
    os.chmod(target, 0o600)
    ops.ensure_file(conn, str(target), f"PASSWORD={MARKER}-2\n", **_meta(), secret=secret)
    assert target.read_text() == f"PASSWORD={MARKER}-2\n"
    assert len(conn.commands) == 6  # each call: one read, one write (the content: sftp)
    assert not [c for c in conn.commands if MARKER in c], "content appeared in a command line"


def test_stdin_secret_stays_out_of_argv_and_debug_log(conn, caplog):
    """issue 16 (c): a secret given as stdin never appears in the command line or in any
    debug log line; one that must be in a command (mask=) is shown as ***."""
    caplog.set_level("DEBUG")
    res = ssh.sh(conn, "cat >/dev/null; echo done", stdin="pw-STDIN-SECRET", write=False)
    assert res.stdout == "done\n"
    ssh.sh(conn, "echo 'IDENTIFIED BY pw-MASKED-SECRET' >/dev/null", write=False,
           mask="pw-MASKED-SECRET")
    assert "IDENTIFIED BY ***" in caplog.text
    for secret in ("pw-STDIN-SECRET", "pw-MASKED-SECRET"):
        assert secret not in caplog.text
    assert not [c for c in conn.commands if "pw-STDIN-SECRET" in c]


def test_masked_secret_stays_out_of_dry_run_output_and_errors(capsys):
    conn = LocalConn(dry=True)
    ssh.sh(conn, "set-password pw-MASKED-SECRET", mask="pw-MASKED-SECRET")
    assert "would run: set-password ***" in capsys.readouterr().out
    with pytest.raises(StepFailed) as ei:
        ssh.sh(LocalConn(), "false pw-MASKED-SECRET", mask="pw-MASKED-SECRET")
    assert "pw-MASKED-SECRET" not in str(ei.value) and "false ***" in str(ei.value)


def test_stdin_reaches_the_command_in_one_read():
    """Invoke reads a stdin that is not a terminal one character per 10 ms loop turn: the
    k3s installer's 300-byte environment took 3 s (4.5 s for 8 agents at once). sh's
    stream hands Invoke the whole input in one read (run here through Invoke's local
    runner, which shares that stdin loop with Fabric's)."""
    from tasks.core.ssh import WholeInput

    data = "K3S_TOKEN=" + "x" * 3000 + "\nK3S_URL=https://vip:6443\n"
    stream = WholeInput(data)
    reads: list[str] = []
    real_read = stream.read

    def read(size=-1):
        reads.append(real_read(size))
        return reads[-1]

    stream.read = read
    res = Context().run("cat", in_stream=stream, hide=True)
    assert res.stdout == data
    assert len([r for r in reads if r]) == 1


def test_new_file_is_one_write_and_the_upload_is_private_from_its_first_byte(tmp_path):
    """A new or replaced file: its content by sftp into a new 0600 temp file (mode set
    before any byte), then one command stages, backs up and replaces it."""
    seen = []

    class Recording(LocalConn):
        def sftp(self):
            sftp = super().sftp()
            real = sftp.on_close
            sftp.on_close = lambda path, data, mode: (seen.append((path, mode)),
                                                      real(path, data, mode))
            return sftp

    conn = Recording()
    target = tmp_path / "app.cfg"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    assert ops.ensure_file(conn, str(target), "new\n", **_meta()) is True
    writes = [c for c in conn.commands if not c.startswith("test -e")]
    assert len(writes) == 1, conn.commands
    assert [m for _, m in seen] == [0o600] and not os.path.exists(seen[0][0])  # tmp removed
    assert (tmp_path / "app.cfg.bak").read_text() == "old\n" and target.read_text() == "new\n"
