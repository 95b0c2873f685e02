"""Guide step 2, the datastore: MySQL/MariaDB install, secure, configure, master-master
replication, users, status, checksums and the replication-aware health endpoint
(`fab db.*`). sql holds the per-dialect statements.
"""
from invoke import Collection

from . import tasks

ns = Collection.from_module(tasks, name="db")
