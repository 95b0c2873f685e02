#!/bin/sh
# Managed by k3s-ha: keepalived runs this on every VRRP transition with
# TYPE NAME STATE PRIORITY. The last transition it saw lands in /run/k3s-ha/vrrp-NAME:
# a hint for people only. A reload that keeps an instance's state runs no script, so
# `fab balancers.status` asks keepalived itself (its SIGUSR1 data dump) instead.
set -eu
dir=/run/k3s-ha
mkdir -p "$dir"
printf '%s %s\n' "$3" "$(date +%s)" > "$dir/.vrrp-$2.tmp"
mv -f "$dir/.vrrp-$2.tmp" "$dir/vrrp-$2"
