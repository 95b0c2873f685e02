"""The lab: Debian hosts as systemd-nspawn containers in network namespaces (no tasks here).

One lab instance = the inventory's [lab] table. Its `name` (1-5 chars) prefixes every
namespace, veth, bridge, nft table and state folder, so labs with different names and
subnets run side by side:

  root namespace   <name>-op  (operator_address/prefix; fab and tests talk through it)
  <name>-sw        the "switch": bridge <name>-br, ports <name>-p<i> (one per host),
                   <name>-po (the operator's port), nft table bridge <name>_lab (faults)
  <name>-h-<host>  one per host: lo + host0 (the host's address), systemd-nspawn inside

Files:
  /var/cache/k3s-ha/images/<suite>-<hash>/   cached rootfs (debootstrap), shared, read-only
                                             lowerdir of every overlay (K3S_HA_IMAGE_CACHE
                                             overrides the folder)
  <inventory dir>/.lab/<name>/               state: per-host overlay (upper/work/merged),
                                             container logs, apt-cacher-ng conf/cache/log
  [ssh] key, [ssh] known_hosts, [secrets] file    where the inventory says

Pure functions (render_*, route_overlap, image_key, ...) are unit-tested without root.
"""
from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import secrets as pysecrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..core.errors import InputError, Refused, StepFailed
from ..core.inventory import Host, Inventory

IMAGE_CACHE = Path(os.environ.get("K3S_HA_IMAGE_CACHE", "/var/cache/k3s-ha/images"))
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "curl",
                 "ca-certificates", "iproute2", "sudo")
ACNG_PORT = 3142
HOST_IFACE = "host0"
# systemd in every container takes inotify instances: Debian's 128 per user is exhausted
# by ~12 booted hosts ("Failed to create inotify object: Too many open files", no sshd)
INOTIFY_LIMITS = {"fs.inotify.max_user_instances": 8192,
                  "fs.inotify.max_user_watches": 524288}
INOTIFY_SAVED = Path("/run/k3s-ha-lab-sysctl.json")
OWNERS = Path("/run/k3s-ha-labs")  # <name>.owner: the inventory file that started the lab
MACHINE_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
SECRET_KEYS = ("db_admin_password", "replication_password", "k3s_db_password", "k3s_token")
HOST_KEY_TYPES = ("ed25519", "ecdsa")
# masked in the image: a timer holding the dpkg lock would break the tasks' apt-get
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service",
                "apt-daily-upgrade.service", "e2scrub_all.timer", "fstrim.timer")

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ------------------------------------------------------------------ names (pure)
def lab_name(inv: Inventory) -> str:
    return str(inv.lab["name"])


def switch_ns(name: str) -> str:
    return f"{name}-sw"


def host_ns(name: str, host: str) -> str:
    return f"{name}-h-{host}"


def bridge_name(name: str) -> str:
    return f"{name}-br"


def op_dev(name: str) -> str:
    return f"{name}-op"


def op_peer(name: str) -> str:
    return f"{name}-po"


def port_name(name: str, index: int) -> str:
    return f"{name}-p{index}"


def nft_table(name: str) -> str:
    return f"{name}_lab"


def host_port(inv: Inventory, host: str) -> str:
    """The switch-side veth of `host` (in the switch namespace)."""
    inv.host(host)
    return port_name(lab_name(inv), list(inv.hosts).index(host))


def state_dir(inv: Inventory) -> Path:
    return inv.path.parent.resolve() / ".lab" / lab_name(inv)


def host_dir(inv: Inventory, host: str) -> Path:
    return state_dir(inv) / "hosts" / host


def image_key(suite: str, packages: Iterable[str]) -> str:
    """Cache key of an image: suite + sorted package list."""
    pk = sorted(set(packages))
    digest = hashlib.sha256(("\n".join([suite] + pk)).encode()).hexdigest()[:12]
    return f"{suite}-{digest}"


def image_packages(inv: Inventory) -> list[str]:
    return sorted(set(BASE_PACKAGES) | {str(p) for p in inv.lab["extra_packages"]})


def image_path(inv: Inventory) -> Path:
    return IMAGE_CACHE / image_key(inv.lab["suite"], image_packages(inv))


# ------------------------------------------------------------------ rendering (pure)
def parse_deb822_sources(text: str) -> list[dict[str, list[str]]]:
    """Stanzas of a deb822 .sources file: [{"Types": [...], "URIs": [...], ...}]."""
    stanzas: list[dict[str, list[str]]] = []
    cur: dict[str, list[str]] = {}
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                stanzas.append(cur)
                cur = {}
            continue
        if ":" in line and not line[0].isspace():
            key, _, val = line.partition(":")
            cur[key.strip()] = val.split()
    return stanzas


def mirror_sources(sources_text: str, override: str = "") -> list[dict[str, list[str]]]:
    """The machine's deb stanzas; `override` replaces the main (non-security) mirror URI."""
    out = []
    for st in parse_deb822_sources(sources_text):
        if "deb" not in st.get("Types", []) or not st.get("URIs"):
            continue
        st = dict(st)
        if override and not any("security" in s for s in st.get("Suites", [])):
            st["URIs"] = [override.rstrip("/")]
        out.append(st)
    if not out:
        raise InputError(f"no deb source found in {MACHINE_SOURCES}. Fix: set lab.mirror "
                         "to a Debian mirror URL in the inventory")
    return out


def main_mirror(stanzas: list[dict[str, list[str]]]) -> str:
    for st in stanzas:
        if not any("security" in s for s in st.get("Suites", [])):
            return st["URIs"][0].rstrip("/")
    return stanzas[0]["URIs"][0].rstrip("/")


