"""Namespace `lab`: the test bed of containers described by the inventory's [lab] table.

Thin: the engine is tasks/lab/engine.py (up/down/status) over one module per job;
tasks/lab/labnet.py is the import surface for tests, benchmarks and the drill.
"""
from __future__ import annotations

import subprocess

from invoke import Context, Exit

from ..core import inventory
from ..core.cli import k3s_task, say, table
from ..core.errors import InputError
from . import engine, image
from .access import ssh_argv
from .names import lab_name

H_UP_YES = ("never prompt: refuse (exit 2) instead of asking to stop a lab of the same "
            "name started from another inventory")


@k3s_task(help={"yes": H_UP_YES})
def up(c: Context, yes: bool = False) -> None:
    """Build (cached image) and boot every lab host; a no-op when the lab is already up."""
    engine.up(inventory.load(), log=say, yes=yes)


@k3s_task(help={"purge": "also delete the cached image(s) in " + str(image.IMAGE_CACHE)})
def down(c: Context, purge: bool = False) -> None:
    """Stop the lab and remove its namespaces, veths, mounts, overlays and processes."""
    engine.down(inventory.load(), purge=purge, log=say)


@k3s_task(help={})
def status(c: Context) -> None:
    """Show each lab host: running, init pid, switch port, SSH answering."""
    inv = inventory.load()
    hosts = engine.status(inv)
    rows = [{"host": s.name, "address": s.address, "running": "yes" if s.running else "no",
             "pid": s.pid or "-", "port": str(s.port), "ssh": "yes" if s.ssh else "no"}
            for s in hosts]
    say(table(rows, ["host", "address", "running", "pid", "port", "ssh"]))
    up_count = sum(1 for s in hosts if s.ssh)
    say(f"lab {lab_name(inv)}: {up_count}/{len(rows)} hosts answering SSH")


@k3s_task(help={"name": "host name from the inventory, e.g. k3s-db-01",
                "command": "run this command instead of an interactive shell"})
def ssh(c: Context, name: str, command: str = "") -> None:
    """Open an SSH session to a lab host (lab key, strict host-key checking)."""
    if name.startswith("-"):  # `fab lab.ssh --help` hands "--help" over as the host name
        raise InputError(f"'{name}' is not a host name. Usage: fab lab.ssh NAME "
                         "[-c COMMAND]; options: fab --help lab.ssh")
    argv = ssh_argv(inventory.load(), name, [command] if command else None)
    if not command:
        argv.insert(1, "-t")
    code = subprocess.call(argv)
    if code != 0:
        raise Exit(code=code)
