"""Fleet feedback on the hub (issue 20): the nodes' reports per release, the automatic halt, and the
routes that read and change them."""

from zos_upgrade.hubserver.rollout.api import RolloutAPI, status_of
from zos_upgrade.hubserver.rollout.record import Halt, HaltPolicy, ReleaseRecord
from zos_upgrade.hubserver.rollout.store import RolloutLimits, RolloutStore

__all__ = ["Halt", "HaltPolicy", "ReleaseRecord", "RolloutAPI", "RolloutLimits", "RolloutStore", "status_of"]
