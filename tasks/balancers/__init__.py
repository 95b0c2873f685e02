"""Guide step 1, the balancers: HAProxy + keepalived on both pairs (API VIP :6443, datastore
VIP :3306): install, render and validate the configs, reload on change, wait for one VIP
holder per pair, and show VRRP and backend state (`fab balancers.*`).
"""
from invoke import Collection

from . import tasks

ns = Collection.from_module(tasks, name="balancers")
