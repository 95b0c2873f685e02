"""The token hand-over the guide does by hand: which token the next nodes get.

Sources, in order: the token the first server runs with (its token file, else the
K3S_TOKEN of its environment file), a configured secret (K3S_HA_K3S_TOKEN or the secrets
file), a pasted one, or a new one for a first server that has none. Only the fingerprint
is ever shown; the token never reaches argv, logs or output.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum

from fabric import Connection

from ..core import secrets
from ..core.cli import say
from ..core.errors import Refused
from ..core.inventory import Inventory
from ..core.ssh import host_name, read_file
from .config import Role, parse_env
from .token import AGENT_TOKEN_FILE, TOKEN_FILE, Token, generate_secret, parse_token, same_secret


class Kind(Enum):
    """The server token (servers, and agents by default) or the separate agent token."""

    SERVER = ("k3s_token", TOKEN_FILE, "K3S_TOKEN", "server")
    AGENT = ("k3s_agent_token", AGENT_TOKEN_FILE, "K3S_AGENT_TOKEN", "node")

    def __init__(self, secret: str, path: str, env_var: str, user: str):
        self.secret, self.path, self.env_var, self.user = secret, path, env_var, user


class Source(Enum):
    SERVER = "the first server"
    CONFIGURED = "configured secret"
    NEW = "new"


@dataclass(frozen=True)
class Choice:
    token: Token | None  # None: ask the operator (confirm / paste)
    source: Source


def configured(inv: Inventory | None, kind: Kind) -> Token | None:
    """The token from K3S_HA_<NAME> or the secrets file, without prompting."""
    text = os.environ.get(secrets.env_name(kind.secret), "")
    path = secrets.secrets_path(inv)
    if not text and path is not None:
        text = secrets.read_secrets_file(path).get(kind.secret, "")
    where = secrets.env_name(kind.secret) if os.environ.get(secrets.env_name(kind.secret)) \
        else f"the secrets file ({kind.secret})"
    return parse_token(text, want_user=kind.user, what=f"token in {where}") if text else None


def on_server(conn: Connection, kind: Kind) -> Token | None:
    """The token the first server runs with: its token file, else its environment file."""
    data = read_file(conn, kind.path)
    what = f"token in {host_name(conn)}:{kind.path}"
    if data and data.strip():
        return parse_token(data.decode(), want_user=kind.user, what=what)
    env = parse_env((read_file(conn, Role.SERVER.env_path) or b"").decode())
    text = env.get(kind.env_var, "")
    return parse_token(text, want_user=kind.user, what=f"{kind.env_var} on "
                       f"{host_name(conn)}") if text else None


def choose(server: Token | None, conf: Token | None, first: str, kind: Kind) -> Choice:
    """Pure: the server's token wins; a configured one that differs is refused."""
    if server is not None and conf is not None and not same_secret(server, conf):
        raise Refused(
            f"the {kind.secret} configured ({conf.fingerprint()}) differs from the token "
            f"{first} runs with ({server.fingerprint()}); nodes given the configured one would "
            f"be refused. Fix: remove {secrets.env_name(kind.secret)} / {kind.secret} from the "
            "secrets file (the server's token is then used), or set it to the server's token")
    if server is not None:
        return Choice(server, Source.SERVER)
    if conf is not None:
        return Choice(conf, Source.CONFIGURED)
    return Choice(None, Source.NEW)


def token_for(inv: Inventory, first_conn: Connection, kind: Kind, *, yes: bool) -> Token:
    """The token to hand to the next nodes, confirmed by its fingerprint when interactive."""
    first = host_name(first_conn)
    choice = choose(on_server(first_conn, kind), configured(inv, kind), first, kind)
    label = "agent token" if kind is Kind.AGENT else "k3s token"
    if choice.token is not None:
        shown = choice.token.fingerprint()
        if choice.source is Source.SERVER and secrets.interactive(yes) and not secrets.confirm(
                f"Use the {label} of {first} ({shown})?", yes=yes):
            return ask_token(kind)
        say(f"  {label}: {shown} (from {choice.source.value})")
        return choice.token
    if secrets.interactive(yes) and not secrets.confirm(
            f"{first} has no {label} yet: generate a new one?", yes=yes):
        return ask_token(kind)
    token = parse_token(generate_secret(), want_user=kind.user)
    say(f"  {label}: {token.fingerprint()} (new, for {first})")
    return token


def ask_token(kind: Kind) -> Token:
    """A pasted token, validated (questionary password prompt: never echoed)."""
    text = secrets.ask_password(f"Paste the {'agent' if kind is Kind.AGENT else 'k3s'} token:")
    return parse_token(text, want_user=kind.user, what="pasted token")
