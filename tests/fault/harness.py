"""The crash harness: a sandbox node under a real supervisord, upgrades in child processes, kills.

A :class:`FaultNode` holds one seed's node: the hub serves the seed's releases, the node runs one of
them, and every scenario upgrades it to the other one in a child process (``python -m
tests.support.node upgrade``: the Upgrader, exactly as the daemon drives it) and kills that child —
at a named crash point (``ZOS_UPGRADE_CRASH_AT``) or with SIGKILL to its process group after a
seeded random delay. A fresh child then recovers, and :func:`FaultNode.check` verifies every
invariant. The node is never reset between scenarios: each one starts where the previous one
converged, so scenarios alternate between upgrades and downgrades.

When the upgrade child exits with RestartNeeded (3: it replaced its own program), the harness does
what the supervisor would: it starts the program again (``recover`` continues the transaction).
``FaultNode.self_update`` switches that path off (the program is then an ordinary file of the
release), so the steps after it are crashed both in the first process and in the continuation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.fault.invariants import check_services, check_state, which_release
from tests.fault.releases import FAILING, NEW, OLD, ReleasePair, flist_name, release_pair
from tests.support.node import Sandbox, child_command, install_hub_flist, tree_digest
from tests.support.procs import REPO
from tests.support.supervisord import RunningSupervisord, running_supervisord
from zos_upgrade.supervisor.supervisord import SupervisordClient

# Crash points after which recovery goes FORWARD: the commit point (the journal's "committed") is
# passed, or the upgrader replaced its own program and the restarted program carries on.
ROLLS_FORWARD = frozenset({"after-self-update", "after-manifest", "after-boot-files"})
RESTART_NEEDED = 3
CHILD_TIMEOUT = 90.0


@dataclass
class Run:
    """How one child ended: its exit code (-9 when killed), and its stderr for the report."""

    returncode: int
    stderr: str
    killed: bool = False


@dataclass
class Tally:
    """Scenario, kill and violation counts of one campaign; ``summary()`` is its report line."""

    name: str
    unit: str = "kills"
    scenarios: int = 0
    kills: int = 0
    recovery_kills: int = 0
    violations: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def record(self, label: str, problems: list[str]) -> None:
        self.scenarios += 1
        for problem in problems:
            self.violations.append(f"{label}: {problem}")

    def summary(self) -> str:
        return (f"{self.name}: {self.scenarios} scenarios, {self.kills} {self.unit} of upgrades "
                f"+ {self.recovery_kills} of recoveries, {len(self.violations)} violations, "
                f"{time.monotonic() - self.started:.1f} s")

    def report(self) -> str:
        """Print every violation and the summary; the caller asserts there were none."""
        lines = [*self.violations, self.summary()]
        text = "\n".join(lines)
        print(text, flush=True)
        return text


@dataclass
class KillResult:
    killed: bool = False
    recovery_killed: bool = False
    recovery_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


class FaultNode:
    """One seed's node, hub and supervisord; scenarios move it between the two releases."""

    def __init__(self, box: Sandbox, sd: RunningSupervisord, pair: ReleasePair,
                 digests: dict[str, dict[str, str]], current: str) -> None:
        self.box = box
        self.sd = sd
        self.pair = pair
        self.digests = digests
        self.current = current
        self.self_update = True
        self.logs = box.base / "child-logs"
        self.logs.mkdir(exist_ok=True)

    @property
    def seed(self) -> int:
        return self.pair.seed

    def other(self) -> str:
        return OLD if self.current == NEW else NEW

    # -- children ---------------------------------------------------------------------------

    def child(self, action: str, *, to: str = "", crash_at: str | None = None,
              kill_after: float | None = None) -> Run:
        """Run an ``upgrade``/``recover`` child; SIGKILL its process group after ``kill_after`` s."""
        cmd, env = child_command(self.box, action, socket=self.sd.socket_path, include=self.sd.include_dir,
                                 to=self.pair.fqdn(to) if to else "", crash_at=crash_at, probation=0.2,
                                 self_update=self.self_update)
        with tempfile.TemporaryFile(dir=self.logs) as err:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
            killed = False
            try:
                proc.wait(CHILD_TIMEOUT if kill_after is None else kill_after)
            except subprocess.TimeoutExpired:
                # a power cut takes the hooks the child started too: kill the whole group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                killed = kill_after is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # nothing of a crashed child outlives it
            err.seek(0)
            stderr = err.read()[-4000:].decode(errors="replace")
        return Run(proc.returncode, stderr, killed)

    def upgrade_chain(self, to: str, *, crash_at: str | None = None, kill_after: float | None = None) -> Run:
        """Upgrade to ``to`` as a supervised node would: on RestartNeeded start the program again.

        ``kill_after`` counts from the start of the first child, across the restart.
        """
        started = time.monotonic()
        run = self.child("upgrade", to=to, crash_at=crash_at, kill_after=kill_after)
        if run.returncode == RESTART_NEEDED:
            left = None if kill_after is None else max(0.0, kill_after - (time.monotonic() - started))
            run = self.child("recover", crash_at=crash_at, kill_after=left)
        return run

    def recover(self, *, kill_after: float | None = None) -> Run:
        return self.child("recover", kill_after=kill_after)

    # -- invariants -------------------------------------------------------------------------

    def check(self) -> tuple[str | None, list[str]]:
        """Every invariant; returns the release the node is on (None: neither) and the violations."""
        version, problems = which_release(self.box.root, self.digests)
        if version is None:
            return None, problems
        problems += check_state(self.box.root, self.box.state, version, self.pair.fqdn(version))
        problems += check_services(self.sd, self.box.root, version, self.pair.services[version])
        if not problems:
            self.current = version
        return version, problems

    # -- scenarios --------------------------------------------------------------------------

    def crash_point(self, point: str) -> list[str]:
        """Crash an upgrade (or, for ``mid-rollback``, a failing one) at ``point``; recover; check.

        The node must converge where the commit rule says: forward after the commit point or the
        self-update, back before it.
        """
        start = self.current
        target = FAILING if point == "mid-rollback" else self.other()
        run = self.upgrade_chain(target, crash_at=point)
        if run.returncode != -signal.SIGKILL:
            return [f"crash point {point} not reached (exit {run.returncode}): {run.stderr[-1500:]}"]
        again = self.recover()
        if again.returncode != 0:
            return [f"recovery after {point} exited {again.returncode}: {again.stderr[-1500:]}"]
        version, problems = self.check()
        want = target if point in ROLLS_FORWARD else start
        if version is not None and version != want:
            problems.append(f"converged to {version}; a crash at {point} must end on {want}")
        return problems

    def random_kill(self, delay: float, recovery_delay: float | None) -> KillResult:
        """SIGKILL an upgrade ``delay`` s after it started; with ``recovery_delay``, SIGKILL the first
        recovery that long after it started too; then recover and check."""
        target = self.other()
        run = self.upgrade_chain(target, kill_after=delay)
        result = KillResult(killed=run.killed)
        if not run.killed and run.returncode != 0:
            result.problems.append(
                f"upgrade failed without a kill (exit {run.returncode}): {run.stderr[-1500:]}")
            return result
        if recovery_delay is not None:
            first = self.recover(kill_after=recovery_delay)
            result.recovery_killed = first.killed
            if not first.killed and first.returncode != 0:
                result.problems.append(f"recovery exited {first.returncode}: {first.stderr[-1500:]}")
                return result
        started = time.monotonic()
        again = self.recover()
        result.recovery_seconds = time.monotonic() - started
        if again.returncode != 0:
            result.problems.append(f"recovery exited {again.returncode}: {again.stderr[-1500:]}")
            return result
        version, problems = self.check()
        result.problems += problems
        if not run.killed and version != target:
            result.problems.append(f"the upgrade finished, yet the node is on {version}, not {target}")
        return result

    def timed_upgrade(self) -> tuple[float, list[str]]:
        """One uncrashed upgrade (the chain), its wall time and its violations (it must commit)."""
        target = self.other()
        started = time.monotonic()
        run = self.upgrade_chain(target)
        elapsed = time.monotonic() - started
        if run.returncode != 0:
            return elapsed, [f"uncrashed upgrade exited {run.returncode}: {run.stderr[-1500:]}"]
        version, problems = self.check()
        if version != target:
            problems.append(f"uncrashed upgrade ended on {version}, not {target}")
        return elapsed, problems


