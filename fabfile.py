"""k3s-ha: build a highly available k3s cluster over SSH, and prove it survives failures.

`fab -l` lists the tasks; `fab --help TASK` documents each option.
The inventory is hosts.toml (or the file named by K3S_HA_INVENTORY).
"""
from invoke import Collection

from tasks import balancers, cluster, db, failover, k3s, lab

ns = Collection()
for pkg in (cluster, lab, balancers, db, k3s, failover):
    ns.add_collection(pkg.ns)
