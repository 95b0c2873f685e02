"""The `k3s` command line of the stand-in: server, agent, kubectl, --version, standin-hang."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from . import VERSION_TEXT, kubectl
from .config import ConfigError, load_settings
from .host import Fatal, log, setup_logging

USAGE = f"""{VERSION_TEXT}

usage: k3s server [flags]      run a server (needs --datastore-endpoint mysql://...)
       k3s agent [flags]       run an agent (needs --server and --token)
       k3s kubectl ...         get/delete nodes, cordon, uncordon, drain
       k3s --version
       k3s standin-hang on|off [--service k3s|k3s-agent] [--pid PID]
                               the drill's hang fault: the API accepts connections and
                               completes TLS but answers nothing (SIGUSR1 on, SIGUSR2 off)
'k3s server --help' lists the flags."""


def hang(args: list[str]) -> int:
    """Send SIGUSR1 (on) or SIGUSR2 (off) to the k3s service's main process."""
    if not args or args[0] not in ("on", "off"):
        print("usage: k3s standin-hang on|off [--service NAME] [--pid PID]", file=sys.stderr)
        return 1
    opts = dict(zip(args[1::2], args[2::2]))
    pid = int(opts.get("--pid", "0") or 0)
    if not pid:
        service = opts.get("--service", "k3s")
        out = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", service],
                             capture_output=True, text=True)
        pid = int(out.stdout.strip() or 0)
        if not pid:
            print(f"standin-hang: service {service} is not running", file=sys.stderr)
            return 1
    os.kill(pid, signal.SIGUSR1 if args[0] == "on" else signal.SIGUSR2)
    print(f"hang fault {args[0]} (pid {pid})")
    return 0


def run_role(role: str, args: list[str]) -> int:
    try:
        settings = load_settings(role, args, os.environ)
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    setup_logging(bool(settings["debug"]))
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    try:
        if role == "server":
            from . import server
            return server.run(settings)
        from . import agent
        return agent.run(settings)
    except Fatal as e:
        log.critical("%s", e)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    prog, args = os.path.basename(argv[0]), argv[1:]
    if prog == "kubectl":
        return kubectl.run(args)
    if prog in ("crictl", "ctr"):
        print(f"{prog}: not provided by the k3s-ha stand-in (no containers)", file=sys.stderr)
        return 1
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 1
    cmd = args[0]
    if cmd in ("--version", "-v", "version"):
        print(VERSION_TEXT)
        return 0
    if cmd in ("server", "agent"):
        return run_role(cmd, args[1:])
    if cmd == "kubectl":
        return kubectl.run(args[1:])
    if cmd == "standin-hang":
        return hang(args[1:])
    print(f"k3s: unknown command {cmd!r} (the stand-in has server, agent, kubectl, "
          "--version, standin-hang)", file=sys.stderr)
    return 1
