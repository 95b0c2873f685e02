"""The recap table and step lines."""
from pathlib import Path

from invoke import Context

from tasks.core import inventory, run

ROOT = Path(__file__).resolve().parents[2]


def test_recap_counts_per_host(capsys):
    inv = inventory.load(ROOT / "hosts.toml")
    r = run.Run(Context(), "demo.task", inv=inv)
    r.record("k3s-db-01", "packages", run.CHANGED)
    r.record("k3s-db-01", "config", run.OK)
    r.record("k3s-db-02", "packages", run.OK)
    r.record("k3s-db-02", "config", run.FAILED)
    table = r.recap()
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["host", "packages", "config"]
    assert "ok=1 changed=1 failed=0" in lines[2]
    assert "ok=1 changed=0 failed=1" in lines[3]
    assert r.changed
    out = capsys.readouterr().out
    assert "k3s-db-02" in out and "failed" in out


def test_step_records_changed_ok_failed():
    inv = inventory.load(ROOT / "hosts.toml")
    r = run.Run(Context(), "t", inv=inv)
    h = inv.hosts["k3s-db-01"]
    r.step(h, "a", lambda: True)
    r.step(h, "b", lambda: False)
    try:
        r.step(h, "c", lambda: 1 / 0)
    except ZeroDivisionError:
        pass
    assert [r.results[("k3s-db-01", s)] for s in "abc"] == ["changed", "ok", "failed"]
