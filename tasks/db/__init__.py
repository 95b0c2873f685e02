"""Guide step 2, the datastore (`fab db.*`): MySQL/MariaDB install, secure, configure,
master-master replication, users, status, checksums and the replication-aware health
endpoint. `tasks` reads top-down like the guide's step; below it, one job per module:
`session` (pymysql over an SSH channel, the admin login, the Node model), `replication`
(the typed plan and its executor), `seed` (consistent dump seeding), `accounts`
(secure installation, address-limited accounts), `health` (the HTTP endpoint and fence),
`operate` (db.switchover, db.rejoin) and `sql`
(per-dialect statements). What the servers report is read by tasks/facts/mysql.py; which
node takes the writes, by tasks/facts/datastore.py.
"""
from typing import Any


def __getattr__(name: str) -> Any:
    """`ns` is built on first use, not at import: the observation layer (tasks/facts)
    imports `tasks.db.sql`, and importing the task modules here made that a cycle
    (facts.mysql -> db -> db.tasks -> db.health -> facts.mysql)."""
    if name != "ns":
        raise AttributeError(name)
    from invoke import Collection

    from . import operate, tasks

    ns = Collection.from_module(tasks, name="db")
    ns.add_task(operate.switchover)
    ns.add_task(operate.rejoin)
    globals()["ns"] = ns
    return ns
