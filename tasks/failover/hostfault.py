"""Faults on real hosts that undo themselves: a lost operator connection never leaves a
host cut off, a service stopped or a process frozen.

Each fault first arms a timer ON THE HOST (`systemd-run --on-active=N`) running the undo,
then applies the fault, in one SSH command. The restore runs the undo at once and stops the
timer. Isolation is an nftables table `inet k3sha_drill` dropping every packet in and out
except the loopback and the operator's SSH session (so the restore can come early); the
replication cut drops only the traffic to and from the peer database.
"""
from __future__ import annotations

import shlex

TABLE = "k3sha_drill"
TIMER = "k3sha-drill-undo"
UNDO_NFT = f"nft delete table inet {TABLE} 2>/dev/null; true"


def _table(chains: dict[str, tuple[str, str, list[str]]]) -> str:
    """nftables script (re)creating the drill's table: chain name -> (hook, policy, rules),
    one statement per line (nft refuses a rule and a closing brace on one line)."""
    out = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    for name, (hook, policy, rules) in chains.items():
        out += [f"  chain {name} {{", f"    type filter hook {hook} priority -10; policy {policy};"]
        out += [f"    {rule}" for rule in rules] + ["  }"]
    return "\n".join(out + ["}", ""])


def render_isolation(operator: str, ssh_port: int = 22) -> str:
    """nftables script: drop all but loopback and the operator's SSH (pure)."""
    return _table({
        "in": ("input", "drop", ["iif lo accept",
                                 f"ip saddr {operator} tcp dport {ssh_port} accept"]),
        "out": ("output", "drop", ["oif lo accept",
                                   f"ip daddr {operator} tcp sport {ssh_port} accept"])})


def render_block_peer(peer: str) -> str:
    """nftables script: no traffic to or from `peer` (pure)."""
    return _table({"in": ("input", "accept", [f"ip saddr {peer} drop"]),
                   "out": ("output", "accept", [f"ip daddr {peer} drop"])})


def arm(undo: str, seconds: int) -> str:
    """Shell: a transient timer on the host running `undo` after `seconds` (replaces one
    left from an earlier run)."""
    return (f"systemctl stop {TIMER}.timer {TIMER}.service 2>/dev/null; "
            f"systemctl reset-failed {TIMER}.service 2>/dev/null; "
            f"systemd-run --quiet --unit {TIMER} --on-active={int(seconds)}s "
            f"/bin/sh -c {shlex.quote(undo)}")


def disarm(undo: str) -> str:
    """Shell: undo now and drop the timer."""
    return f"{undo}; systemctl stop {TIMER}.timer 2>/dev/null; true"


def nft_fault(script: str, seconds: int) -> str:
    """Shell: arm the undo, then load the rules (stdin: no rule text in argv needed)."""
    return f"{arm(UNDO_NFT, seconds)} && printf %s {shlex.quote(script)} | nft -f -"


def operator_address_cmd() -> str:
    """Shell printing the address the host sees this SSH session come from."""
    return 'echo "${SSH_CONNECTION%% *}"'


def service_fault(unit: str, seconds: int) -> tuple[str, str]:
    undo = f"systemctl start {shlex.quote(unit)}"
    return f"{arm(undo, seconds)} && systemctl stop {shlex.quote(unit)}", disarm(undo)


def freeze_fault(unit: str, seconds: int) -> tuple[str, str]:
    """SIGSTOP the unit's main process, with a timer sending SIGCONT."""
    pid = f"$(systemctl show -p MainPID --value {shlex.quote(unit)})"
    undo = f"kill -CONT {pid}"
    return f"{arm(undo, seconds)} && kill -STOP {pid}", disarm(undo)
