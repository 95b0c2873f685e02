"""The k3s-ha lab's k3s stand-in. THIS IS NOT k3s.

k3s cannot be downloaded on the lab machine, so the lab installs this small Python program
as /usr/local/bin/k3s. It keeps k3s's contract where the k3s-ha tasks and the failover
drill can see it: the `k3s server` / `k3s agent` CLI (flags, K3S_* env vars, config.yaml),
the installer's files and systemd units, the token format and its CA-hash check, the node
password, HTTPS on :6443 with /ping, /cacerts, /readyz and enough of the Kubernetes API
for `kubectl get nodes`, and the state in MySQL/MariaDB in kine's table layout.

It does NOT run a kubelet, containers, pods, a scheduler, controllers, CNI/flannel,
CoreDNS, Traefik, etcd or sqlite, and it serves only nodes (plus the node-password
secrets and an empty pod list for `kubectl drain`). See README.md beside this file.

This package imports nothing from the rest of `tasks`: it runs alone on a lab host with
Debian 12's python3, the openssl CLI and the vendored pure-Python pymysql (see build.py).
"""

K3S_VERSION = "v1.31.5+k3s1"
VERSION_TEXT = (
    f"k3s version {K3S_VERSION} (standin)\n"
    "k3s-ha lab stand-in, NOT k3s: no kubelet, containers, pods or CNI (see its README)"
)
