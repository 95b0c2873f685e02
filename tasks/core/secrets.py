"""Secrets and prompts.

A secret NAME (e.g. "replication_password") is looked up, in order, in:
  1. the environment variable K3S_HA_<NAME upper-cased> (K3S_HA_REPLICATION_PASSWORD);
  2. the secrets file ([secrets] file in the inventory, or K3S_HA_SECRETS), which must be
     mode 0600 and owned by us (refused otherwise);
  3. a questionary password prompt, asked once per run even from parallel threads (with
     confirmation only for a value about to be set, `new=True`), saved to the secrets
     file when [secrets] save_prompted is true and only after `accepted()` says it worked
     (a login succeeded or the value was set); `refused()` drops a value that did not.
Non-interactive runs (no TTY, or --yes) never prompt: a missing secret fails naming the
variable to set. Values are never printed, logged or put in argv.
"""
from __future__ import annotations

import os
import stat
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import questionary

from .errors import InputError, SecretMissing
from .inventory import Inventory

DESCRIPTIONS = {
    "db_admin_password": "password of the k3s-ha admin user on the databases",
    "replication_password": "password of the replication user",
    "k3s_db_password": "password of the k3s datastore user",
    "k3s_token": "k3s server token (K10...::server:...)",
}


def env_name(name: str) -> str:
    return "K3S_HA_" + name.upper()


def secrets_path(inv: Inventory | None) -> Path | None:
    env = os.environ.get("K3S_HA_SECRETS")
    if env:
        return Path(env).expanduser()
    if inv is not None and inv.secrets.get("file"):
        return inv.resolve_path(inv.secrets["file"])
    return None


def read_secrets_file(path: Path) -> dict[str, str]:
    """Parse the secrets file after checking it is private (0600, ours)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise InputError(f"{path}: secrets file is readable by others "
                         f"(mode {stat.S_IMODE(st.st_mode):04o}); refusing to use it. "
                         f"Fix: chmod 600 {path}")
    if st.st_uid != os.getuid():
        raise InputError(f"{path}: secrets file belongs to uid {st.st_uid}, not to you; "
                         "refusing to use it. Fix: chown it to the user running fab")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: invalid TOML in the secrets file: {e}") from None
    return {k: str(v) for k, v in data.items()}


def _toml_escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


def write_secret(path: Path, name: str, value: str) -> None:
    """Add or replace one secret in the file, keeping it 0600 from creation on."""
    data = read_secrets_file(path)
    data[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for k, v in sorted(data.items()):
            f.write(f'{k} = "{_toml_escape(v)}"\n')
    os.replace(tmp, path)


def interactive(yes: bool = False) -> bool:
    return not yes and sys.stdin.isatty() and sys.stdout.isatty()


# One run asks each secret at most once: a prompted value is kept here (by secrets file and
# name) while the run lasts, and the lock makes a second thread wait for the first prompt
# instead of printing its own. A prompted value is saved only once `accepted()` says the
# database took it (a login succeeded, or the value was set).
_lock = threading.Lock()
_prompted: dict[tuple[str, str], str] = {}
_pending: dict[tuple[str, str], tuple[Path, str]] = {}


def _key(name: str, path: Path | None) -> tuple[str, str]:
    return (str(path or ""), name)


def get_secret(name: str, inv: Inventory | None = None, *, yes: bool = False,
               new: bool = False, confirm_new: bool = False) -> str:
    """The secret NAME from env, secrets file or a prompt (see module doc).

    new=True: the value is about to be set (not used to log in): a prompt asks twice
    (confirm_new is its former name). A prompted value is held for this run and saved
    (when [secrets] save_prompted) only by `accepted(name)`.
    """
    new = new or confirm_new
    at_hand = known(name, inv)
    if at_hand is not None:
        return at_hand
    path = secrets_path(inv)
    with _lock:
        held = _prompted.get(_key(name, path))  # asked meanwhile by another thread
        if held is not None:
            return held
        value = _prompt(name, path, yes=yes, new=new)
        _prompted[_key(name, path)] = value
        if path is not None and inv is not None and inv.secrets.get("save_prompted"):
            _pending[_key(name, path)] = (path, value)
        return value


def known(name: str, inv: Inventory | None = None) -> str | None:
    """The secret NAME if it is at hand without asking (env, secrets file, asked before in
    this run); None when only a prompt would give it."""
    env = os.environ.get(env_name(name))
    if env:
        return env
    path = secrets_path(inv)
    with _lock:
        if path is not None:
            val = read_secrets_file(path).get(name)
            if val:
                return val
        return _prompted.get(_key(name, path))


def _prompt(name: str, path: Path | None, *, yes: bool, new: bool) -> str:
    desc = DESCRIPTIONS.get(name, name.replace("_", " "))
    if not interactive(yes):
        where = f" or add {name} to {path} (mode 0600)" if path else ""
        raise SecretMissing(f"the {desc} is needed and this run cannot ask for it "
                            f"({'--yes' if yes else 'no terminal'}). "
                            f"Fix: set {env_name(name)}{where}")
    value = ask_password(f"{desc[0].upper() + desc[1:]}:")
    if new and ask_password("Again, to confirm:") != value:
        raise InputError(f"the two entries of the {desc} differ; nothing was changed. "
                         "Fix: run again and type the same value twice")
    if not value:
        raise InputError(f"the {desc} is empty. Fix: give a non-empty value")
    return value


def accepted(name: str, inv: Inventory | None = None) -> None:
    """The value of NAME was proven (login succeeded, or it was set): save it if it was
    prompted and [secrets] save_prompted is true. No-op otherwise; safe to call again."""
    with _lock:
        pending = _pending.pop(_key(name, secrets_path(inv)), None)
        if pending is not None:
            write_secret(pending[0], name, pending[1])


def refused(name: str, inv: Inventory | None = None) -> None:
    """The value of NAME was refused: never save it, and ask again if asked again."""
    with _lock:
        _pending.pop(_key(name, secrets_path(inv)), None)
        _prompted.pop(_key(name, secrets_path(inv)), None)


def forget() -> None:
    """Drop every prompted value held by this process (tests; a new run)."""
    with _lock:
        _prompted.clear()
        _pending.clear()


def _drop_typed_ahead() -> None:
    """Forget keys typed while the step before ran: [tmux] "y" + Enter on a confirm (which
    takes "y" at once) left the Enter waiting, and it answered the NEXT stage's question
    a minute later with its default."""
    try:
        import termios

        from prompt_toolkit.input import create_input
        from prompt_toolkit.input.typeahead import clear_typeahead

        termios.tcflush(sys.stdin.fileno(), termios.TCIFLUSH)  # not read yet
        clear_typeahead(create_input())  # read by the last prompt, kept for the next one
    except (ImportError, OSError, ValueError, AttributeError):
        pass  # no terminal (tests, pipes): nothing typed ahead to drop


def ask_password(message: str) -> str:
    _drop_typed_ahead()
    return str(questionary.password(message).unsafe_ask())


def confirm(message: str, *, yes: bool = False, default: bool = True) -> bool:
    """Ask before a step; --yes answers `default` without asking. No TTY without --yes fails."""
    if yes:
        return default
    if not interactive():
        raise SecretMissing(f"'{message}' needs an answer and there is no terminal. "
                            "Fix: run with --yes")
    _drop_typed_ahead()
    return bool(questionary.confirm(message, default=default).unsafe_ask())


def mask(text: str, *secrets: Any) -> str:
    for s in secrets:
        if s:
            text = text.replace(str(s), "***")
    return text
