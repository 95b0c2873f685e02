"""cluster.deploy's stage loop (no host touched: the check and the stages' tasks are fakes)."""
import pytest
from invoke import Context
from invoke.exceptions import Exit

from tasks.cluster import stages as cst
from tasks.cluster import tasks as ct
from tasks.core.errors import StepFailed
from tests.lab.test_cluster_lab import guide_inventory


@pytest.fixture
def fake(tmp_path, monkeypatch):
    (tmp_path / "hosts.toml").write_text(guide_inventory())
    monkeypatch.setenv("K3S_HA_INVENTORY", str(tmp_path / "hosts.toml"))
    ran: list[str] = []
    monkeypatch.setattr(ct, "check", lambda c, yes=False: ran.append("check"))

    def fake_stages(inv):
        return [cst.Stage(n, "x", ((f"{n}.task", lambda c, dry, yes, n=n: step(n)),))
                for n in ("balancers", "databases", "servers", "agents", "verify")]

    def step(n):
        ran.append(n)
        if n == fail.get("at"):
            raise StepFailed(f"{n} broke")

    fail: dict = {}
    monkeypatch.setattr(cst, "stages", fake_stages)
    return ran, fail


def test_stage_names_follow_the_guide(tmp_path):
    from tasks.core import inventory
    (tmp_path / "hosts.toml").write_text(guide_inventory())
    inv = inventory.load(tmp_path / "hosts.toml")
    got = [(s.name, [n for n, _ in s.tasks]) for s in cst.stages(inv)]
    assert got == [("balancers", ["db health endpoint first", "balancers.deploy"]),
                   ("databases", ["db.install", "db.configure", "db.secure", "db.replicate",
                                  "db.users", "db.health", "datastore writer"]),
                   ("servers", ["k3s.install-server"]), ("agents", ["k3s.join-agent"]),
                   ("verify", ["verify"])]


def test_all_stages_in_order_after_the_check(fake, capsys):
    ran, _ = fake
    ct.deploy(Context(), yes=True)
    assert ran == ["check", "balancers", "databases", "servers", "agents", "verify"]
    assert "stage times: check" in capsys.readouterr().out


def test_from_skips_the_earlier_stages(fake):
    ran, _ = fake
    ct.deploy(Context(), yes=True, from_="servers")
    assert ran == ["check", "servers", "agents", "verify"]


def test_unknown_from_is_refused_before_anything(fake):
    ran, _ = fake
    with pytest.raises(Exit) as ei:
        ct.deploy(Context(), yes=True, from_="dbs")
    assert ei.value.code == 2 and ran == []


def test_failed_stage_stops_and_names_the_resume_command(fake, capsys):
    ran, fail = fake
    fail["at"] = "servers"
    with pytest.raises(Exit) as ei:
        ct.deploy(Context(), yes=True)
    assert ei.value.code == 1 and ran[-1] == "servers" and "agents" not in ran
    out = capsys.readouterr().out
    assert "stage servers failed" in out and "fab cluster.deploy --from servers --yes" in out


def test_no_agents_in_the_inventory_means_an_empty_agents_stage(tmp_path):
    """Agents are 'any number': an inventory without one deploys (the drill's lab has none)."""
    import re

    from tasks.core import inventory
    text = re.sub(r'roles = \["k3s-agent"\]', 'roles = ["k3s-server"]', guide_inventory())
    (tmp_path / "hosts.toml").write_text(text)
    inv = inventory.load(tmp_path / "hosts.toml")
    agents = [s for s in cst.stages(inv) if s.name == "agents"][0]
    assert agents.tasks == () and "no k3s agent" in agents.changes


