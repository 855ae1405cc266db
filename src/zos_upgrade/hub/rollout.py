"""The fleet-feedback wire objects a node and the hub share (issue 20, items 4 and 5).

A node reports how each transaction ended (``POST /api/rollout/<repo>/<name>/report``) and reads a
release's halt flag (``GET /api/rollout/<repo>/<name>/halt``). Both sides decode with the same
strict structs, so a field one side sends the other accepts: unknown fields, wrong types, an id
with a space, a 10 KB reason are refused by name, not stored.
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from zos_upgrade.hub.models import HubError

__all__ = [
    "MAX_REPORT_BYTES",
    "RESULTS",
    "HaltFlag",
    "HaltRecord",
    "InvalidReport",
    "ReasonCount",
    "Report",
    "ReportResult",
    "RolloutStatus",
    "decode_report",
    "node_token",
    "valid_node_id",
]

MAX_REPORT_BYTES = 4096
MAX_REASON_CHARS = 1024

ReportResult = Literal["upgraded", "failed", "rolled-back", "waiting"]
RESULTS: tuple[ReportResult, ...] = ("waiting", "upgraded", "failed", "rolled-back")

# a node id is a name, never markup or a path: letters, digits and . _ : - (up to 128)
NodeId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]  # = _NODE_ID
Group = Annotated[str, Meta(pattern=r"^([A-Za-z0-9][A-Za-z0-9._:-]{0,63})?$")]
VersionText = Annotated[str, Meta(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$")]
Seconds = Annotated[float, Meta(ge=0, le=30 * 86400)]
DurationName = Annotated[str, Meta(pattern=r"^[a-z][a-z_]{0,31}$")]
Reason = Annotated[str, Meta(max_length=MAX_REASON_CHARS)]


class InvalidReport(HubError):
    """A report that is not one (bad JSON, an unknown field, a value out of range): HTTP 400."""


class Report(Struct, forbid_unknown_fields=True, frozen=True):
    """How one transaction of one node ended, as the node tells the hub."""

    node_id: NodeId
    version: VersionText  # the release's version (the flist is named in the URL)
    version_before: VersionText
    version_after: VersionText
    result: ReportResult
    group: Group = ""
    reason: Reason = ""
    # e.g. {"total": 41.2, "download": 12.0}; at most 8 named durations
    durations: Annotated[dict[DurationName, Seconds], Meta(max_length=8)] = msgspec.field(
        default_factory=dict)


class HaltFlag(Struct, frozen=True):
    """``GET .../halt``: unsigned on purpose — a halt can only stop upgrades, never start one."""

    halted: bool
    reason: str = ""


class HaltRecord(Struct, frozen=True):
    at: float
    by: str
    reason: str


class ReasonCount(Struct, frozen=True):
    reason: str
    nodes: int


class RolloutStatus(Struct, frozen=True):
    """``GET /api/rollout/<repo>/<name>``: the release's counts, failures' reasons, halt, history
    (points ``[at, waiting, upgraded, failed, rolled_back]``)."""

    repo: str
    name: str
    counts: dict[ReportResult, int]
    halted: bool
    halt: HaltRecord | None
    reasons: list[ReasonCount]
    plan: dict[str, Any] | None = None
    history: list[tuple[float, int, int, int, int]] = msgspec.field(default_factory=list)


def decode_report(body: bytes) -> Report:
    """The report in ``body``, or :class:`InvalidReport` saying what was wrong."""
    if len(body) > MAX_REPORT_BYTES:
        raise InvalidReport(f"report of {len(body)} bytes is over the {MAX_REPORT_BYTES} allowed")
    try:
        return msgspec.json.decode(body, type=Report)
    except msgspec.ValidationError as exc:
        raise InvalidReport(f"invalid report: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidReport(f"report is not JSON: {exc}") from exc


_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def valid_node_id(node_id: str) -> str:
    """``node_id`` if a report may carry it, else :class:`InvalidReport` saying why."""
    if not _NODE_ID.fullmatch(node_id):
        raise InvalidReport(f"node id {node_id[:80]!r} must be 1 to 128 letters, digits or . _ : - "
                            "(starting with a letter or digit)")
    return node_id


def node_token(secret: str, node_id: str) -> str:
    """The bearer token of ``node_id``: an HMAC of the id under the hub's node secret.

    Derived, not stored: the hub needs no table of 10,000 tokens, checks one in constant time, and
    a token says which node it belongs to, so one node cannot report as another."""
    import hashlib  # here: hashlib loads OpenSSL's libcrypto, which an idle daemon does not need
    import hmac

    mac = hmac.new(secret.encode(), b"zos-upgrade node report\0" + node_id.encode(), hashlib.sha256)
    return "zn1." + base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")
