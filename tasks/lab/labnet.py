"""The lab's stable import surface: `from tasks.lab import labnet` (tests, benchmarks, the
coming failover drill). The work is done by one module per job:

  names       names of namespaces, veths, bridge, state folders; the lab guard
  procs       commands, the process table, pids in a netns, kill and wait
  mirrors     the machine's Debian mirrors as the hosts' apt sources (pure)
  image       the debootstrapped image, cached per suite + packages (build, purge)
  network     switch namespace, bridge, veths, routes, the subnet check
  containers  overlays, files written into a host, systemd-nspawn start/stop, wait_ssh
  aptcache    one apt-cacher-ng per lab
  access      the lab SSH key, known_hosts, ssh command line, the lab's secrets file
  faults      power_off/on, partition/heal, link_down/up, loss/clear_loss: the ONLY way
              to break the lab
  engine      up / down / status

IMAGE_CACHE is re-exported for reading; to point the cache elsewhere, set
tasks.lab.image.IMAGE_CACHE (or K3S_HA_IMAGE_CACHE before the import).
"""
from __future__ import annotations

from .access import (SECRET_KEYS, check_route, ensure_secrets, ensure_ssh_key,
                     known_hosts_lines, known_hosts_path, merge_known_hosts, render_secrets,
                     ssh_argv)
from .aptcache import render_acng_conf
from .containers import (INOTIFY_LIMITS, is_running, render_hosts, safe_mount_path,
                         ssh_banner, wait_ssh)
from .engine import HostStatus, UpResult, down, status, up
from .faults import (clear_loss, heal, link_down, link_up, loss, partition, power_off,
                     nft_table, parse_loss, power_on,
                     render_nft)
from .image import (BASE_PACKAGES, IMAGE_CACHE, ensure_image, image_key, image_packages,
                    image_path, purge_images)
from .mirrors import (ACNG_PORT, main_mirror, mirror_sources, render_apt_proxy,
                      render_sources, security_mirror)
from .names import (HOST_IFACE, HOST_KEY_TYPES, bridge_name, host_dir, host_ns, host_port,
                    lab_name, op_dev, port_name, require_lab, state_dir,
                    switch_ns)
from .network import (Port, check_subnet, free_subnet, machine_routes, op_peer,
                      route_overlap)

__all__ = [
    "SECRET_KEYS", "check_route", "ensure_secrets", "ensure_ssh_key", "known_hosts_lines",
    "known_hosts_path", "merge_known_hosts", "render_secrets", "ssh_argv",
    "render_acng_conf", "INOTIFY_LIMITS", "is_running", "render_hosts",
    "safe_mount_path", "ssh_banner", "wait_ssh",
    "HostStatus", "UpResult", "down", "status", "up", "clear_loss", "heal", "link_down",
    "link_up", "loss", "partition", "parse_loss", "power_off", "power_on", "render_nft",
    "BASE_PACKAGES",
    "IMAGE_CACHE", "ensure_image", "image_key", "image_packages", "image_path",
    "purge_images", "ACNG_PORT", "main_mirror", "mirror_sources", "render_apt_proxy",
    "render_sources", "security_mirror", "HOST_IFACE", "HOST_KEY_TYPES", "bridge_name",
    "host_dir", "host_ns", "host_port", "lab_name", "nft_table", "op_dev", "op_peer",
    "port_name", "require_lab", "state_dir", "switch_ns", "Port", "check_subnet",
    "free_subnet", "machine_routes", "route_overlap",
]
