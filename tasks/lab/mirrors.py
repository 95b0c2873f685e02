"""Which Debian mirrors the lab uses: the machine's own deb822 sources (or [lab] mirror),
rendered as the hosts' sources and apt proxy settings. Pure, except reading the machine."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import InputError
from .procs import run

MACHINE_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
ACNG_PORT = 3142

Stanza = dict[str, list[str]]


def parse_deb822_sources(text: str) -> list[Stanza]:
    """Stanzas of a deb822 .sources file: [{"Types": [...], "URIs": [...], ...}]."""
    stanzas: list[Stanza] = []
    cur: Stanza = {}
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                stanzas.append(cur)
                cur = {}
            continue
        if ":" in line and not line[0].isspace():
            key, _, val = line.partition(":")
            cur[key.strip()] = val.split()
    return stanzas


def _is_security(st: Stanza) -> bool:
    return any("security" in s for s in st.get("Suites", []))


def mirror_sources(sources_text: str, override: str = "") -> list[Stanza]:
    """The machine's deb stanzas; `override` replaces the main (non-security) mirror URI."""
    out = []
    for st in parse_deb822_sources(sources_text):
        if "deb" not in st.get("Types", []) or not st.get("URIs"):
            continue
        st = dict(st)
        if override and not _is_security(st):
            st["URIs"] = [override.rstrip("/")]
        out.append(st)
    if not out:
        raise InputError(f"no deb source found in {MACHINE_SOURCES}. Fix: set lab.mirror "
                         "to a Debian mirror URL in the inventory")
    return out


def main_mirror(stanzas: list[Stanza]) -> str:
    for st in stanzas:
        if not _is_security(st):
            return st["URIs"][0].rstrip("/")
    return stanzas[0]["URIs"][0].rstrip("/")


def security_mirror(stanzas: list[Stanza]) -> str:
    for st in stanzas:
        if _is_security(st):
            return st["URIs"][0].rstrip("/")
    return ""


def render_sources(stanzas: list[Stanza], suite: str) -> str:
    """deb822 sources for a lab host: the machine's mirrors, with `suite` substituted."""
    base = next((s for st in stanzas for s in st.get("Suites", []) if "-" not in s), suite)
    blocks = []
    for st in stanzas:
        suites = [suite + s[len(base):] if s.startswith(base) else s
                  for s in st.get("Suites", [suite])]
        lines = ["Types: deb", f"URIs: {' '.join(st['URIs'])}", f"Suites: {' '.join(suites)}",
                 f"Components: {' '.join(st.get('Components', ['main']))}"]
        if st.get("Signed-By"):
            lines.append(f"Signed-By: {' '.join(st['Signed-By'])}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def render_apt_proxy(operator_address: str, port: int = ACNG_PORT,
                     check_valid_until: bool = True) -> str:
    out = f'Acquire::http::Proxy "http://{operator_address}:{port}";\n'
    out += 'Acquire::https::Proxy "DIRECT";\n'
    # give up on a silent connection and retry; this does not cover apt waiting forever
    # after apt-cacher-ng failed a concurrent index refresh (README, lab): the tasks run
    # apt-get update under `timeout` for that
    out += 'Acquire::http::Timeout "30";\nAcquire::Retries "3";\n'
    if not check_valid_until:
        out += 'Acquire::Check-Valid-Until "false";\n'
    return out


def machine_sources_text() -> str:
    try:
        return MACHINE_SOURCES.read_text()
    except OSError:
        return ""


def machine_check_valid_until() -> bool:
    res = run(["apt-config", "dump", "Acquire::Check-Valid-Until"], check=False)
    return '"false"' not in res.stdout