async def _install(box: Sandbox, sd: RunningSupervisord, fqdn: str) -> None:
    client = SupervisordClient(sd.socket_path, include_dir=sd.include_dir, start_seconds=0)
    async with box.hub_client() as hub:
        upgrader = box.upgrader(client, self_update=False, probation=0.2)
        await install_hub_flist(upgrader, hub, fqdn)


@contextlib.contextmanager
def fault_node(base: Path, seed: int) -> Iterator[FaultNode]:
    """A node on OLD with NEW (and FAILING) on its hub, for ``seed``; both tree hashes measured.

    NEW is installed first and OLD over it, so the recorded hashes are of real installs.
    """
    box = Sandbox(base)
    pair = release_pair(box.root, seed)
    with running_supervisord() as sd, box.serving_hub():
        for version, tree in pair.trees.items():
            box.pack(flist_name(version), tree)
        digests: dict[str, dict[str, str]] = {}
        for version in (NEW, OLD):
            asyncio.run(_install(box, sd, pair.fqdn(version)))
            digests[version] = tree_digest(box.root)
        node = FaultNode(box, sd, pair, digests, OLD)
        installed, problems = node.check()
        assert installed == OLD and not problems, problems
        yield node


def random_kill_campaign(node: FaultNode, tally: Tally, *, kills: int, recovery_every: int,
                         max_scenarios: int) -> None:
    """Kill upgrades at random moments until ``kills`` upgrades were killed.

    Delays are uniform over the measured wall time of one whole uncrashed upgrade (both processes
    when it self-updates); every ``recovery_every``-th scenario also kills its first recovery, at a
    moment uniform over the longest recovery measured so far. The delays come from a random source
    seeded by the node's seed: a failure's label (seed, scenario, delays) reproduces it. Odd
    scenarios run without self-update (one process, a shorter upgrade: some delays land after it).
    """
    duration, problems = node.timed_upgrade()
    tally.record(f"seed {node.seed} uncrashed upgrade", problems)
    rng = random.Random(f"random-kills-{node.seed}")
    recovery_window = 1.5
    for i in range(max_scenarios):
        if tally.kills >= kills or tally.violations:
            break  # after a violation the node is no longer a known starting point
        delay = rng.uniform(0.0, duration)
        kill_recovery = i % recovery_every == recovery_every - 1
        recovery_delay = rng.uniform(0.0, recovery_window) if kill_recovery else None
        node.self_update = i % 2 == 0
        result = node.random_kill(delay, recovery_delay)
        tally.kills += result.killed
        tally.recovery_kills += result.recovery_killed
        recovery_window = max(recovery_window, result.recovery_seconds)
        tally.record(f"seed {node.seed} scenario {i} (self-update {'on' if node.self_update else 'off'}) "
                     f"kill after {delay:.3f}s (window {duration:.2f}s), "
                     f"recovery kill after {'-' if recovery_delay is None else f'{recovery_delay:.3f}s'}",
                     result.problems)
