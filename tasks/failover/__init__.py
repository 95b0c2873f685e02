"""The failover drill (`fab failover.drill`, `fab failover.scenarios`): one module per job,
see tasks.py. Pure: scenarios, timeline, accounting, verdict, report's JSON/table.
"""
from invoke import Collection

from . import tasks

ns = Collection.from_module(tasks, name="failover")
