"""Secrets: env, 0600 file, prompts (driven through prompt_toolkit pipe input), and
non-interactive runs that fail fast naming the variable to set."""
import contextvars
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from tasks.core import inventory, secrets
from tasks.core.errors import InputError, SecretMissing

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def inv(tmp_path):
    text = (ROOT / "hosts.toml").read_text().replace(
        'file = ".lab/secrets.toml"', f'file = "{tmp_path}/s/secrets.toml"')
    p = tmp_path / "hosts.toml"
    p.write_text(text)
    return inventory.load(p)


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("K3S_HA_"):
            monkeypatch.delenv(k)
    monkeypatch.setattr(secrets, "interactive", lambda yes=False: not yes)
    secrets.forget()
    yield
    secrets.forget()


def test_env_var_wins(inv, monkeypatch):
    monkeypatch.setenv("K3S_HA_REPLICATION_PASSWORD", "from-env")
    assert secrets.get_secret("replication_password", inv) == "from-env"


def test_secrets_file_must_be_private(inv):
    path = secrets.secrets_path(inv)
    path.parent.mkdir(parents=True)
    path.write_text('replication_password = "x"\n')
    os.chmod(path, 0o644)
    with pytest.raises(InputError) as ei:
        secrets.get_secret("replication_password", inv, yes=True)
    assert "chmod 600" in str(ei.value) and "x\"" not in str(ei.value)
    os.chmod(path, 0o600)
    assert secrets.get_secret("replication_password", inv, yes=True) == "x"


def test_new_secret_is_confirmed_and_saved_0600_once_accepted(inv):
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text("s3cret\r")
        inp.send_text("s3cret\r")
        assert secrets.get_secret("k3s_db_password", inv, new=True) == "s3cret"
    path = secrets.secrets_path(inv)
    assert not path.exists()                       # not proven yet: nothing saved
    secrets.accepted("k3s_db_password", inv)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert secrets.read_secrets_file(path) == {"k3s_db_password": "s3cret"}
    # next time: no prompt
    secrets.forget()
    assert secrets.get_secret("k3s_db_password", inv, yes=True) == "s3cret"


def test_prompt_confirmation_mismatch_is_refused(inv):
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text("one\r")
        inp.send_text("two\r")
        with pytest.raises(InputError) as ei:
            secrets.get_secret("k3s_db_password", inv, new=True)
    assert "differ" in str(ei.value) and "one" not in str(ei.value)
    assert not secrets.secrets_path(inv).exists()


def _asked(monkeypatch, answers=None):
    """Record every prompt shown. With `answers`: typed from that list (an extra prompt
    fails at once instead of waiting for input); without: answered through prompt_toolkit."""
    asked = []
    real = secrets.ask_password

    def ask(message):
        asked.append(message)
        if answers is None:
            return real(message)
        assert answers, f"unexpected extra prompt: {message}"
        return answers.pop(0)

    monkeypatch.setattr(secrets, "ask_password", ask)
    return asked


def test_login_secret_is_asked_once_without_confirmation(inv, monkeypatch):
    asked = _asked(monkeypatch, ["adminpw"])
    assert secrets.get_secret("db_admin_password", inv) == "adminpw"
    assert secrets.get_secret("db_admin_password", inv) == "adminpw"   # held: no prompt
    assert len(asked) == 1 and "confirm" not in asked[0].lower()


def test_two_threads_asking_the_same_secret_get_one_prompt(inv, monkeypatch):
    asked = _asked(monkeypatch)
    got, errors = [], []

    def ask():
        try:
            got.append(secrets.get_secret("db_admin_password", inv))
        except BaseException as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        # prompt_toolkit's app session lives in a context variable: hand it to the threads
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(ask,),
                                    daemon=True)
                   for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        inp.send_text("adminpw\r")
        time.sleep(1.5)
        inp.send_text("adminpw\r")   # answers a second prompt, if one was (wrongly) shown
        for t in threads:
            t.join(5)
    assert not errors and got == ["adminpw", "adminpw"] and len(asked) == 1


def test_refused_password_is_not_saved_and_asked_again(inv, monkeypatch):
    asked = _asked(monkeypatch, ["wrong", "right"])
    path = secrets.secrets_path(inv)
    assert secrets.get_secret("db_admin_password", inv) == "wrong"
    secrets.refused("db_admin_password", inv)     # the database said 1045
    secrets.accepted("db_admin_password", inv)    # a late accept saves nothing either
    assert not path.exists()
    assert secrets.get_secret("db_admin_password", inv) == "right"
    secrets.accepted("db_admin_password", inv)
    assert len(asked) == 2
    assert secrets.read_secrets_file(path) == {"db_admin_password": "right"}


def test_accepted_saves_nothing_when_save_prompted_is_off(inv, monkeypatch):
    monkeypatch.setitem(inv.secrets, "save_prompted", False)
    _asked(monkeypatch, ["pw"])
    secrets.get_secret("db_admin_password", inv)
    secrets.accepted("db_admin_password", inv)
    assert not secrets.secrets_path(inv).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_secrets_file_of_another_owner_is_refused(inv):
    import pwd

    path = secrets.secrets_path(inv)
    path.parent.mkdir(parents=True)
    path.write_text('replication_password = "x"\n')
    os.chmod(path, 0o600)
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(InputError) as ei:
        secrets.get_secret("replication_password", inv, yes=True)
    assert "belongs to uid" in str(ei.value) and "chown" in str(ei.value)


def test_confirm_prompt_and_yes(inv):
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text("n\r")
        assert secrets.confirm("Proceed?") is False
    assert secrets.confirm("Proceed?", yes=True) is True


def test_missing_secret_with_yes_names_env_var(inv):
    with pytest.raises(SecretMissing) as ei:
        secrets.get_secret("replication_password", inv, yes=True)
    assert "K3S_HA_REPLICATION_PASSWORD" in str(ei.value)
    assert str(secrets.secrets_path(inv)) in str(ei.value)


def test_no_tty_fails_fast_without_hanging(inv, tmp_path):
    """A real subprocess with stdin not a TTY: exits non-zero at once, no prompt."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from tasks.core import inventory, secrets\n"
            "from tasks.core.errors import K3sHaError\n"
            "try:\n"
            "    secrets.get_secret('k3s_db_password', inventory.load(%r))\n"
            "except K3sHaError as e:\n"
            "    print(e); sys.exit(e.exit_code)\n") % (str(ROOT), str(inv.path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("K3S_HA_")}
    p = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=20, env=env)
    assert p.returncode == 2
    assert "K3S_HA_K3S_DB_PASSWORD" in p.stdout and "no terminal" in p.stdout


def test_mask():
    assert secrets.mask("mysql -pHUNTER2 x", "HUNTER2") == "mysql -p*** x"