def security_mirror(stanzas: list[dict[str, list[str]]]) -> str:
    for st in stanzas:
        if any("security" in s for s in st.get("Suites", [])):
            return st["URIs"][0].rstrip("/")
    return ""


def render_sources(stanzas: list[dict[str, list[str]]], suite: str) -> str:
    """deb822 sources for a lab host: the machine's mirrors, with `suite` substituted."""
    base = next((s for st in stanzas for s in st.get("Suites", []) if "-" not in s), suite)
    blocks = []
    for st in stanzas:
        suites = [suite + s[len(base):] if s.startswith(base) else s
                  for s in st.get("Suites", [suite])]
        lines = ["Types: deb", f"URIs: {' '.join(st['URIs'])}", f"Suites: {' '.join(suites)}",
                 f"Components: {' '.join(st.get('Components', ['main']))}"]
        if st.get("Signed-By"):
            lines.append(f"Signed-By: {' '.join(st['Signed-By'])}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def render_apt_proxy(operator_address: str, port: int = ACNG_PORT,
                     check_valid_until: bool = True) -> str:
    out = f'Acquire::http::Proxy "http://{operator_address}:{port}";\n'
    out += 'Acquire::https::Proxy "DIRECT";\n'
    # give up on a silent connection and retry; this does not cover apt waiting forever
    # after apt-cacher-ng failed a concurrent index refresh (README, lab): the tasks run
    # apt-get update under `timeout` for that
    out += 'Acquire::http::Timeout "30";\nAcquire::Retries "3";\n'
    if not check_valid_until:
        out += 'Acquire::Check-Valid-Until "false";\n'
    return out


