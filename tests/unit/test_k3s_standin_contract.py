"""Every `k3s kubectl` command line the k3s tasks send is one the lab's stand-in accepts and
serves (the first lab run found `--request-timeout`, `--wait=false`, `get --raw` refused
and a deleted node's secret failing `delete secret --ignore-not-found`)."""
from __future__ import annotations

import json
import shlex
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from tasks.facts import k3s as facts
from tasks.k3s import nodes

from tests.unit.test_standin_unit import kubectl  # noqa: F401 (loads the stand-in package)

KC = sys.modules["standin.kubectl"]


class FakeApi(KC.Kubectl):
    """The stand-in's Kubectl without a server: records calls; secrets are already gone."""

    def __init__(self) -> None:  # noqa: no super(): no kubeconfig, no server
        self.calls: list[tuple[str, str]] = []
        self.timeout = 15.0

    def call(self, method: str, path: str, body: Any = None, accept: str = "") -> Any:
        self.calls.append((method, path))
        if "/secrets/" in path:
            raise KC.KubectlError("Error from server (NotFound): secrets not found")
        if path == "/readyz":
            return {"message": "ok"}
        return {"items": [], "rows": [], "columnDefinitions": []}


def sent(monkeypatch: pytest.MonkeyPatch, fn: Any, *args: Any) -> list[list[str]]:
    """The kubectl argv lists `fn` sends (each `k3s kubectl ...` of its shell commands)."""
    cmds: list[str] = []

    def fake_sh(conn: Any, cmd: str, **kw: Any) -> Any:
        cmds.append(cmd)
        return SimpleNamespace(exited=0, stdout=json.dumps({"kind": "List", "items": []}),
                               stderr="")

    monkeypatch.setattr(facts, "sh", fake_sh)
    monkeypatch.setattr(nodes, "sh", fake_sh)
    fn(*args)
    out = []
    for cmd in cmds:
        for part in cmd.split("&&"):
            argv = shlex.split(part)
            assert argv[:2] == ["k3s", "kubectl"], part
            out.append(argv[2:])
    return out


@pytest.mark.parametrize("fn,args", [
    (facts.nodes, (None,)), (facts.readyz, (None,)),
    (nodes.forget_node, (None, "k3s-agent-01")),
])
def test_stand_in_serves_what_the_tasks_send(monkeypatch: pytest.MonkeyPatch, fn: Any,
                                             args: tuple[Any, ...]) -> None:
    for argv in sent(monkeypatch, fn, *args):
        a = KC._parser().parse_intermixed_args(argv)
        api = FakeApi()
        KC.dispatch(api, a)  # raises on what the stand-in cannot serve
        assert api.calls, argv


def test_request_timeout_is_honoured() -> None:
    assert KC.seconds("20s") == 20 and KC.seconds("1m") == 60 and KC.seconds("5") == 5
    assert KC.seconds("0") == 15 and KC.seconds("") == 15
    with pytest.raises(KC.KubectlError, match="request-timeout"):
        KC.seconds("soon")


def test_delete_secret_without_ignore_not_found_still_fails() -> None:
    a = KC._parser().parse_intermixed_args(
        ["-n", "kube-system", "delete", "secret", "x.node-password.k3s"])
    with pytest.raises(KC.KubectlError, match="NotFound"):
        KC.dispatch(FakeApi(), a)
