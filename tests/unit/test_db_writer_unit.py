"""The writer lookup (facts.datastore): which db host HAProxy sends writes to, typed."""
from tasks.facts.datastore import VipView, Writer, of_view, rising_ahead, writer
from tasks.facts.haproxy import ServerStat

NAMES = {"k3s-db-01", "k3s-db-02"}


def _srv(name, status, backup=False):
    return ServerStat(proxy="k3s-db", server=name, backup=backup, status=status,
                      check="L7OK 0", since="1s")


def test_writer_is_the_first_up_primary_else_the_first_up_backup():
    assert writer([_srv("k3s-db-01", "UP"), _srv("k3s-db-02", "UP", True)], NAMES) == "k3s-db-01"
    assert writer([_srv("k3s-db-02", "UP", True), _srv("k3s-db-01", "DOWN")], NAMES) == "k3s-db-02"
    assert writer([_srv("k3s-db-01", "DOWN"), _srv("k3s-db-02", "MAINT", True)], NAMES) is None


def test_servers_of_other_backends_are_not_writers():
    assert writer([_srv("k3s-server-01", "UP"), _srv("k3s-db-02", "UP", True)],
                  NAMES) == "k3s-db-02"


def test_a_preferred_server_still_rising_means_the_writer_is_not_settled():
    # seen in the lab: both nodes rising together, the backup got UP a check earlier and
    # held the writes for a second before the primary took them over
    assert rising_ahead([_srv("k3s-db-01", "DOWN 29/30"), _srv("k3s-db-02", "UP", True)],
                        NAMES) == "k3s-db-01"
    assert rising_ahead([_srv("k3s-db-01", "DOWN"), _srv("k3s-db-02", "UP", True)],
                        NAMES) is None                         # primary failing: backup stays
    assert rising_ahead([_srv("k3s-db-01", "UP"), _srv("k3s-db-02", "DOWN 3/30", True)],
                        NAMES) is None                         # a rising backup changes nothing
    assert rising_ahead([_srv("k3s-db-01", "DOWN 0/30")], NAMES) is None


def test_writer_result_is_typed_known_unknown_or_none_up():
    up = VipView([_srv("k3s-db-01", "DOWN"), _srv("k3s-db-02", "UP", True)], "lb-01")
    assert of_view(up, NAMES) == Writer("k3s-db-02", "lb-01")
    down = VipView([_srv("k3s-db-01", "DOWN"), _srv("k3s-db-02", "DOWN", True)], "lb-01")
    assert of_view(down, NAMES) == Writer(None, "lb-01", known=True, reason="all DOWN")
    unread = VipView(None, None, "no balancer holds the datastore VIP")
    w = of_view(unread, NAMES)
    assert w.host is None and not w.known and "no balancer" in w.reason
