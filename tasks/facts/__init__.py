"""Observation: read-only probes and pure parsers for what the programs themselves say
(HAProxy's runtime API, keepalived/VRRP, MySQL/MariaDB replication, later k3s). Used by
every status task, by deploy's waits and by the failover drill; nothing here changes a host.
"""
