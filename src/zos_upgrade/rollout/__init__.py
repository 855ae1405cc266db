"""Fleet rollout rules both a node and the hub apply (pure, below every client): the phased rollout
plan and each node's bucket (``plan.py``).

Nothing here does I/O; the daemon decides when a node asks, the hub decides when a rollout halts.
"""

from zos_upgrade.rollout.errors import RolloutError
from zos_upgrade.rollout.plan import (
    RolloutPlan,
    Step,
    admits,
    bucket,
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
    "opens_at",
    "parse_plan",
    "percent_at",
    "plan_document",
]
