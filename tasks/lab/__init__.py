"""The lab: the inventory's hosts as systemd-nspawn containers in network namespaces on this
machine (`fab lab.up/down/status/ssh`), and the fault API the tests and the drill use to
break them. labnet does the work; tasks is the thin `lab.*` namespace.
"""
from invoke import Collection

from . import tasks

ns = Collection.from_module(tasks, name="lab")
