"""The drill's scenarios (pure data): what each disrupts, the fault, the restore and what is
expected. Faults and restores are named here (`Action`); `actions.py` carries them out,
with the lab's fault API in the lab and expiring host rules on real hosts.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from ..core.inventory.schema import FAILOVER_KINDS


class Tier(enum.Enum):
    API = "api"      # the k3s API balancer pair and its VIP
    DB = "db"        # the datastore balancers, the VIP and the two databases
    K3S = "k3s"      # the k3s servers


class Target(enum.Enum):
    """Which host a scenario disrupts, resolved from the live cluster at fault time."""
    API_VIP_HOLDER = "the API balancer holding the API VIP"
    DB_VIP_HOLDER = "the datastore balancer holding the datastore VIP"
    DB_WRITER = "the database the datastore VIP sends writes to"
    DB_STANDBY = "the database that does not take writes"
    DB_PAIR = "both databases (the link between them)"
    K3S_SERVER = "the first k3s server"


class Action(enum.Enum):
    """A fault and its restore, carried out by actions.py."""
    STOP_SERVICE = "stop the service"
    START_SERVICE = "start the service"
    POWER_OFF = "host down (lab: power cut; real host: isolated by expiring firewall rules)"
    POWER_ON = "host back (lab: boot; real host: rules removed)"
    PARTITION = "host partitioned (lab: port off the switch; real host: expiring rules)"
    HEAL = "partition healed"
    CUT_LINK = "the two databases cannot reach each other (lab: switch rules; real: expiring)"
    MEND_LINK = "the link between the databases restored"
    FREEZE = "the API hung (lab: the stand-in's hang fault; real k3s: SIGSTOP, expiring SIGCONT)"
    THAW = "the API answering again"


class Window(enum.Enum):
    """Where the scenario's outage threshold applies."""
    FAULT = "from the fault on"
    RETURN = "from the restore on (the node coming back must cost nothing)"


RESTORE = {Action.STOP_SERVICE: Action.START_SERVICE, Action.POWER_OFF: Action.POWER_ON,
           Action.PARTITION: Action.HEAL, Action.CUT_LINK: Action.MEND_LINK,
           Action.FREEZE: Action.THAW}


@dataclass(frozen=True)
class Scenario:
    name: str
    tier: Tier
    target: Target
    fault: Action
    service: str = ""        # for STOP_SERVICE / FREEZE: haproxy, mysqld, k3s
    hold_s: float = 8.0      # how long the fault lasts before the restore
    window: Window = Window.FAULT
    probe: str = ""          # the probe whose outage is measured against the threshold
    kind: str = ""           # the threshold family ([failover] max_outage_s.<kind>)

    @property
    def restore(self) -> Action:
        return RESTORE[self.fault]

    @property
    def disrupts(self) -> str:
        what = f"{self.fault.value}" + (f" ({self.service})" if self.service else "")
        return f"{self.target.value}: {what}; then {self.restore.value}"


API, API_AUTH, WRITES = "api-ping", "api-auth", "db-writer"
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("api-haproxy-stopped", Tier.API, Target.API_VIP_HOLDER, Action.STOP_SERVICE,
             "haproxy", probe=API, kind="haproxy-stopped"),
    Scenario("api-balancer-down", Tier.API, Target.API_VIP_HOLDER, Action.POWER_OFF,
             probe=API, kind="balancer-down"),
    Scenario("api-balancer-partitioned", Tier.API, Target.API_VIP_HOLDER, Action.PARTITION,
             probe=API, kind="balancer-partitioned"),
    Scenario("db-haproxy-stopped", Tier.DB, Target.DB_VIP_HOLDER, Action.STOP_SERVICE,
             "haproxy", probe=WRITES, kind="haproxy-stopped"),
    Scenario("db-balancer-down", Tier.DB, Target.DB_VIP_HOLDER, Action.POWER_OFF,
             probe=WRITES, kind="balancer-down"),
    Scenario("db-primary-stopped", Tier.DB, Target.DB_WRITER, Action.STOP_SERVICE, "mysqld",
             hold_s=15, probe=WRITES, kind="primary-down"),
    Scenario("db-primary-down", Tier.DB, Target.DB_WRITER, Action.POWER_OFF, hold_s=15,
             probe=WRITES, kind="primary-down"),
    Scenario("db-primary-partitioned", Tier.DB, Target.DB_WRITER, Action.PARTITION,
             hold_s=20, probe=WRITES, kind="primary-partitioned"),
    Scenario("db-primary-returning", Tier.DB, Target.DB_WRITER, Action.POWER_OFF, hold_s=15,
             window=Window.RETURN, probe=WRITES, kind="primary-returning"),
    Scenario("db-standby-down", Tier.DB, Target.DB_STANDBY, Action.POWER_OFF, hold_s=10,
             probe=WRITES, kind="standby-down"),
    Scenario("db-replication-cut", Tier.DB, Target.DB_PAIR, Action.CUT_LINK, hold_s=10,
             probe=WRITES, kind="replication-cut"),
    Scenario("k3s-server-stopped", Tier.K3S, Target.K3S_SERVER, Action.STOP_SERVICE, "k3s",
             probe=API, kind="server-down"),
    Scenario("k3s-server-down", Tier.K3S, Target.K3S_SERVER, Action.POWER_OFF,
             probe=API, kind="server-down"),
    # a hung kube-apiserver still answers /ping (k3s's own router does): measured with an
    # authenticated /readyz through the VIP, the request a hung API cannot answer
    Scenario("k3s-api-hung", Tier.K3S, Target.K3S_SERVER, Action.FREEZE, "k3s",
             probe=API_AUTH, kind="api-hung"),
)
BY_NAME = {s.name: s for s in SCENARIOS}

# Default thresholds (seconds of the longest outage of the scenario's probe), from issue 14's
# goals and the published figures (../shared/docs/facts-k3s.md): a datastore switch in well
# under 10 s (k3s loses its leases at ~10 s), the API VIP under 4 s with the guide's
# settings, no outage when a node returns. The inventory's [failover] table overrides them.
MAX_OUTAGE_S = dict(FAILOVER_KINDS)  # defaults; the inventory's [failover] max_outage_s wins
MAX_LOST_WRITES = 0
MAX_DUPLICATES = 0


def select(names: list[str]) -> list[Scenario]:
    """The scenarios named (all when none), in table order; unknown names -> ValueError."""
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(", ".join(unknown))
    return [s for s in SCENARIOS if not names or s.name in names]
