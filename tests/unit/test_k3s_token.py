"""k3s tokens: parsing/validation, the fingerprint, the datastore key, the hand-over choice."""
from __future__ import annotations

import hashlib

import pytest

from tasks.core.errors import InputError, Refused
from tasks.k3s import handover, token as tk

CA = "ab" * 32
SERVER = f"K10{CA}::server:s3cr3tPASSwordZ9yx"
NODE = f"K10{CA}::node:agentsecretQRST"


def test_full_server_token_parses() -> None:
    t = tk.parse_token(SERVER + "\n")
    assert (t.ca_hash, t.user, t.secret, t.full) == (CA, "server", "s3cr3tPASSwordZ9yx", True)


def test_bare_secret_parses() -> None:
    t = tk.parse_token("0123abcdef")
    assert (t.secret, t.ca_hash, t.full) == ("0123abcdef", "", False)


@pytest.mark.parametrize("bad,why", [
    ("", "empty"),
    ("   \n", "empty"),
    (f"K10{'ab' * 31}::server:x", "malformed"),  # 62 hex
    (f"K10{'AB' * 32}::server:x", "malformed"),  # upper-case hex
    (f"K10{CA}:server:x", "malformed"),
    (f"K10{CA}::server:", "malformed"),
    ("K10", "malformed"),
    ("two words", "malformed"),
    ("user::pass", "malformed"),
])
def test_bad_tokens_are_refused_with_the_format(bad: str, why: str) -> None:
    with pytest.raises(InputError, match=why) as e:
        tk.parse_token(bad)
    assert "K10<64 hex>::server:<secret>" in str(e.value)


def test_agent_token_where_a_server_token_is_needed_is_refused() -> None:
    with pytest.raises(InputError, match="'node' token where a 'server' token"):
        tk.parse_token(NODE)
    assert tk.parse_token(NODE, want_user="node").secret == "agentsecretQRST"


def test_fingerprint_shows_ca_prefix_and_last_four_only() -> None:
    t = tk.parse_token(SERVER)
    assert t.fingerprint() == f"K10{CA[:12]}...Z9yx"
    for shown in (t.fingerprint(), repr(t), str(t)):
        assert "s3cr3tPASSword" not in shown
    assert tk.parse_token("0123abcdef").fingerprint() == "bare...cdef"


def test_bootstrap_key_is_sha256_of_the_secret_part() -> None:
    # k3s: storageKey(normalizeToken(token)) = "/bootstrap/" + sha256(password)[:12]
    want = "/bootstrap/" + hashlib.sha256(b"s3cr3tPASSwordZ9yx").hexdigest()[:12]
    assert tk.bootstrap_key(tk.parse_token(SERVER)) == want
    # a bare secret and its full form share the key
    assert tk.bootstrap_key(tk.parse_token("s3cr3tPASSwordZ9yx")) == want
    assert want in tk.accepted_keys(tk.parse_token(SERVER))


def test_same_secret() -> None:
    full, bare = tk.parse_token(SERVER), tk.parse_token("s3cr3tPASSwordZ9yx")
    other_ca = tk.parse_token(f"K10{'cd' * 32}::server:s3cr3tPASSwordZ9yx")
    assert tk.same_secret(full, bare) and tk.same_secret(bare, full)
    assert not tk.same_secret(full, other_ca)
    assert not tk.same_secret(full, tk.parse_token("different"))


def test_choice_prefers_the_servers_token_and_refuses_a_differing_configured_one() -> None:
    server, same = tk.parse_token(SERVER), tk.parse_token("s3cr3tPASSwordZ9yx")
    kind = handover.Kind.SERVER
    assert handover.choose(server, None, "s1", kind) == handover.Choice(server,
                                                                         handover.Source.SERVER)
    assert handover.choose(server, same, "s1", kind).token is server
    assert handover.choose(None, same, "s1", kind).source is handover.Source.CONFIGURED
    assert handover.choose(None, None, "s1", kind).source is handover.Source.NEW
    with pytest.raises(Refused, match=r"differs from the token s1 runs with") as e:
        handover.choose(server, tk.parse_token("another"), "s1", kind)
    assert "s3cr3tPASSword" not in str(e.value) and "another" not in str(e.value)


def test_configured_token_from_env_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K3S_HA_K3S_TOKEN", "K10nothex::server:x")
    monkeypatch.delenv("K3S_HA_SECRETS", raising=False)
    with pytest.raises(InputError, match="K3S_HA_K3S_TOKEN.*malformed"):
        handover.configured(None, handover.Kind.SERVER)
    monkeypatch.setenv("K3S_HA_K3S_TOKEN", SERVER)
    assert handover.configured(None, handover.Kind.SERVER).secret == "s3cr3tPASSwordZ9yx"
