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


def test_recap_lists_hosts_in_inventory_order_not_completion_order():
    """Issue 11, defect 5: threads finish in any order; the recap follows the inventory,
    names that are not hosts (a VIP) come after, in first-seen order."""
    inv = inventory.load(ROOT / "hosts.toml")
    r = run.Run(Context(), "demo.task", inv=inv)
    names = [h.name for h in inv.with_role("db")] + [h.name for h in inv.with_role("k3s-balancer")]
    r.record("vip:db", "ready", run.OK)
    for name in reversed(names):
        r.record(name, "packages", run.OK)
    r.record("vip:api", "ready", run.OK)
    rows = [line.split()[0] for line in r.recap().splitlines()[2:]]
    want_hosts = [n for n in inv.hosts if n in names]
    assert rows == want_hosts + ["vip:db", "vip:api"]


def test_recap_order_is_pure():
    assert run.recap_order(["a", "b", "c"], ["x", "c", "a", "c", "y", "x"]) == ["a", "c", "x", "y"]
    assert run.recap_order(["a"], []) == []
