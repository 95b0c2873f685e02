"""Jepsen-like set accounting of the drill's writes, and kine's revisions."""
from tasks.failover.accounting import Write, WriteOutcome as O, classify, kine_check

ACK, FAIL, IND = O.ACK, O.FAIL, O.INDETERMINATE


def test_all_present_on_both_nodes_is_clean():
    writes = [Write(1, ACK, 10), Write(2, ACK, 11), Write(3, FAIL)]
    res = classify(writes, {"a": {10: 1, 11: 2}, "b": {10: 1, 11: 2}})
    assert (res.acknowledged, res.present, res.clean) == (2, 2, True)
    assert res.lost == {} and res.duplicates == 0


def test_missing_on_one_node_is_lost_and_names_the_node():
    writes = [Write(1, ACK, 10), Write(2, ACK, 11)]
    res = classify(writes, {"a": {10: 1, 11: 2}, "b": {10: 1}})
    assert res.lost == {2: ("b",)} and res.present == 1 and not res.clean


def test_missing_everywhere_is_lost_on_both():
    res = classify([Write(5, ACK, 20)], {"a": {}, "b": {}})
    assert res.lost == {5: ("a", "b")}


def test_acknowledged_id_reused_by_another_row():
    """kine's case: the new writer handed the same id to another row."""
    writes = [Write(1, ACK, 10), Write(2, ACK, 11)]
    tables = {"a": {10: 1, 11: 2}, "b": {10: 1, 11: 99, 12: 2}}
    res = classify(writes, tables)
    assert res.reused == {11: ("b",)}
    assert res.moved == {2: ("b",)}   # seq 2 sits under id 12 there
    assert res.lost == {} and res.duplicates == 2 and not res.clean


def test_one_id_acknowledged_for_two_seqs():
    writes = [Write(1, ACK, 10), Write(2, ACK, 10)]
    res = classify(writes, {"a": {10: 1}, "b": {10: 2}})
    assert res.duplicate_ids == {10: (1, 2)}


def test_indeterminate_then_present_is_counted_not_lost():
    writes = [Write(1, ACK, 10), Write(2, IND), Write(3, IND)]
    res = classify(writes, {"a": {10: 1, 11: 2}, "b": {10: 1, 11: 2}})
    assert (res.indeterminate, res.indeterminate_present) == (2, 1)
    assert res.clean


def test_failed_write_found_anyway_is_flagged():
    res = classify([Write(1, FAIL)], {"a": {10: 1}, "b": {10: 1}})
    assert res.failed_present == (1,) and not res.clean


def test_kine_reused_revision_and_missing_ids():
    rows = {"a": {1: "x", 2: "y", 4: "z"}, "b": {1: "x", 2: "DIFF"}}
    k = kine_check(rows, "a")
    assert k.differing == (2,)
    assert k.missing_on == {"b": (4,)}
    assert k.gaps == 1 and k.revisions == 3 and not k.clean
    assert kine_check({"a": {1: "x"}, "b": {1: "x"}}, "a").clean


def test_a_row_missing_only_off_the_writer_is_not_lost_but_unreplicated():
    """[lab] after a partition of the writer, the fenced old writer lacks the rows the new
    one took: they are not lost (the writer has them; db.rejoin brings the node back), and
    the replication/checksum checks report the broken node."""
    writes = [Write(1, ACK, 10), Write(2, ACK, 11)]
    tables = {"a": {10: 1}, "b": {10: 1, 11: 2}}
    res = classify(writes, tables, writer="b")
    assert not res.lost and res.unreplicated == 1 and res.present == 1
    # the same rows when the node lacking them takes the writes (a failback): lost
    assert list(classify(writes, tables, writer="a").lost) == [2]
    # writer unknown: missing anywhere is lost
    assert list(classify(writes, tables).lost) == [2]
