"""Outages and dual VIP ownership from probe time series."""
from tasks.failover.timeline import (Outcome, Sample, first_ok_after, gaps, outage,
                                     overlap_seconds)

OK, F, I = Outcome.OK, Outcome.FAIL, Outcome.INDETERMINATE


def series(*pairs):
    return [Sample(t, o) for t, o in pairs]


def test_outage_longest_and_total_and_detect():
    s = series((0, OK), (1, OK), (2, F), (2.5, I), (3, OK), (4, F), (4.2, OK), (5, OK))
    o = outage(s, since=1.5)
    assert o.detect_s == 0.5
    assert o.longest_s == 1.0 and o.total_s == 1.2
    assert [(g.start, g.end) for g in o.gaps] == [(2, 3), (4, 4.2)]


def test_outage_before_the_window_is_ignored_and_none_detected():
    s = series((0, F), (1, OK), (2, OK))
    o = outage(s, since=0.5)
    assert o.detect_s is None and o.longest_s == 0.0


def test_a_request_in_flight_when_the_fault_hits_counts_from_the_fault():
    """[lab] a write sent 0.05 s before a partition, indeterminate 1.3 s later, then writes
    on the new writer: the drill reported 0.00 s of outage (the sample started before the
    window) while its timeline showed the gap."""
    s = [Sample(3.0, OK, 0.01), Sample(3.95, I, 1.35), Sample(5.3, OK, 0.01),
         Sample(5.4, OK, 0.01)]
    o = outage(s, since=4.0)
    assert o.detect_s == 0.0 and round(o.longest_s, 2) == 1.3
    # one that ended before the fault is still ignored
    assert outage([Sample(3.0, F, 0.5), Sample(3.6, OK, 0.01)], since=4.0).detect_s is None


def test_outage_still_open_at_the_end_lasts_to_the_last_sample():
    s = series((0, OK), (1, F), (3, F))
    assert gaps(s)[0].length == 2.0


def test_window_end_bounds_the_outage():
    s = series((0, OK), (1, F), (5, OK), (9, F))
    assert outage(s, 0, until=6).total_s == 4.0


def test_dual_ownership_counts_overlap_only():
    a = series((0, OK), (2, OK), (4, F), (6, F))
    b = series((0, F), (1, OK), (3, OK), (5, F))
    # both hold from 1 (b takes it) to 4 (a lets go)
    assert overlap_seconds({"a": a, "b": b}) == 3.0
    # an unreadable member does not count as holding
    c = series((0, I), (1, I), (5, I))
    assert overlap_seconds({"a": a, "c": c}) == 0.0


def test_first_ok_after_is_healthy_for_good():
    s = series((0, OK), (1, F), (2, OK), (3, F), (4, OK), (5, OK))
    assert first_ok_after(s, 0.5) == 4
