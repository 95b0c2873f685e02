"""Namespace `lab`: the test bed of containers described by the inventory's [lab] table.

The machinery is in tasks/labnet.py (also the fault API for tests and the drill).
"""
from __future__ import annotations

import subprocess

from invoke import Context, Exit

from ..core import inventory
from . import labnet
from ..core.errors import InputError
from ..core.cli import k3s_task, say, table


@k3s_task(help={})
def up(c: Context) -> None:
    """Build (cached image) and boot every lab host; a no-op when the lab is already up."""
    inv = inventory.load()
    labnet.up(inv, log=say)


@k3s_task(help={"purge": "also delete the cached image(s) in " + str(labnet.IMAGE_CACHE)})
def down(c: Context, purge: bool = False) -> None:
    """Stop the lab and remove its namespaces, veths, mounts, overlays and processes."""
    inv = inventory.load()
    labnet.down(inv, purge=purge, log=say)


@k3s_task(help={})
def status(c: Context) -> None:
    """Show each lab host: running, init pid, switch port, SSH answering."""
    inv = inventory.load()
    hosts = labnet.status(inv)
    rows = [{"host": s.name, "address": s.address, "running": "yes" if s.running else "no",
             "pid": s.pid or "-", "port": s.port, "ssh": "yes" if s.ssh else "no"}
            for s in hosts]
    say(table(rows, ["host", "address", "running", "pid", "port", "ssh"]))
    up_count = sum(1 for s in hosts if s.ssh)
    say(f"lab {labnet.lab_name(inv)}: {up_count}/{len(rows)} hosts answering SSH")


@k3s_task(help={"name": "host name from the inventory, e.g. k3s-db-01",
                "command": "run this command instead of an interactive shell"})
def ssh(c: Context, name: str, command: str = "") -> None:
    """Open an SSH session to a lab host (lab key, strict host-key checking)."""
    if name.startswith("-"):  # `fab lab.ssh --help` hands "--help" over as the host name
        raise InputError(f"'{name}' is not a host name. Usage: fab lab.ssh NAME "
                         "[-c COMMAND]; options: fab --help lab.ssh")
    inv = inventory.load()
    argv = labnet.ssh_argv(inv, name, [command] if command else None)
    if not command:
        argv.insert(1, "-t")
    code = subprocess.call(argv)
    if code != 0:
        raise Exit(code=code)