@pytest.mark.parametrize("running", [True, False])
def test_db_health_endpoint_before_haproxy_checks_it_when_the_databases_run(
        tmp_path, monkeypatch, running):
    """Adopting a hand-built cluster: the http check's endpoint must answer before
    balancers.deploy switches HAProxy to it (else the datastore VIP has no server and a
    running k3s exits); a fresh cluster gets it in the databases stage."""
    from tasks.core import run as core_run
    from tasks.db import health, tasks as dbt
    from tasks.facts import mysql

    (tmp_path / "hosts.toml").write_text(guide_inventory())
    monkeypatch.setenv("K3S_HA_INVENTORY", str(tmp_path / "hosts.toml"))
    monkeypatch.setattr(core_run, "lab_route_ok", lambda inv, a: True)
    monkeypatch.setattr(core_run.Run, "conn", lambda self, h: h.name)
    installed: list[str] = []

    def version(conn, name):
        if not running:
            raise StepFailed(f"{name}: mysqld does not answer")
        return "10.11"

    monkeypatch.setattr(mysql, "server_version", version)
    monkeypatch.setattr(health, "ensure_health", lambda r, conn, h: installed.append(h.name))
    monkeypatch.setattr(dbt, "health", lambda c, dry=False, yes=False: installed.append("late"))
    from tasks.core import inventory
    st = {s.name: dict(s.tasks) for s in cst.stages(inventory.load(tmp_path / "hosts.toml"))}
    st["balancers"]["db health endpoint first"](Context(), yes=True)
    assert installed == (["k3s-db-01", "k3s-db-02"] if running else [])
    st["databases"]["db.health"](Context(), yes=True)
    assert installed[-1:] == (["k3s-db-02"] if running else ["late"])


@pytest.mark.parametrize("pasted", ["K10garbage", ""])
def test_bad_token_pasted_in_a_stage_stops_with_the_resume_command(
        tmp_path, monkeypatch, capsys, pasted):
    """The stages' tasks are namespace tasks (@k3s_task) that deploy calls: an InputError
    inside one (here: a malformed token pasted at the token prompt of k3s.install-server)
    must reach deploy's stage loop, which names the failed stage and the resume command,
    and still exit 2 with the error's own message."""
    from tasks.core import secrets
    from tasks.core.cli import k3s_task
    from tasks.k3s import handover

    (tmp_path / "hosts.toml").write_text(guide_inventory())
    monkeypatch.setenv("K3S_HA_INVENTORY", str(tmp_path / "hosts.toml"))
    ran: list[str] = []
    monkeypatch.setattr(ct, "check", lambda c, yes=False: ran.append("check"))
    monkeypatch.setattr(secrets, "ask_password", lambda *a, **kw: pasted)

    @k3s_task
    def install_server(c, dry=False, yes=False):
        ran.append("servers")
        handover.ask_token(handover.Kind.SERVER)

    @k3s_task
    def fine(c, dry=False, yes=False):
        ran.append("fine")

    monkeypatch.setattr(cst, "stages", lambda inv: [
        cst.Stage("balancers", "x", (("balancers.deploy", fine),)),
        cst.Stage("servers", "x", (("k3s.install-server", install_server),)),
        cst.Stage("agents", "x", (("k3s.join-agent", fine),))])
    with pytest.raises(Exit) as ei:
        ct.deploy(Context(), yes=True)
    assert ran == ["check", "fine", "servers"]
    assert ei.value.code == 2 and "pasted token" in str(ei.value.message)
    assert str(ei.value.message).startswith("error: ")
    out = capsys.readouterr().out
    assert "stage servers failed in k3s.install-server" in out
    assert "fab cluster.deploy --from servers --yes" in out


def test_a_failed_namespace_task_in_a_stage_names_the_resume_command(fake, monkeypatch,
                                                                       capsys):
    """The same for a step failing on a host inside a namespace task: exit 1, the hint."""
    from tasks.core.cli import k3s_task

    @k3s_task
    def deploy_balancers(c, dry=False, yes=False):
        raise StepFailed("k3s-lb-01: haproxy -c failed")

    monkeypatch.setattr(cst, "stages", lambda inv: [
        cst.Stage("balancers", "x", (("balancers.deploy", deploy_balancers),))])
    monkeypatch.setattr(ct, "interactive", lambda: True)  # an operator saying yes
    monkeypatch.setattr(ct, "confirm", lambda question: True)
    with pytest.raises(Exit) as ei:
        ct.deploy(Context())  # no --yes in the resume command then
    assert ei.value.code == 1 and "haproxy -c failed" in str(ei.value.message)
    out = capsys.readouterr().out
    assert "stage balancers failed in balancers.deploy" in out
    assert "fab cluster.deploy --from balancers " in out and "--yes" not in out
