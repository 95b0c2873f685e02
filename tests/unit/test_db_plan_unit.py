"""The replication planner (replication.plan / direction_state): pure, typed decisions."""
import pytest

from tasks.db import sql
from tasks.db.replication import State, direction_state, plan
from tasks.db.session import Facts, Node
from tasks.facts import mysql as facts
from tasks.core.errors import Refused
from tasks.core.inventory import Host

A = Host("k3s-db-01", "10.77.0.31", ("db",), server_id=1)
B = Host("k3s-db-02", "10.77.0.32", ("db",), server_id=2)
USER = "repl"
D = sql.parse_version("10.11.6-MariaDB-0+deb12u1-log")


def healthy(src: Host) -> facts.ReplicaStatus:
    return facts.ReplicaStatus(configured=True, source_host=src.address, source_port=3306,
                             source_user=USER, io_running="Yes", sql_running="Yes", lag=0)


def node(h: Host, rep: facts.ReplicaStatus, data=None, rows=False) -> Node:
    n = Node(host=h, conn=None, d=D)
    n.facts = Facts(replica=rep, data=data or {}, has_data=rows,
                    binlog=("mysql-bin.000001", 4))
    return n


NONE = facts.ReplicaStatus(configured=False)


def kinds(actions):
    return [(x.kind.value, x.replica.name, x.source.name) for x in actions]


def test_healthy_both_ways_plans_nothing():
    assert plan(node(A, healthy(B)), node(B, healthy(A)), USER) == []


def test_first_run_configures_both_directions():
    assert kinds(plan(node(A, NONE), node(B, NONE), USER)) == [
        ("configure", "k3s-db-01", "k3s-db-02"), ("configure", "k3s-db-02", "k3s-db-01")]


def test_one_node_with_rows_seeds_the_empty_one_first():
    data = {"`k3s`.`kine`": 1234}
    acts = kinds(plan(node(A, NONE), node(B, NONE, data, rows=True), USER))
    assert acts[0] == ("seed", "k3s-db-01", "k3s-db-02")
    assert ("configure", "k3s-db-01", "k3s-db-02") in acts


def test_tables_without_rows_on_one_node_still_seed():
    acts = kinds(plan(node(A, NONE, {"`k3s`.`kine`": 0}), node(B, NONE), USER))
    assert acts[0] == ("seed", "k3s-db-02", "k3s-db-01")


def test_diverging_data_is_refused_and_names_the_tables():
    a = node(A, NONE, {"`k3s`.`kine`": 1}, rows=True)
    b = node(B, NONE, {"`k3s`.`kine`": 2}, rows=True)
    with pytest.raises(Refused, match=r"different data \(`k3s`.`kine`\)"):
        plan(a, b, USER)


def test_half_configured_with_different_data_is_refused():
    a = node(A, healthy(B), {"`k3s`.`kine`": 1}, rows=True)
    b = node(B, NONE, {"`k3s`.`kine`": 2}, rows=True)
    with pytest.raises(Refused):
        plan(a, b, USER)


def test_half_configured_with_equal_data_adds_the_missing_direction_only():
    data = {"`k3s`.`kine`": 7}
    acts = kinds(plan(node(A, healthy(B), data, True), node(B, NONE, data, True), USER))
    assert acts == [("configure", "k3s-db-02", "k3s-db-01")]


def test_replica_in_sql_error_is_refused_never_reset():
    bad = facts.ReplicaStatus(configured=True, source_host=B.address, source_user=USER,
                            io_running="Yes", sql_running="No", last_sql_errno=1062,
                            last_sql_error="Duplicate entry '5' for key 'PRIMARY'")
    with pytest.raises(Refused, match=r"k3s-db-01: replica in error .*1062.*never resets"):
        plan(node(A, bad), node(B, healthy(A)), USER)


def test_replica_of_a_foreign_source_is_refused():
    other = facts.ReplicaStatus(configured=True, source_host="10.9.9.9", source_user=USER,
                              io_running="Yes", sql_running="Yes")
    with pytest.raises(Refused, match="replicates from 10.9.9.9, not from its peer k3s-db-02"):
        plan(node(A, other), node(B, healthy(A)), USER)


@pytest.mark.parametrize("change,expected", [
    ({}, State.OK),
    ({"io_running": "No", "sql_running": "No"}, State.START),
    ({"io_running": "Connecting"}, State.KICK),
    ({"io_running": "Connecting", "last_io_errno": 2003}, State.KICK),
    ({"io_running": "Connecting", "last_io_errno": 1045}, State.REPAIR),
    ({"source_user": "someone"}, State.REPAIR),
])
def test_direction_states(change, expected):
    rep = facts.ReplicaStatus(**{**healthy(B).__dict__, **change})
    assert direction_state(rep, B, USER).state is expected


def test_stopped_direction_is_restarted_not_reconfigured():
    stopped = facts.ReplicaStatus(**{**healthy(B).__dict__, "io_running": "No",
                                   "sql_running": "No"})
    assert kinds(plan(node(A, stopped), node(B, healthy(A)), USER)) == [
        ("start", "k3s-db-01", "k3s-db-02")]
