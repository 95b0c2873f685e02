"""Tokens as k3s writes and checks them, and the sealing of the bootstrap data.

Full form `K10<sha256 hex of the cluster CA PEM>::<role>:<secret>`, role `server` (the
server token) or `node` (the agent token). A bare secret is accepted like k3s (no CA check).
The bootstrap data (the CAs) is sealed with the token secret; k3s uses AES-GCM, the stand-in
uses only the standard library: PBKDF2 -> HMAC-SHA256 in counter mode + an HMAC tag.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass

CA_MISMATCH = "token CA hash does not match the Cluster CA certificate hash"
DIFFERENT_TOKEN = "bootstrap data already found and encrypted with different token"
_FULL = re.compile(r"K10([0-9a-f]{64})::(server|node):(\S+)")


class TokenError(Exception):
    """A token that is malformed, or that does not fit the cluster."""


@dataclass(frozen=True)
class Token:
    secret: str
    ca_hash: str | None = None  # None for a bare secret
    role: str | None = None  # "server", "node", or None for a bare secret

    def fingerprint(self) -> str:
        """What may be shown: the CA hash prefix and the secret's last 4 characters."""
        ca = self.ca_hash[:12] if self.ca_hash else "(bare)"
        return f"K10{ca}...{self.secret[-4:]}"


def parse_token(text: str) -> Token:
    text = text.strip()
    if not text:
        raise TokenError("the token is empty")
    if text.startswith("K10"):
        m = _FULL.fullmatch(text)
        if not m:
            raise TokenError("invalid token format: expected K10<64 hex>::server:<secret> "
                             "or K10<64 hex>::node:<secret>")
        return Token(secret=m.group(3), ca_hash=m.group(1), role=m.group(2))
    if any(c.isspace() for c in text):
        raise TokenError("invalid token: a bare token must not contain whitespace")
    return Token(secret=text)


def ca_hash(ca_pem: bytes) -> str:
    return hashlib.sha256(ca_pem).hexdigest()


def format_token(ca_pem: bytes, role: str, secret: str) -> str:
    return f"K10{ca_hash(ca_pem)}::{role}:{secret}"


def check_ca(token: Token, ca_pem: bytes) -> None:
    """Raise k3s's message when a full token names another CA (bare tokens pass)."""
    if token.ca_hash and not hmac.compare_digest(token.ca_hash, ca_hash(ca_pem)):
        raise TokenError(CA_MISMATCH)


def generate_secret() -> str:
    return secrets.token_hex(16)


def bootstrap_key(secret: str) -> str:
    """The kine key holding the sealed bootstrap data for this secret."""
    return "/bootstrap/" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def _keys(secret: str, salt: bytes) -> tuple[bytes, bytes]:
    k = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, 20000, 64)
    return k[:32], k[32:]


def _stream(key: bytes, n: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha256).digest()
        counter += 1
    return bytes(out[:n])


def seal(secret: str, plaintext: bytes) -> bytes:
    salt = os.urandom(16)
    enc, mac = _keys(secret, salt)
    ct = bytes(a ^ b for a, b in zip(plaintext, _stream(enc, len(plaintext))))
    tag = hmac.new(mac, salt + ct, hashlib.sha256).digest()
    return b"standin1" + salt + ct + tag


def unseal(secret: str, blob: bytes) -> bytes:
    """Open sealed bootstrap data; a wrong secret raises k3s's different-token message."""
    if not blob.startswith(b"standin1") or len(blob) < 8 + 16 + 32:
        raise TokenError("bootstrap data is not in the stand-in's format")
    salt, ct, tag = blob[8:24], blob[24:-32], blob[-32:]
    enc, mac = _keys(secret, salt)
    if not hmac.compare_digest(tag, hmac.new(mac, salt + ct, hashlib.sha256).digest()):
        raise TokenError(DIFFERENT_TOKEN)
    return bytes(a ^ b for a, b in zip(ct, _stream(enc, len(ct))))
