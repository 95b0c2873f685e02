"""Answering tasks/core/lookahead.py's one-round-trip script from a fake host's state, so
the fakes of the unit tests keep describing hosts (files, units) rather than commands."""
from __future__ import annotations

import base64
import re
import shlex
from typing import Callable

from tasks.core.lookahead import MARK

SECTION = re.compile(rf"echo '{MARK} (\w+) (\d+)'; (.*?)(?=; echo '{MARK} |; true$)")


def asked(command: str) -> list[tuple[str, int, str]]:
    """(kind, number, path or unit) of each section of a look-ahead script."""
    out = []
    for kind, i, body in SECTION.findall(command):
        words = shlex.split(body.replace(";", " ; "))
        if kind == "unit":  # ... ; systemctl is-active UNIT
            key = words[-1]
        else:  # [if] test -e|-f PATH ...
            key = words[words.index("test") + 2]
        out.append((kind, int(i), key))
    return out


def answer(command: str, *, file: Callable[[str], str | bytes | None],
           unit: Callable[[str], tuple[str, str]] = lambda u: ("", "inactive"),
           sha: Callable[[str], str] = lambda p: "",
           mode: Callable[[str], str] = lambda p: "600") -> str:
    """The script's output: file(path) is the content (None: absent), also used for stats
    (with mode(path), owner root); unit(name) is (is-enabled, is-active); sha(path) a sum
    ("" absent)."""
    lines = []
    for kind, i, key in asked(command):
        lines.append(f"{MARK} {kind} {i}")
        if kind in ("file", "stat"):
            data = file(key)
            if data is not None:
                raw = data.encode() if isinstance(data, str) else data
                lines.append(f"{mode(key)} root root {len(raw)} regular file")
                if kind == "file":
                    lines.append(base64.b64encode(raw).decode())
        elif kind == "sum":
            if sha(key):
                lines.append(f"{sha(key)}  {key}")
        else:
            enabled, active = unit(key)
            lines += [enabled, active]
    return "\n".join(lines) + "\n"


def is_look(command: str) -> bool:
    return command.startswith(f"echo '{MARK} ")
