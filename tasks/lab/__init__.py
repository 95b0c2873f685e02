"""The lab: the inventory's hosts as systemd-nspawn containers in network namespaces on this
machine (`fab lab.up/down/status/ssh`), and the fault API the tests and the drill use to
break them. `tasks` is the thin `lab.*` namespace over `engine` and one module per job;
`labnet` is the stable import surface (its docstring maps the modules).
"""
from invoke import Collection

from . import tasks

ns = Collection.from_module(tasks, name="lab")
