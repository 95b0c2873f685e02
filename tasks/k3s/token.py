"""k3s join tokens (pure): parse and validate, the fingerprint that may be shown, and the
datastore key k3s derives from a token.

Full form `K10<sha256 hex of the cluster CA PEM>::<user>:<secret>`, user `server` for the
server token and `node` for the agent token; a bare secret is accepted as k3s does (it then
skips the CA check). k3s keeps its bootstrap data (the cluster CAs, encrypted with the
token's secret) in the datastore under `/bootstrap/<first 12 hex of sha256(secret)>`
(k3s pkg/cluster/encrypt.go storageKey/keyHash, with the passphrase normalized to the
password part of the token by storage.go normalizeToken). Older k3s hashed the whole
token string; k3s migrates such a key, so it counts as the same token.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from ..core.errors import InputError

TOKEN_FILE = "/var/lib/rancher/k3s/server/token"
AGENT_TOKEN_FILE = "/var/lib/rancher/k3s/server/agent-token"
_FULL = re.compile(r"K10([0-9a-f]{64})::([a-z]+):(\S+)")
_BARE = re.compile(r"[A-Za-z0-9._~+/=-]+")
FORMAT_HELP = "expected K10<64 hex>::server:<secret> (from the first server's " \
              f"{TOKEN_FILE}) or a bare secret (letters, digits, . _ ~ + / = -)"


@dataclass(frozen=True)
class Token:
    """A parsed token. `text` is the token as given (full or bare); never print it."""

    text: str
    secret: str
    ca_hash: str = ""  # "" for a bare secret
    user: str = ""  # "server" | "node" | "" (bare)

    @property
    def full(self) -> bool:
        return bool(self.ca_hash)

    def fingerprint(self) -> str:
        """What may be shown: the CA hash's first 12 hex and the secret's last 4 characters."""
        ca = f"K10{self.ca_hash[:12]}" if self.ca_hash else "bare"
        return f"{ca}...{self.secret[-4:]}"

    def __repr__(self) -> str:  # never leak through a traceback or a log
        return f"Token({self.fingerprint()})"

    __str__ = __repr__


def parse_token(text: str, *, want_user: str = "server", what: str = "k3s token") -> Token:
    """Validate a pasted or stored token; InputError naming the problem and the fix."""
    t = text.strip()
    if not t:
        raise InputError(f"the {what} is empty. Fix: {FORMAT_HELP}")
    if t.startswith("K10"):
        m = _FULL.fullmatch(t)
        if not m:
            raise InputError(f"the {what} is malformed (starts with K10 but is not "
                             f"K10<64 lower-case hex>::<user>:<secret>). Fix: {FORMAT_HELP}")
        if m.group(2) != want_user:
            raise InputError(f"the {what} is a '{m.group(2)}' token where a '{want_user}' "
                             f"token is needed. Fix: use the {want_user} token "
                             f"(K10...::{want_user}:...)")
        return Token(text=t, secret=m.group(3), ca_hash=m.group(1), user=m.group(2))
    if "::" in t or not _BARE.fullmatch(t):
        raise InputError(f"the {what} is malformed (not a K10 token, and not a bare secret). "
                         f"Fix: {FORMAT_HELP}")
    return Token(text=t, secret=t)


def key_hash(passphrase: str) -> str:
    return hashlib.sha256(passphrase.encode()).hexdigest()[:12]


def bootstrap_key(token: Token) -> str:
    """The kine key under which k3s stores the bootstrap data encrypted with this token."""
    return "/bootstrap/" + key_hash(token.secret)


def accepted_keys(token: Token) -> set[str]:
    """Keys a server with this token starts against: its own, the legacy whole-token key
    and the empty-passphrase key (both migrated by k3s)."""
    return {bootstrap_key(token), "/bootstrap/" + key_hash(token.text),
            "/bootstrap/" + key_hash("")}


def generate_secret() -> str:
    """A fresh bare secret for a first server that has none yet (32 hex, like k3s's)."""
    return secrets.token_hex(16)


def same_secret(a: Token, b: Token) -> bool:
    """True when two tokens authenticate the same (a bare secret matches its full form)."""
    return a.secret == b.secret and (not a.ca_hash or not b.ca_hash or a.ca_hash == b.ca_hash)