def render_hosts(inv: Inventory) -> str:
    """/etc/hosts of every lab host: every host and VIP as `ADDR NAME NAME.domain`."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", ""]
    for h in inv.hosts.values():
        lines.append(f"{h.address}\t{h.name} {inv.fqdn(h.name)}".rstrip())
    for v in inv.vips.values():
        if v.name:
            lines.append(f"{v.address}\t{v.name} {inv.fqdn(v.name)}")
    return "\n".join(lines) + "\n"


def render_acng_conf(state: Path, bind: str, port: int, security: str = "") -> str:
    """apt-cacher-ng config of one lab instance (its own dirs, bound to the operator side)."""
    lines = [
        f"CacheDir: {state / 'cache'}",
        f"LogDir: {state / 'log'}",
        "SupportDir: /usr/lib/apt-cacher-ng",
        f"PidFile: {state / 'acng.pid'}",
        f"SocketPath: {state / 'acng.socket'}",
        f"BindAddress: {bind}",
        f"Port: {port}",
        "ForeGround: 1",
        "Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian",
        "ReportPage: acng-report.html",
        "ExThreshold: 4",
        "PassThroughPattern: ^$",
    ]
    if security:
        lines.append("Remap-secdeb: security.debian.org deb.debian.org/debian-security "
                     f"/debian-security ; {security}/")
    return "\n".join(lines) + "\n"


def render_nft(table: str, rules: dict[str, tuple[int, str]]) -> str:
    """nftables script for the switch: port -> (percent, direction) random drops.

    direction: "in" (frames towards the host), "out" (from the host) or "both".
    Only IP frames are dropped (ARP passes), so the loss is in the traffic itself.
    """
    body = [f"table bridge {table} {{", "\tchain forward {",
            "\t\ttype filter hook forward priority 0; policy accept;"]
    for port in sorted(rules):
        percent, direction = rules[port]
        if not 0 < percent <= 100:
            continue
        cond = "" if percent >= 100 else f" numgen random mod 100 < {int(percent)}"
        if direction in ("in", "both"):
            body.append(f'\t\toifname "{port}" ether type {{ ip, ip6 }}{cond} drop')
        if direction in ("out", "both"):
            body.append(f'\t\tiifname "{port}" ether type {{ ip, ip6 }}{cond} drop')
    body += ["\t}", "}"]
    # the table is declared empty first so `delete` below never fails, then rebuilt
    return (f"table bridge {table}\ndelete table bridge {table}\n" + "\n".join(body) + "\n")


def route_overlap(subnet: str, routes: list[dict[str, Any]], own_dev: str) -> dict | None:
    """The first machine route overlapping the lab subnet (default route and ours aside)."""
    net = ipaddress.ip_network(subnet)
    for r in routes:
        dst = r.get("dst", "")
        if not dst or dst == "default" or r.get("dev") == own_dev:
            continue
        try:
            other = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if other.version == net.version and other.prefixlen > 0 and other.overlaps(net):
            return r
    return None


def free_subnet(routes: list[dict[str, Any]], prefix: int = 24) -> str:
    """A 10.x.0.0/prefix overlapping none of the routes (for error messages and tests)."""
    for x in range(77, 255):
        cand = f"10.{x}.0.0/{prefix}"
        if route_overlap(cand, routes, "") is None:
            return cand
    return f"10.77.0.0/{prefix}"


def machine_routes() -> list[dict[str, Any]]:
    res = _run(["ip", "-j", "route", "show", "table", "all"], timeout=30)
    return [r for r in json.loads(res.stdout or "[]") if r.get("type") != "broadcast"]


def known_hosts_lines(address: str, port: int, pubkeys: Iterable[str]) -> list[str]:
    """known_hosts lines for one host from its `TYPE BASE64 [comment]` public keys."""
    who = address if port == 22 else f"[{address}]:{port}"
    out = []
    for pk in pubkeys:
        parts = pk.split()
        if len(parts) >= 2:
            out.append(f"{who} {parts[0]} {parts[1]}")
    return out


def merge_known_hosts(existing: str, addresses: Iterable[str], new_lines: Iterable[str]) -> str:
    """Replace every line of `addresses` in a known_hosts text by `new_lines`."""
    drop = set(addresses) | {f"[{a}]" for a in addresses}
    kept = []
    for line in existing.splitlines():
        first = line.split()[0] if line.split() else ""
        names = {n.split("]:")[0] + ("]" if "]:" in n else "") for n in first.split(",")}
        if line.strip() and not line.startswith("#") and names & drop:
            continue
        kept.append(line)
    out = [ln for ln in kept if ln.strip()] + list(new_lines)
    return "\n".join(out) + ("\n" if out else "")


def render_secrets(values: dict[str, str]) -> str:
    return "".join(f'{k} = "{v}"\n' for k, v in values.items())


def safe_mount_path(p: Path) -> str:
    s = str(p)
    if any(ch in s for ch in ",:\\ \n"):
        raise InputError(f"{s}: overlay paths cannot contain ',', ':', spaces or backslashes. "
                         "Fix: move the inventory to a plain path")
    return s


# ------------------------------------------------------------------ shell helpers
def _run(argv: list[str], *, input: str | None = None, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise StepFailed(f"{argv[0]} not found. Fix: run scripts/install-lab-deps.sh") from None
    except subprocess.TimeoutExpired:
        raise StepFailed(f"timed out after {timeout:.0f}s: {shlex.join(argv)}") from None
    if check and res.returncode != 0:
        raise StepFailed(f"`{shlex.join(argv)}` failed ({res.returncode}): "
                         f"{(res.stderr or res.stdout).strip()[-800:]}")
    return res


def _ok(argv: list[str]) -> bool:
    return _run(argv, check=False, timeout=30).returncode == 0


def spawn_detached(argv: list[str], log_path: Path) -> int:
    """Start argv in its own session, not our child (reparented to PID 1); return its pid."""
    script = 'log=$1; shift; setsid "$@" >>"$log" 2>&1 </dev/null & echo $!'
    res = _run(["sh", "-c", script, "sh", str(log_path)] + argv, timeout=30)
    return int(res.stdout.strip())


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _procs() -> list[tuple[int, int, str]]:
    """(pid, ppid, cmdline) of every live process."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            if st[0] == "Z":
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append((int(d), int(st[1]), cmd))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _netns_inode(ns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{ns}").st_ino
    except OSError:
        return None


def _pids_in_netns(ns: str) -> list[int]:
    ino = _netns_inode(ns)
    if ino is None:
        return []
    out = []
    for pid, _, _ in _procs():
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == ino:
                out.append(pid)
        except OSError:
            continue
    return out


def _kill(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: Iterable[int], timeout: float = 10) -> bool:
    pids = list(pids)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(_pid_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _mounts() -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.split()[1].replace("\\040", " ") for line in f]


def _list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except OSError:
        return []


def _link_exists(dev: str, ns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", ns] if ns else []) + ["link", "show", "dev", dev]
    return _ok(argv)


def _link_info(dev: str, ns: str | None = None) -> dict[str, Any] | None:
    argv = ["ip", "-j"] + (["-n", ns] if ns else []) + ["-d", "addr", "show", "dev", dev]
    res = _run(argv, check=False, timeout=30)
    if res.returncode != 0:
        return None
    data = json.loads(res.stdout or "[]")
    return data[0] if data else None


def _parallel(items: list[Any], fn: Callable[[Any], Any], workers: int = 10) -> list[Any]:
    """fn on every item in threads; re-raise the first failure after all finished."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as ex:
        futs = [ex.submit(fn, it) for it in items]
    errors = [f.exception() for f in futs if f.exception()]
    if errors:
        raise errors[0]  # type: ignore[misc]
    return [f.result() for f in futs]


# ------------------------------------------------------------------ guards
def require_lab(inv: Inventory) -> None:
    if not inv.is_lab:
        raise Refused(f"{inv.path}: lab.enabled is false, this inventory describes real "
                      "machines; lab functions refuse to touch them. Fix: use a lab inventory")
    if os.geteuid() != 0:
        raise Refused("the lab needs root (namespaces, mounts, systemd-nspawn). Fix: run as root")


def check_subnet(inv: Inventory) -> None:
    """Refuse when the lab subnet overlaps a route of the machine (other than our own)."""
    routes = machine_routes()
    hit = route_overlap(inv.lab["subnet"], routes, op_dev(lab_name(inv)))
    if hit:
        raise Refused(
            f"lab {lab_name(inv)}: lab.subnet {inv.lab['subnet']} overlaps the machine's route "
            f"'{hit.get('dst')} dev {hit.get('dev', '?')}'. Fix: set lab.subnet (and the host, "
            f"VIP and operator addresses) in {inv.path} to a free private range, "
            f"e.g. {free_subnet(routes)}")


def check_route(inv: Inventory, address: str) -> None:
    """Refuse to send anything to `address` unless it goes out via <name>-op."""
    dev = op_dev(lab_name(inv))
    res = _run(["ip", "-o", "route", "get", address], check=False, timeout=10)
    parts = res.stdout.split()
    if not ("dev" in parts and parts[parts.index("dev") + 1] == dev):
        raise Refused(f"{address} is not routed via {dev} (lab {lab_name(inv)} down?); "
                      "refusing to send lab traffic elsewhere. Fix: fab lab.up")


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def raise_inotify_limits() -> bool:
    """Raise the inotify limits for many booted systemds; the old values are saved once
    (INOTIFY_SAVED) and restored by the last lab going down."""
    current = {k: int(_sysctl_path(k).read_text()) for k in INOTIFY_LIMITS}
    low = {k: v for k, v in INOTIFY_LIMITS.items() if current[k] < v}
    if not low:
        return False
    if not INOTIFY_SAVED.exists():
        INOTIFY_SAVED.write_text(json.dumps(current))
    for k, v in low.items():
        _sysctl_path(k).write_text(f"{v}\n")
    return True


def restore_inotify_limits() -> None:
    try:
        saved = json.loads(INOTIFY_SAVED.read_text())
    except (OSError, ValueError):
        return
    for k, v in saved.items():
        if k in INOTIFY_LIMITS:
            _sysctl_path(k).write_text(f"{int(v)}\n")
    INOTIFY_SAVED.unlink()


# ------------------------------------------------------------------ image
def ensure_image(inv: Inventory, log: Log = _quiet) -> tuple[Path, bool]:
    """The cached rootfs for this inventory's suite + packages; built when missing.

    Returns (path, built). Built into a temporary folder and renamed, under a lock, so
    concurrent labs never see a half-built image.
    """
    path = image_path(inv)
    if (path / "etc" / "os-release").exists():
        return path, False
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    with open(IMAGE_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / "etc" / "os-release").exists():
            return path, False
        tmp = path.with_name(path.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        stanzas = mirror_sources(_machine_sources_text(), inv.lab["mirror"])
        mirror = main_mirror(stanzas)
        pk = image_packages(inv)
        log(f"lab {lab_name(inv)}: building image {path.name} ({inv.lab['suite']}, "
            f"{len(pk)} packages) from {mirror}")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(pk)}",
              inv.lab["suite"], str(tmp), mirror], timeout=1800)
        _finish_image(tmp)
        tmp.rename(path)
        return path, True


def _machine_sources_text() -> str:
    try:
        return MACHINE_SOURCES.read_text()
    except OSError:
        return ""


def _finish_image(root: Path) -> None:
    """Make a debootstrapped tree a neutral image: no host keys, no machine id, no DNS."""
    for p in (root / "etc" / "ssh").glob("ssh_host_*"):
        p.unlink()
    (root / "etc" / "machine-id").write_text("")
    dbus_id = root / "var" / "lib" / "dbus" / "machine-id"
    if dbus_id.is_symlink() or dbus_id.exists():
        dbus_id.unlink()
    for p in (root / "etc" / "apt" / "sources.list",):
        if p.exists():
            p.unlink()
    resolv = root / "etc" / "resolv.conf"
    if resolv.exists() or resolv.is_symlink():
        resolv.unlink()
    resolv.write_text("# lab: no DNS; every lab name is in /etc/hosts\n")
    for unit in MASKED_UNITS:
        link = root / "etc" / "systemd" / "system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/dev/null")
    conf = root / "etc" / "ssh" / "sshd_config.d" / "10-lab.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("".join(f"HostKey /etc/ssh/ssh_host_{t}_key\n" for t in HOST_KEY_TYPES)
                    + "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                    "UseDNS no\n")
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
    for p in (root / "var" / "lib" / "apt" / "lists").glob("*_*"):
        p.unlink()


def purge_images() -> list[Path]:
    """Delete the image cache; refused while any overlay (of any lab) still uses it."""
    with open("/proc/self/mountinfo") as f:
        users = [ln.split()[4] for ln in f if f"lowerdir={IMAGE_CACHE}/" in ln]
    if users:
        raise Refused(f"the image cache {IMAGE_CACHE} is in use by {len(users)} running "
                      f"lab host(s) (e.g. {users[0]}). Fix: bring the other labs down first, "
                      "then purge")
    removed = []
    if IMAGE_CACHE.exists():
        for p in IMAGE_CACHE.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
                removed.append(p)
        shutil.rmtree(IMAGE_CACHE, ignore_errors=True)
        parent = IMAGE_CACHE.parent
        if parent.name == "k3s-ha" and parent.exists() and not any(parent.iterdir()):
            parent.rmdir()
    return removed


# ------------------------------------------------------------------ SSH key, secrets
def ensure_ssh_key(inv: Inventory) -> Path:
    key = inv.resolve_path(inv.ssh["key"] or ".lab/ssh/id_ed25519")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
              f"k3s-ha lab {lab_name(inv)}", "-f", str(key)])
    return key


def ensure_secrets(inv: Inventory) -> bool:
    """Create the secrets file with random values (mode 0600) when missing."""
    if not inv.secrets.get("file"):
        return False
    path = inv.resolve_path(inv.secrets["file"])
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    values = {k: pysecrets.token_urlsafe(24) for k in SECRET_KEYS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render_secrets(values))
    return True


def known_hosts_path(inv: Inventory) -> Path:
    return inv.resolve_path(inv.ssh["known_hosts"])


def _collect_host_keys(inv: Inventory) -> None:
    lines: list[str] = []
    for h in inv.hosts.values():
        root = host_dir(inv, h.name) / "upper"
        pubs = [(root / "etc" / "ssh" / f"ssh_host_{t}_key.pub").read_text()
                for t in HOST_KEY_TYPES]
        lines += known_hosts_lines(h.address, h.ssh_port, pubs)
    path = known_hosts_path(inv)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = path.read_text() if path.exists() else ""
    new = merge_known_hosts(old, [h.address for h in inv.hosts.values()], lines)
    if new != old:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(new)
        tmp.replace(path)


def _forget_host_keys(inv: Inventory) -> None:
    path = known_hosts_path(inv)
    if not path.exists():
        return
    new = merge_known_hosts(path.read_text(), [h.address for h in inv.hosts.values()], [])
    if new:
        path.write_text(new)
    else:
        path.unlink()


# ------------------------------------------------------------------ network
def _ensure_switch(inv: Inventory) -> bool:
    """Switch namespace, bridge and the operator's veth; True when something was created."""
    name = lab_name(inv)
    sw, br, op, po = switch_ns(name), bridge_name(name), op_dev(name), op_peer(name)
    net = ipaddress.ip_network(inv.lab["subnet"])
    want = f"{inv.lab['operator_address']}/{net.prefixlen}"
    info = _link_info(op)
    healthy = (sw in _list_netns() and _link_exists(br, sw) and _link_exists(po, sw)
               and info is not None and "UP" in info.get("flags", [])
               and any(f"{a.get('local')}/{a.get('prefixlen')}" == want
                       for a in info.get("addr_info", [])))
    if healthy:
        return False
    # half-built or stale: drop the switch and everything hanging from it
    _teardown_switch(inv)
    _run(["ip", "netns", "add", sw])
    _run(["ip", "-n", sw, "link", "set", "lo", "up"])
    _run(["ip", "-n", sw, "link", "add", br, "type", "bridge", "mcast_snooping", "0",
          "stp_state", "0"])
    _run(["ip", "-n", sw, "link", "set", br, "up"])
    _run(["ip", "link", "add", op, "type", "veth", "peer", "name", po, "netns", sw])
    _run(["ip", "-n", sw, "link", "set", po, "master", br, "up"])
    _run(["ip", "addr", "add", want, "dev", op])
    _run(["ip", "link", "set", op, "up"])
    return True


def _teardown_switch(inv: Inventory) -> None:
    name = lab_name(inv)
    if _link_exists(op_dev(name)):
        _run(["ip", "link", "del", op_dev(name)], check=False)
    if switch_ns(name) in _list_netns():
        _run(["ip", "netns", "del", switch_ns(name)], check=False)


def _host_net_ok(inv: Inventory, h: Host) -> bool:
    name = lab_name(inv)
    ns, port = host_ns(name, h.name), host_port(inv, h.name)
    if ns not in _list_netns():
        return False
    info = _link_info(HOST_IFACE, ns)
    if info is None or not any(a.get("local") == h.address for a in info.get("addr_info", [])):
        return False
    return _link_exists(port, switch_ns(name))


def _ensure_host_net(inv: Inventory, h: Host) -> bool:
    if _host_net_ok(inv, h):
        return False
    _stop_host(inv, h.name)
    name = lab_name(inv)
    ns, sw, port = host_ns(name, h.name), switch_ns(name), host_port(inv, h.name)
    if ns in _list_netns():
        _run(["ip", "netns", "del", ns])
    if _link_exists(port, sw):
        _run(["ip", "-n", sw, "link", "del", port])
    prefix = ipaddress.ip_network(inv.lab["subnet"]).prefixlen
    _run(["ip", "netns", "add", ns])
    _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    _run(["ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", HOST_IFACE,
          "netns", ns])
    _run(["ip", "-n", sw, "link", "set", port, "master", bridge_name(name), "up"])
    _run(["ip", "-n", ns, "addr", "add", f"{h.address}/{prefix}", "dev", HOST_IFACE])
    _run(["ip", "-n", ns, "link", "set", HOST_IFACE, "up"])
    # the new veth has a new MAC: forget the operator's stale neighbour entry
    _run(["ip", "neigh", "del", h.address, "dev", op_dev(name)], check=False)
    return True


def _restore_port(inv: Inventory, h: Host) -> bool:
    """Undo partition / link down on the host's switch port; True when it changed."""
    name = lab_name(inv)
    sw, port = switch_ns(name), host_port(inv, h.name)
    info = _link_info(port, sw) or {}
    changed = False
    if info.get("master") != bridge_name(name):
        _run(["ip", "-n", sw, "link", "set", port, "master", bridge_name(name)])
        changed = True
    if "UP" not in info.get("flags", []):
        _run(["ip", "-n", sw, "link", "set", port, "up"])
        changed = True
    return changed


# ------------------------------------------------------------------ overlays and files
def _write(root: Path, rel: str, content: str, mode: int = 0o644) -> bool:
    """Write root/rel unless identical; refuses paths that resolve outside root."""
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    real_parent = os.path.realpath(path.parent)
    if not (real_parent + "/").startswith(os.path.realpath(root) + "/"):
        raise StepFailed(f"{path}: resolves outside the container root; refusing to write")
    try:
        if path.read_text() == content and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    if path.is_symlink():
        path.unlink()
    tmp = path.with_name(f".{path.name}.lab-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, mode)
    tmp.replace(path)
    return True


def _ensure_overlay(inv: Inventory, h: Host, image: Path) -> bool:
    d = host_dir(inv, h.name)
    merged = d / "merged"
    if str(merged) in _mounts():
        return False
    for sub in ("upper", "work", "merged"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    opts = (f"lowerdir={safe_mount_path(image)},upperdir={safe_mount_path(d / 'upper')},"
            f"workdir={safe_mount_path(d / 'work')}")
    _run(["mount", "-t", "overlay", f"{lab_name(inv)}-lab", "-o", opts, str(merged)])
    return True


def _ensure_files(inv: Inventory, h: Host, pubkey: str, apt_proxy: str, sources: str,
                  hosts: str) -> bool:
    root = host_dir(inv, h.name) / "merged"
    changed = False
    mid = root / "etc" / "machine-id"
    if not mid.exists() or not mid.read_text().strip():
        changed |= _write(root, "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    for t in HOST_KEY_TYPES:
        key = root / "etc" / "ssh" / f"ssh_host_{t}_key"
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", t, "-N", "", "-C", f"root@{h.name}", "-f", str(key)])
            changed = True
    changed |= _write(root, "etc/hostname", h.name + "\n")
    changed |= _write(root, "etc/hosts", hosts)
    changed |= _write(root, "etc/apt/apt.conf.d/01lab-proxy", apt_proxy)
    changed |= _write(root, "etc/apt/sources.list.d/debian.sources", sources)
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    changed |= _write(root, "root/.ssh/authorized_keys", pubkey, 0o600)
    return changed


# ------------------------------------------------------------------ containers
def _nspawn_pids(inv: Inventory, host: str) -> list[int]:
    needle = f"--network-namespace-path=/run/netns/{host_ns(lab_name(inv), host)} "
    return [pid for pid, _, cmd in _procs()
            if "systemd-nspawn" in cmd.split(" ")[0] and needle in cmd + " "]


def _init_pid(inv: Inventory, host: str) -> int | None:
    """The container's init: the process in the host's netns whose parent is outside it."""
    pids = set(_pids_in_netns(host_ns(lab_name(inv), host)))
    if not pids:
        return None
    for pid, ppid, _ in _procs():
        if pid in pids and ppid not in pids:
            return pid
    return None


def is_running(inv: Inventory, host: str) -> bool:
    """True when the host's container init is alive."""
    require_lab(inv)
    inv.host(host)
    return _init_pid(inv, host) is not None


def _start_host(inv: Inventory, h: Host) -> int:
    d = host_dir(inv, h.name)
    ns = host_ns(lab_name(inv), h.name)
    argv = ["systemd-nspawn", "-D", str(d / "merged"), "--boot", "--register=no",
            "--keep-unit", f"--network-namespace-path=/run/netns/{ns}",
            f"--machine={h.name}", "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no", "--console=read-only"]
    pid = spawn_detached(argv, d / "console.log")
    (d / "nspawn.pid").write_text(f"{pid}\n")
    return pid


def _container_pids(inv: Inventory, host: str) -> list[int]:
    """Every process of the host's container, found by netns, by nspawn parentage and by
    its overlay (mountinfo), so a container survives none of: a deleted netns, a killed
    nspawn, a lost pid file."""
    found = set(_pids_in_netns(host_ns(lab_name(inv), host)))
    nspawns = set(_nspawn_pids(inv, host))
    upper = f"/.lab/{lab_name(inv)}/hosts/{host}/upper,"
    try:
        my_mnt = os.stat("/proc/self/ns/mnt").st_ino
    except OSError:
        my_mnt = 0
    for pid, ppid, _ in _procs():
        if pid in found or pid in nspawns:
            continue
        if ppid in nspawns:
            found.add(pid)
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/mnt").st_ino == my_mnt:
                continue
            with open(f"/proc/{pid}/mountinfo") as f:
                if upper in f.read():
                    found.add(pid)
        except OSError:
            continue
    return sorted(found)


def _stop_host(inv: Inventory, host: str, timeout: float = 15) -> bool:
    """Kill the container (its init and everything in it), then its systemd-nspawn."""
    victims = _container_pids(inv, host)
    nspawns = _nspawn_pids(inv, host)
    if not victims and not nspawns:
        return False
    parents = {pid: ppid for pid, ppid, _ in _procs()}
    inits = [p for p in victims if parents.get(p) not in victims]
    _kill(inits)
    _kill(victims)
    if not _wait_gone(victims, timeout):
        raise StepFailed(f"{host}: container processes {victims} survived SIGKILL")
    if not _wait_gone(nspawns, 5):
        _kill(nspawns)
        _wait_gone(nspawns, 5)
    return True


def wait_ssh(inv: Inventory, host: str, timeout: float = 60) -> float:
    """Wait until the host's sshd sends its banner; returns seconds waited."""
    require_lab(inv)
    h = inv.host(host)
    check_route(inv, h.address)
    start = time.monotonic()
    while True:
        if ssh_banner(h.address, h.ssh_port, 1.0):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise StepFailed(f"{host} ({h.address}): SSH not answering after {timeout:.0f}s. "
                             f"See {host_dir(inv, host) / 'console.log'}")
        time.sleep(0.2)


def ssh_banner(address: str, port: int = 22, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


# ------------------------------------------------------------------ apt-cacher-ng
def _acng_dir(inv: Inventory) -> Path:
    return state_dir(inv) / "acng"


def _acng_pids(inv: Inventory) -> list[int]:
    needle = f"/.lab/{lab_name(inv)}/acng/conf "
    return [pid for pid, _, cmd in _procs() if "apt-cacher-ng" in cmd.split(" ")[0]
            and needle in cmd + " "]


def _ensure_acng(inv: Inventory, stanzas: list[dict[str, list[str]]]) -> bool:
    d = _acng_dir(inv)
    conf_dir = d / "conf"
    for sub in ("conf", "cache", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    conf = render_acng_conf(d, inv.lab["operator_address"], ACNG_PORT,
                            security_mirror(stanzas))
    changed = _write(conf_dir, "acng.conf", conf)
    changed |= _write(conf_dir, "backends_debian", main_mirror(stanzas) + "/\n")
    pids = _acng_pids(inv)
    if pids and not changed and _acng_answers(inv):
        return False
    _kill(pids)
    _wait_gone(pids, 5)
    pid = spawn_detached(["apt-cacher-ng", "-c", str(conf_dir)], d / "log" / "stdout.log")
    end = time.monotonic() + 10
    while not _acng_answers(inv):
        if time.monotonic() > end or not _pid_alive(pid):
            raise StepFailed(f"apt-cacher-ng did not start on {inv.lab['operator_address']}:"
                             f"{ACNG_PORT}; see {d / 'log'}. A machine-wide apt-cacher-ng on "
                             f"*:{ACNG_PORT} takes the port: stop it (/etc/init.d/apt-cacher-ng "
                             "stop); scripts/install-lab-deps.sh disables it")
        time.sleep(0.1)
    return True


def _acng_answers(inv: Inventory) -> bool:
    try:
        socket.create_connection((inv.lab["operator_address"], ACNG_PORT), timeout=1).close()
        return True
    except OSError:
        return False


def _machine_check_valid_until() -> bool:
    res = _run(["apt-config", "dump", "Acquire::Check-Valid-Until"], check=False)
    return '"false"' not in res.stdout


# ------------------------------------------------------------------ up / down / status
@dataclass
class UpResult:
    changed: bool
    hosts: int
    seconds: float
    image_built: bool


def up(inv: Inventory, log: Log = print, ssh_timeout: float = 120) -> UpResult:
    """Bring the lab to its declared state; a no-op when it is already there."""
    require_lab(inv)
    t0 = time.monotonic()
    name = lab_name(inv)
    check_subnet(inv)
    changed = _take_over(inv, log)
    state_dir(inv).mkdir(parents=True, exist_ok=True)
    image, built = ensure_image(inv, log)
    changed |= built
    key = ensure_ssh_key(inv)
    changed |= ensure_secrets(inv)
    pubkey = key.with_name(key.name + ".pub").read_text()
    stanzas = mirror_sources(_machine_sources_text(), inv.lab["mirror"])
    sources = render_sources(stanzas, inv.lab["suite"])
    apt_proxy = render_apt_proxy(inv.lab["operator_address"], ACNG_PORT,
                                 _machine_check_valid_until())
    hosts_txt = render_hosts(inv)
    changed |= raise_inotify_limits()
    changed |= _ensure_switch(inv)
    changed |= _ensure_acng(inv, stanzas)
    hosts = list(inv.hosts.values())

    def prepare(h: Host) -> bool:
        ch = _ensure_host_net(inv, h)
        ch |= _restore_port(inv, h)
        ch |= _ensure_overlay(inv, h, image)
        files = _ensure_files(inv, h, pubkey, apt_proxy, sources, hosts_txt)
        if _init_pid(inv, h.name) is None:
            _stop_host(inv, h.name)  # stale nspawn with a dead init
            _start_host(inv, h)
            ch = True
        return ch or files

    changed |= any(_parallel(hosts, prepare))
    changed |= _clear_all_loss(inv)
    _collect_host_keys(inv)
    _parallel(hosts, lambda h: wait_ssh(inv, h.name, ssh_timeout))
    secs = time.monotonic() - t0
    if changed:
        log(f"lab {name}: {len(hosts)} hosts up in {secs:.1f}s")
    else:
        log(f"lab {name}: {len(hosts)} hosts up, nothing to do")
    return UpResult(changed=changed, hosts=len(hosts), seconds=secs, image_built=built)


def _owner_file(name: str) -> Path:
    return OWNERS / f"{name}.owner"


def _take_over(inv: Inventory, log: Log) -> bool:
    """Record this inventory as the owner of the lab name; a lab of the same name started
    from another inventory file is swept first (its hosts would not match our keys)."""
    name = lab_name(inv)
    me = str(inv.path.resolve())
    f = _owner_file(name)
    try:
        owner = f.read_text().strip()
    except OSError:
        owner = ""
    swept = False
    if owner and owner != me and switch_ns(name) in _list_netns():
        log(f"lab {name}: the name is in use by {owner}; stopping that lab first "
            "(give each inventory its own lab.name to run them side by side)")
        _sweep(inv)
        swept = True
    if owner != me:
        OWNERS.mkdir(parents=True, exist_ok=True)
        f.write_text(me + "\n")
    return swept


def _sweep(inv: Inventory) -> None:
    """Kill and remove every container, mount, netns, veth and apt-cacher-ng of the lab
    name, found by name (whatever inventory file started them)."""
    name = lab_name(inv)
    prefix = host_ns(name, "")
    stale = [ns[len(prefix):] for ns in _list_netns() if ns.startswith(prefix)]
    hosts = list(dict.fromkeys(list(inv.hosts) + stale))
    _parallel(hosts, lambda h: _stop_host(inv, h))
    # containers whose netns is already gone: find them by their nspawn command line
    for h in hosts:
        _kill(_nspawn_pids(inv, h))
    for m in reversed(_mounts()):
        if f"/.lab/{name}/hosts/" in m:
            _run(["umount", m], check=False)
            if m in _mounts():
                _run(["umount", "-l", m], check=False)
    for h in hosts:
        if host_ns(name, h) in _list_netns():
            _run(["ip", "netns", "del", host_ns(name, h)], check=False)
    acng = _acng_pids(inv)
    _kill(acng, signal.SIGTERM)
    if not _wait_gone(acng, 5):
        _kill(acng)
        _wait_gone(acng, 5)
    _teardown_switch(inv)


def down(inv: Inventory, purge: bool = False, log: Log = print) -> None:
    """Remove every container, mount, namespace, veth and process of this lab instance."""
    require_lab(inv)
    name = lab_name(inv)
    _sweep(inv)
    f = _owner_file(name)
    if f.exists():
        f.unlink()
    if OWNERS.exists() and not any(OWNERS.iterdir()):
        OWNERS.rmdir()
    _forget_host_keys(inv)
    if state_dir(inv).exists():
        shutil.rmtree(state_dir(inv))
    lab_root = state_dir(inv).parent
    if lab_root.exists() and not any(lab_root.iterdir()):
        lab_root.rmdir()
    if not _list_netns():  # the last lab on this machine: put the machine back as it was
        restore_inotify_limits()
    _release_netns_mount()
    log(f"lab {name}: down")
    if purge:
        for p in purge_images():
            log(f"lab {name}: removed image {p}")


def _release_netns_mount() -> None:
    """`ip netns add` leaves /run/netns mounted; unmount it when no namespace is left."""
    if not _list_netns() and "/run/netns" in _mounts():
        while "/run/netns" in _mounts():
            if _run(["umount", "/run/netns"], check=False).returncode != 0:
                break


@dataclass
class HostStatus:
    name: str
    address: str
    running: bool
    pid: int | None
    ssh: bool
    port: str  # "up", "partitioned", "link down", "-"


def status(inv: Inventory) -> list[HostStatus]:
    require_lab(inv)
    name = lab_name(inv)

    def one(h: Host) -> HostStatus:
        pid = _init_pid(inv, h.name)
        info = _link_info(host_port(inv, h.name), switch_ns(name)) \
            if switch_ns(name) in _list_netns() else None
        if info is None:
            port = "-"
        elif "UP" not in info.get("flags", []):
            port = "link down"
        elif info.get("master") != bridge_name(name):
            port = "partitioned"
        else:
            port = "up"
        ssh = pid is not None and _route_ok(inv, h.address) and ssh_banner(h.address, h.ssh_port)
        return HostStatus(h.name, h.address, pid is not None, pid, ssh, port)

    return _parallel(list(inv.hosts.values()), one)


def _route_ok(inv: Inventory, address: str) -> bool:
    try:
        check_route(inv, address)
        return True
    except Refused:
        return False


def ssh_argv(inv: Inventory, host: str, command: list[str] | None = None) -> list[str]:
    """An ssh command line for `host` with the lab key and strict host-key checking."""
    require_lab(inv)
    h = inv.host(host)
    check_route(inv, h.address)
    key = inv.resolve_path(h.ssh_key or inv.ssh["key"])
    return (["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={known_hosts_path(inv)}",
             "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
             "-o", f"ConnectTimeout={inv.ssh['connect_timeout']}",
             "-p", str(h.ssh_port), f"{h.ssh_user}@{h.address}"] + (command or []))


# ------------------------------------------------------------------ faults
def power_off(inv: Inventory, host: str) -> None:
    """A power cut: SIGKILL the container's init (every process in it dies with it)."""
    require_lab(inv)
    inv.host(host)
    init = _init_pid(inv, host)
    if init is None:
        return
    _kill([init])
    _wait_gone([init], 10)
    _stop_host(inv, host)  # stragglers and the exiting nspawn


def power_on(inv: Inventory, host: str, timeout: float = 60) -> None:
    """Boot the host again on the same overlay and wait until SSH answers."""
    require_lab(inv)
    h = inv.host(host)
    if _init_pid(inv, host) is None:
        _stop_host(inv, host)
        _ensure_host_net(inv, h)
        _ensure_overlay(inv, h, image_path(inv))
        _start_host(inv, h)
    wait_ssh(inv, host, timeout)


def partition(inv: Inventory, host: str) -> None:
    """Detach the host's port from the switch; its own link keeps carrier."""
    require_lab(inv)
    _run(["ip", "-n", switch_ns(lab_name(inv)), "link", "set", host_port(inv, host),
          "nomaster"])


def heal(inv: Inventory, host: str) -> None:
    require_lab(inv)
    _run(["ip", "-n", switch_ns(lab_name(inv)), "link", "set", host_port(inv, host),
          "master", bridge_name(lab_name(inv))])


def link_down(inv: Inventory, host: str) -> None:
    """Carrier loss: the switch side goes down, the host sees NO-CARRIER on host0."""
    require_lab(inv)
    _run(["ip", "-n", switch_ns(lab_name(inv)), "link", "set", host_port(inv, host), "down"])


def link_up(inv: Inventory, host: str) -> None:
    require_lab(inv)
    _run(["ip", "-n", switch_ns(lab_name(inv)), "link", "set", host_port(inv, host), "up"])


def _loss_file(inv: Inventory) -> Path:
    return state_dir(inv) / "loss.json"


def _apply_loss(inv: Inventory, rules: dict[str, tuple[int, str]]) -> None:
    name = lab_name(inv)
    _run(["ip", "netns", "exec", switch_ns(name), "nft", "-f", "-"],
         input=render_nft(nft_table(name), rules))
    _loss_file(inv).write_text(json.dumps({k: list(v) for k, v in rules.items()}))


def _loss_rules(inv: Inventory) -> dict[str, tuple[int, str]]:
    try:
        raw = json.loads(_loss_file(inv).read_text())
        return {k: (int(v[0]), str(v[1])) for k, v in raw.items()}
    except (OSError, ValueError):
        return {}


def loss(inv: Inventory, host: str, percent: int, direction: str = "both") -> None:
    """Drop `percent` % of IP frames to ("in"), from ("out") or both ways of the host."""
    require_lab(inv)
    if direction not in ("both", "in", "out"):
        raise InputError(f"loss direction '{direction}': use both, in or out")
    if not 0 <= percent <= 100:
        raise InputError(f"loss percent {percent}: use 0-100")
    rules = _loss_rules(inv)
    rules[host_port(inv, host)] = (int(percent), direction)
    _apply_loss(inv, rules)


def clear_loss(inv: Inventory, host: str) -> None:
    require_lab(inv)
    rules = _loss_rules(inv)
    if rules.pop(host_port(inv, host), None) is not None or not rules:
        _apply_loss(inv, rules)


def _clear_all_loss(inv: Inventory) -> bool:
    if not _loss_rules(inv):
        return False
    _apply_loss(inv, {})
    return True
