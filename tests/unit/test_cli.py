"""The fab command line: namespaces, documented options, clean errors."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAB = [sys.executable, "-m", "fabric"]  # same as the `fab` script


def fab(*args, env=None, timeout=60):
    e = {k: v for k, v in os.environ.items() if not k.startswith("K3S_HA_")}
    e.update(env or {})
    return subprocess.run(FAB + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=e, stdin=subprocess.DEVNULL)


def collection():
    sys.path.insert(0, str(ROOT))
    import fabfile

    return fabfile.ns


def all_tasks():
    ns = collection()
    out = []
    for name in ns.task_names:
        out.append((name, ns[name]))
    return out


def test_fab_lists_namespaces():
    p = fab("-l")
    assert p.returncode == 0, p.stderr
    for nsname in {n.split(".")[0] for n, _ in all_tasks()}:
        assert f"{nsname}." in p.stdout
    assert "cluster.check" in p.stdout


@pytest.mark.parametrize("name,task", all_tasks(), ids=[n for n, _ in all_tasks()])
def test_every_task_documents_every_option(name, task):
    assert task.__doc__ and task.__doc__.strip(), f"{name} has no docstring"
    missing = [a.name for a in task.get_arguments() if not a.help]
    assert not missing, f"{name}: options without help: {missing}"


def test_help_shows_options():
    p = fab("--help", "cluster.check")
    assert p.returncode == 0 and "--yes" in p.stdout and "never prompt" in p.stdout


def test_broken_inventory_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "hosts.toml").read_text().replace('roles = ["db"]', 'roles = ["dbb"]'))
    p = fab("cluster.check", "--yes", env={"K3S_HA_INVENTORY": str(bad)})
    assert p.returncode == 2, (p.stdout, p.stderr)
    out = p.stdout + p.stderr
    assert "Traceback" not in out
    assert "hosts.k3s-db-01.roles[0]" in out and "did you mean 'db'" in out
    assert str(bad) in out


def test_invalid_toml_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[hosts\n")
    p = fab("cluster.check", env={"K3S_HA_INVENTORY": str(bad)})
    assert p.returncode == 2 and "Traceback" not in p.stderr and "line 1" in p.stderr


def test_lab_inventory_refuses_when_lab_is_down(tmp_path):
    """Lab addresses are never targeted unless routed through the lab's own interface."""
    inv = tmp_path / "inv.toml"
    inv.write_text((ROOT / "hosts.toml").read_text().replace('name = "kha"', 'name = "kzz"'))
    p = fab("cluster.check", "--yes", env={"K3S_HA_INVENTORY": str(inv)})
    assert p.returncode == 3
    assert "not up" in p.stderr and "fab lab.up" in p.stderr and "Traceback" not in p.stderr


def test_deploy_without_terminal_or_yes_fails_before_any_ssh():
    p = fab("cluster.deploy")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "--yes" in p.stderr and "no terminal" in p.stderr and "Traceback" not in p.stderr
    assert "cluster.check" not in p.stdout


def test_help_given_after_a_positional_task_argument_points_at_the_right_form():
    p = fab("lab.ssh", "--help")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "'--help' is not a host name" in p.stderr and "fab --help lab.ssh" in p.stderr
    assert "Traceback" not in p.stderr


def test_shared_help_texts_are_one_line_and_distinct():
    from tasks.core import cli

    texts = {n: getattr(cli, n) for n in dir(cli) if n.startswith("H_")}
    assert {"H_DRY", "H_YES", "H_HOST"} <= set(texts)
    assert all(t and "\n" not in t and len(t) < 100 for t in texts.values())
    assert len(set(texts.values())) == len(texts)


@pytest.mark.parametrize("old,new,key", [
    ("server_id = 1", "server_id = 0", "hosts.k3s-db-01.server_id"),
    ('interface = "host0"', 'interface = ""', "vips.api.interface"),
])
def test_inventory_holes_exit_2_before_any_ssh(tmp_path, old, new, key):
    """Issue 11, defect 4, through the command line: exit 2, the key and a Fix named."""
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "hosts.toml").read_text().replace(old, new, 1))
    p = fab("cluster.check", "--yes", env={"K3S_HA_INVENTORY": str(bad)})
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    assert key in out and "Fix:" in out and "Traceback" not in out


def test_the_observation_layer_imports_first_without_a_cycle() -> None:
    """facts.mysql uses db.sql; the db package must not pull its task modules (which use
    facts.mysql) in at import. A fresh interpreter imports facts first."""
    code = "import tasks.facts.mysql, tasks.facts.datastore, tasks.db; print(len(tasks.db.ns.tasks))"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) >= 10
