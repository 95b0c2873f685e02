"""Guide steps 3-4, k3s: servers on the MySQL datastore through its VIP (the first, then the
others with its token), agents through the API VIP, the token hand-over, node status,
the kubeconfig, node removal (`fab k3s.*`). config renders what a node is given (pure),
token parses tokens (pure), install gets k3s onto a host, handover picks the token,
bootstrap checks the datastore's token, nodes brings one node to its state, stages are the
server and agent steps `cluster.deploy` shares.
"""
from invoke import Collection

from . import tasks

ns = Collection.from_module(tasks, name="k3s")
