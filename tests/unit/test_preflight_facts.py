"""Parsers of host facts (tasks/facts/host.py), with outputs captured on Debian 12 hosts."""
import pytest

from tasks.facts import host as f

SS = """\
LISTEN 0      5      127.0.0.1:38395 0.0.0.0:* users:(("python",pid=6218,fd=12))        
LISTEN 0      250    10.79.0.1:3142  0.0.0.0:* users:(("apt-cacher-ng",pid=27584,fd=11))
LISTEN 0      80     127.0.0.1:3399  0.0.0.0:* users:(("mariadbd",pid=22682,fd=22))     
LISTEN 0      128      0.0.0.0:2024  0.0.0.0:*                                          
LISTEN 0      4096           *:6443        *:* users:(("haproxy",pid=811,fd=7),("haproxy",pid=810,fd=7))
LISTEN 0      128         [::]:22       [::]:* users:(("sshd",pid=95,fd=4))
"""


def test_parse_ss():
    socks = f.parse_ss(SS)
    assert [(s.address, s.port, s.process, s.pid) for s in socks] == [
        ("127.0.0.1", 38395, "python", 6218), ("10.79.0.1", 3142, "apt-cacher-ng", 27584),
        ("127.0.0.1", 3399, "mariadbd", 22682), ("0.0.0.0", 2024, "", 0),
        ("*", 6443, "haproxy", 811), ("::", 22, "sshd", 95)]


@pytest.mark.parametrize("text,unit", [
    ("9:name=systemd:/payload/system.slice/ssh.service\n8:pids:/\n"
     "4:memory:/process_api/b805a\n0::/payload/system.slice/ssh.service\n", "ssh.service"),
    ("0::/system.slice/haproxy.service\n", "haproxy.service"),
    ("0::/system.slice/mariadb.service\n", "mariadb.service"),
    ("0::/user.slice/user-0.slice/session-3.scope\n", "session-3.scope"),
    ("0::/system.slice/run-u12.service/payload\n", "run-u12.service"),
    # nested (a container seen from outside, a pod under k3s): the innermost unit
    ("0::/machine.slice/machine-khp.scope/payload/system.slice/haproxy.service\n",
     "haproxy.service"),
    ("9:name=systemd:/\n0::/\n", ""),
])
def test_parse_cgroup_unit(text, unit):
    assert f.parse_cgroup_unit(text) == unit


def test_sections():
    assert f._sections("@1\na\nb\n@22\n@3\nc") == {"1": "a\nb", "22": "", "3": "c"}


def test_parse_swaps():
    hdr = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    assert f.parse_swaps(hdr) == []
    assert f.parse_swaps(hdr + "/swapfile                               file\t\t2097148\t\t0\t\t-2\n"
                         "/dev/vda3 partition 1048572 0 -3\n") == ["/swapfile", "/dev/vda3"]


def test_parse_df_free():
    text = ("Filesystem         1-blocks        Used   Available Capacity Mounted on\n"
            "/dev/vda       270553174016 26233073664 82711220224      25% /\n")
    assert f.parse_df_free(text) == 82711220224


def test_clock_sample():
    s = f.ClockSample(remote=1045.0, local_before=1000.0, local_after=1000.2)
    assert s.offset == pytest.approx(44.9)
    assert s.uncertainty == pytest.approx(0.1)


LINKS = ('[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536},'
         '{"ifindex":2,"ifname":"ifb0","flags":["BROADCAST","NOARP"],"operstate":"DOWN"},'
         '{"ifindex":2,"link_index":5,"ifname":"host0","flags":["BROADCAST","MULTICAST","UP",'
         '"LOWER_UP"],"mtu":1500,"link_netnsid":0}]')


def test_parse_links():
    links = f.parse_links(LINKS)
    assert links["host0"] == f.Link("host0", True, True)
    assert links["ifb0"] == f.Link("ifb0", False, False)
    assert f.parse_links("") == {}


