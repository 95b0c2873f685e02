"""The whole cluster at once: preflight (`cluster.check`), the guide's steps in order
(`cluster.deploy`) and one status view across tiers (`cluster.status`).
"""
from invoke import Collection

from . import tasks

ns = Collection.from_module(tasks, name="cluster")
