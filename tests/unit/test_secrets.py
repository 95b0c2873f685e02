"""Secrets: env, 0600 file, prompts (driven through prompt_toolkit pipe input), and
non-interactive runs that fail fast naming the variable to set."""
import os
import subprocess
import sys
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


def test_prompt_with_confirmation_saves_0600(inv):
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text("s3cret\r")
        inp.send_text("s3cret\r")
        assert secrets.get_secret("k3s_db_password", inv) == "s3cret"
    path = secrets.secrets_path(inv)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert secrets.read_secrets_file(path) == {"k3s_db_password": "s3cret"}
    # next time: no prompt
    assert secrets.get_secret("k3s_db_password", inv, yes=True) == "s3cret"


def test_prompt_confirmation_mismatch_is_refused(inv):
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text("one\r")
        inp.send_text("two\r")
        with pytest.raises(InputError) as ei:
            secrets.get_secret("k3s_db_password", inv)
    assert "differ" in str(ei.value) and "one" not in str(ei.value)
    assert not secrets.secrets_path(inv).exists()


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
