"""Fleet rollout rules both a node and the hub apply (pure, below every client): the phased rollout
plan, each node's bucket and the failure threshold (``plan.py``), weekly maintenance windows
(``windows.py``), and FleetLock's wire shapes with the node's client (``fleetlock.py``, the one
module here that does I/O). The daemon decides when a node asks, the hub when a rollout halts.
"""

from zos_upgrade.rollout.errors import RolloutError
from zos_upgrade.rollout.plan import (
    RolloutPlan,
    Step,
    admits,
    bucket,
    exceeds_threshold,
    opens_at,
    parse_plan,
    percent_at,
    plan_document,
)

__all__ = [
    "RolloutError",
    "RolloutPlan",
    "Step",
    "admits",
    "bucket",
    "exceeds_threshold",
    "opens_at",
    "parse_plan",
    "percent_at",
    "plan_document",
]
