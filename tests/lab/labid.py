"""A lab name and subnet of this test run's own, for each lab test module and benchmark.

Fixed names made a benchmark's `lab.down` sweep a running test's lab (and two runs of one
module stop each other's). `claim(tag, preferred)` gives `tag` + three random characters
(a [lab] name is at most five), checked against the labs running on this machine, and the
preferred /24 when no route on this machine and no claim of a live process holds it, else
the next free one. Claims are files, /run/k3s-ha-labs/claims/<subnet> holding the claimer's
pid, made with O_EXCL: modules claim when imported and bring their labs up minutes later,
so two runs side by side (a benchmark and `make test`, two pytest runs) must see each
other's claims before any route exists [CI: two runs took the same /24 and every test of
two modules failed]. A claim of a dead process is taken over; a process removes its own
claims when it exits. A killed run leaves its lab behind under its own name: the next run
picks other names and subnets; `fab lab.down` with the left inventory (its path is in
/run/k3s-ha-labs/NAME.owner) removes it.
"""
from __future__ import annotations

import atexit
import os
import random
import string
from pathlib import Path

from tasks.lab import network

_CLAIMED: set[str] = set()  # subnets given out by this process (their labs may not be up yet)
CLAIMS = Path("/run/k3s-ha-labs/claims")
_ALPHABET = string.ascii_lowercase + string.digits


def _running() -> set[str]:
    return {ns[:-len("-sw")] for ns in network.list_netns() if ns.endswith("-sw")}


def fresh_name(tag: str) -> str:
    """A lab name no running lab has (for a lab that must clash on its subnet)."""
    return _name(tag, _running())


def _name(tag: str, running: set[str]) -> str:
    for _ in range(100):
        name = tag + "".join(random.choices(_ALPHABET, k=5 - len(tag)))
        if name not in running:
            return name
    raise RuntimeError(f"no free lab name with prefix {tag}")


SHIPPED = "10.77.0"  # the shipped hosts.toml's lab (make demo): never taken by a test


def _subnets(preferred: str):
    """The preferred /24, then the ones after it (10.77.50 -> 10.77.51 ... 10.254.254)."""
    a, b, c = (int(x) for x in preferred.split("."))
    for x in range(b, 255):
        for y in range(c if x == b else 0, 255):
            if f"{a}.{x}.{y}" != SHIPPED:
                yield f"{a}.{x}.{y}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take(net: str, folder: Path = CLAIMS) -> bool:
    """Claim `net` for this process across processes; False if a live process holds it.
    Without the folder (not root: no lab anyway) only this process's own claims count."""
    path = folder / net
    for _ in range(3):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                holder = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and (holder == os.getpid() or _alive(holder)):
                return False
            path.unlink(missing_ok=True)  # a dead process's claim (or a torn one)
            continue
        except OSError:
            return True
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        atexit.register(path.unlink, missing_ok=True)
        return True
    return False


def claim(tag: str, preferred: str) -> tuple[str, str]:
    """(name, first three numbers of a free /24), e.g. ("k3q7z", "10.77.30")."""
    assert tag[:1].isalpha() and len(tag) <= 3, tag
    running = _running()
    routes = network.machine_routes()
    for net in _subnets(preferred):
        if net in _CLAIMED or network.route_overlap(f"{net}.0/24", routes, "") is not None:
            continue
        if not _take(net):
            continue
        _CLAIMED.add(net)
        return _name(tag, running), net
    raise RuntimeError(f"no free /24 after {preferred}")