ADDRS = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever
4: eth0    inet6 fd00::2/64 scope global nodad \\       valid_lft forever preferred_lft forever
2: host0    inet 10.77.60.101/24 scope global secondary host0\\       valid_lft forever
"""


def test_parse_addrs():
    assert f.parse_addrs(ADDRS) == {"127.0.0.1": "lo", "::1": "lo", "192.0.2.2": "eth0",
                                    "fd00::2": "eth0", "10.77.60.101": "host0"}


def test_parse_getent():
    text = ("10.77.60.31     STREAM k3s-db-01.lab.lan\n10.77.60.31     DGRAM  \n"
            "10.77.60.31     RAW    \n")
    assert f.parse_getent(text) == ["10.77.60.31"]
    assert f.parse_getent("") == []


def test_parse_print_uris():
    text = ("'http://deb.debian.org/debian/dists/bookworm/InRelease' deb.debian.org_debian_dists"
            "_bookworm_InRelease 0 \n"
            "'http://deb.debian.org/debian-security/dists/bookworm-security/InRelease' x 0 \n"
            "'http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz' y 0 \n"
            "'http://example.org/flat/./Release' z 0 \n")
    assert f.parse_print_uris(text) == [
        "http://deb.debian.org/debian/dists/bookworm/InRelease",
        "http://deb.debian.org/debian-security/dists/bookworm-security/InRelease",
        "http://example.org/flat/./Release"]


def test_parse_mcast():
    assert f.parse_mcast("got a1b2c3 10.77.60.22\ngot ffee 10.77.60.23\nnoise\n") == \
        {"a1b2c3", "ffee"}


def test_fetch_error():
    out = ("Ign:1 http://10.255.255.1:9/x\nErr:1 http://10.255.255.1:9/x\n  404  Not Found\n"
           "E: Failed to fetch http://10.255.255.1:9/x  404  Not Found [IP: 10.255.255.1 9]\n"
           "E: Download Failed\n")
    assert f.fetch_error(out) == ("E: Failed to fetch http://10.255.255.1:9/x  404  Not Found "
                                  "[IP: 10.255.255.1 9]")
    assert f.fetch_error("") == "no output"


# ---- one round trip per host (issue 15: the no-op deploy)

def test_basics_one_script_parsed_into_every_fact():
    from tasks.facts import host as hf

    script = hf.basics_script(["api.lan", "nowhere.lan"], "/var/lib")
    assert script.count("; ") >= 7 and "df -PB1 /var/lib" in script
    out = ("@id\n0\n@os\nID=debian\n@swaps\nFilename Type\n/swapfile file 1 0 -2\n"
           "@addrs\n2: host0    inet 10.0.0.5/24 brd 10.0.0.255 scope global host0\n"
           '@links\n[{"ifname": "host0", "flags": ["UP", "MULTICAST"]}]\n'
           "@df\nFilesystem 1-blocks Used Available Capacity Mounted\n/dev/x 100 10 90 10% /\n"
           "@name api.lan\n10.0.0.100 STREAM api.lan\n10.0.0.100 DGRAM\n@name nowhere.lan\n")
    b = hf.parse_basics(out, ["api.lan", "nowhere.lan"])
    assert (b.uid, b.swaps, b.addrs, b.free) == ("0", ["/swapfile"], {"10.0.0.5": "host0"}, 90)
    assert b.names == {"api.lan": ["10.0.0.100"], "nowhere.lan": []}
    assert b.links["host0"].multicast and "ID=debian" in b.os_release
    assert hf.parse_basics("", ["api.lan"]).uid == ""  # sudo refused: nothing printed


def test_parallel_fetches_each_reported_with_its_error():
    from tasks.facts import host as hf

    uris = ["http://m/a/InRelease", "http://m/b/InRelease", "http://m/c/InRelease"]
    script = hf.fetch_script(uris)
    assert all(f"f {u} {i} &" in script for i, u in enumerate(uris)) and " wait; " in script
    out = ("@0 0\n@1 1\nErr:1 http://m/b/InRelease\nE: Failed to fetch http://m/b/InRelease"
           "  404  Not Found\n")
    got = hf.parse_fetches(out, uris)
    assert [c.ok for c in got] == [True, False, False]
    assert "404" in got[1].error and "no result" in got[2].error


def test_listeners_script_run_by_a_real_shell(monkeypatch):
    """One round trip: this process's listening socket comes back with its pid, and each
    pid's cgroup section is read (here, where ss and /proc are real)."""
    import os
    import socket
    import subprocess

    ran = []

    def local_sh(conn, cmd, **kw):
        ran.append(cmd)
        p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return p

    monkeypatch.setattr(f, "sh", local_sh)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        found = [x for x in f.listeners(None) if x.port == port]
    assert len(ran) == 1
    assert [(x.address, x.pid) for x in found] == [("127.0.0.1", os.getpid())]
