"""The project's exceptions. Expected failures never show a traceback: the task
boundary (tasks.output.k3s_task) turns them into a message and an exit code.

Exit codes (documented in the README):
  1  a step failed on a host
  2  bad input: inventory, option, missing secret, refused operation
  3  a host could not be reached (network, authentication, host key)
  130 interrupted
"""
from __future__ import annotations


class K3sHaError(Exception):
    """Root of every expected failure."""

    exit_code = 1


class InputError(K3sHaError, ValueError):
    """Bad input from the operator: fix the input and run again."""

    exit_code = 2


class InventoryError(InputError):
    """One or more problems in the inventory file, reported all at once."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        n = len(problems)
        head = f"{path}: {n} problem{'s' if n != 1 else ''} in the inventory:"
        super().__init__("\n".join([head] + [f"  - {p}" for p in problems]))


class SecretMissing(InputError):
    """A secret is needed and no way to obtain it is available (no TTY / --yes)."""


class ConnectError(K3sHaError):
    """A host could not be reached or refused us."""

    exit_code = 3


class StepFailed(K3sHaError):
    """A remote step failed; the message names the host and the step."""


class Refused(InputError):
    """The tool refuses to act because acting would lose data or break a rule."""
