#!/bin/sh
# Install what the lab needs on a Debian machine (idempotent: only missing packages,
# `apt-get update` only when something is missing). Run as root.
set -eu

PACKAGES="debootstrap systemd-container nftables apt-cacher-ng iproute2 openssh-client"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "lab deps: all installed ($PACKAGES)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "lab deps: missing:$missing; run this script as root" >&2
    exit 2
fi

echo "lab deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# apt-cacher-ng asks whether to allow HTTP tunnels; the lab runs its own instances
echo "apt-cacher-ng apt-cacher-ng/tunnelenable boolean false" | debconf-set-selections
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
# The package may start a machine-wide apt-cacher-ng on *:3142, which would take the port
# from the lab's own instances (each lab runs one bound to its operator address).
case " $missing " in
*" apt-cacher-ng "*)
    if [ -x /etc/init.d/apt-cacher-ng ]; then
        /etc/init.d/apt-cacher-ng stop >/dev/null 2>&1 || true
        update-rc.d apt-cacher-ng disable >/dev/null 2>&1 || true
    fi
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now apt-cacher-ng >/dev/null 2>&1 || true
    fi
    ;;
esac
echo "lab deps: done"
