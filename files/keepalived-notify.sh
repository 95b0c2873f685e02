#!/bin/sh
# Managed by k3s-ha: keepalived runs this on every VRRP transition with
# TYPE NAME STATE PRIORITY. The state and the time it was entered land in
# /run/k3s-ha/vrrp-NAME, which `fab balancers.status` reads.
set -eu
dir=/run/k3s-ha
mkdir -p "$dir"
printf '%s %s\n' "$3" "$(date +%s)" > "$dir/.vrrp-$2.tmp"
mv -f "$dir/.vrrp-$2.tmp" "$dir/vrrp-$2"
