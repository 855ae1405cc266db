"""One behavioural suite, run against every back-end: they provably behave alike."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.supervisor.conftest import Backend, python_service, wait_for, wait_status
from zos_upgrade.supervisor import (
    AlreadyMonitored,
    ServiceConfig,
    ServiceIsDown,
    ServiceIsUp,
    ServiceStatus,
    StateFamily,
    StopFailed,
    Supervisor,
    UnknownService,
    restart_many,
    stop_many,
)

SLEEPER = ServiceConfig(exec="sleep 600")
# Installs its SIGTERM handler, then says so through a file, then sleeps: only SIGKILL ends it.
STUBBORN = (
    "import os, signal, time, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open(sys.argv[1], 'w').close(); time.sleep(600)"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purposes (and it may be reaped meanwhile)
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def running(st: ServiceStatus) -> bool:
    return st.family is StateFamily.RUNNING and st.pid > 0


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except FileNotFoundError:
        return []


async def new_service(sup: Supervisor, name: str, cfg: ServiceConfig = SLEEPER) -> ServiceStatus:
    await sup.install_config(name, cfg)
    await sup.monitor(name)
    st = await wait_status(sup, name, running)
    # Wait for the exec: a signal that reaches supervisord's forked child before it execs is
    # swallowed by the handler it inherited (supervisord calls it RUNNING at once with startsecs=0).
    await wait_for(lambda: cmdline(st.pid) == shlex.split(cfg.exec))
    return st


async def cleanup(sup: Supervisor, names: Iterable[str]) -> None:
    names = list(names)
    await stop_many(sup, names, 3, poll_interval=0.05)
    for name in names:
        with contextlib.suppress(UnknownService):
            await sup.forget(name)
        await sup.remove_config(name)
    await sup.aclose()


def test_monitor_starts_a_newly_installed_service(backend: Backend) -> None:
    name = backend.unique("web")

    async def body() -> None:
        sup = backend.make()
        assert name not in await sup.list()
        st = await new_service(sup, name)
        assert st.name == name and st.target == "up" and alive(st.pid)
        assert name in await sup.list()
        with pytest.raises(AlreadyMonitored, match=name):
            await sup.monitor(name)
        await cleanup(sup, [name])

    run(body())


def test_monitor_without_a_config_is_unknown(backend: Backend) -> None:
    async def body() -> None:
        sup = backend.make()
        with pytest.raises(UnknownService):
            await sup.monitor(backend.unique("ghost"))
        await sup.aclose()

    run(body())


def test_stop_then_start(backend: Backend) -> None:
    name = backend.unique("svc")

    async def body() -> None:
        sup = backend.make()
        first = await new_service(sup, name)
        await sup.stop(name)
        st = await wait_status(sup, name, lambda s: s.is_down)
        assert st.family is StateFamily.EXITED and st.pid == 0 and st.target == "down"
        await wait_for(lambda: not alive(first.pid))
        await sup.stop(name)  # stopping a stopped service is not an error
        await sup.start(name)
        second = await wait_status(sup, name, running)
        assert second.pid != first.pid and second.target == "up"
        await sup.start(name)  # starting a running service is not an error either
        assert (await sup.status(name)).pid == second.pid
        await cleanup(sup, [name])

    run(body())


def test_forget_only_when_down(backend: Backend) -> None:
    name = backend.unique("svc")

    async def body() -> None:
        sup = backend.make()
        await new_service(sup, name)
        with pytest.raises(ServiceIsUp, match=name):
            await sup.forget(name)
        await stop_many(sup, [name], 3, poll_interval=0.05)
        await sup.forget(name)
        assert name not in await sup.list()
        with pytest.raises(UnknownService, match=name):
            await sup.status(name)
        await cleanup(sup, [name])

    run(body())


def test_kill_delivers_the_signal_and_the_supervisor_respawns(backend: Backend) -> None:
    name = backend.unique("svc")

    async def body() -> None:
        sup = backend.make()
        first = await new_service(sup, name)
        await sup.kill(name, "SIGKILL")
        await wait_for(lambda: not alive(first.pid))
        # the target is still up: both supervisors bring it back with a new process
        again = await wait_status(sup, name, lambda s: running(s) and s.pid != first.pid)
        assert alive(again.pid)
        await cleanup(sup, [name])

    run(body())


def test_kill_of_a_stopped_service_is_down(backend: Backend) -> None:
    name = backend.unique("svc")

    async def body() -> None:
        sup = backend.make()
        await new_service(sup, name)
        await stop_many(sup, [name], 3, poll_interval=0.05)
        with pytest.raises(ServiceIsDown, match=name):
            await sup.kill(name, "SIGTERM")
        await cleanup(sup, [name])

    run(body())


@pytest.mark.parametrize("method", ["status", "start", "stop", "forget", "kill"])
def test_unknown_service_names(backend: Backend, method: str) -> None:
    name = backend.unique("nobody")

    async def body() -> None:
        sup = backend.make()
        call = getattr(sup, method)
        with pytest.raises(UnknownService, match=name):
            await (call(name, "SIGKILL") if method == "kill" else call(name))
        await sup.aclose()

    run(body())


def test_status_families_of_finished_oneshots(backend: Backend) -> None:
    ok, bad = backend.unique("once-ok"), backend.unique("once-bad")

    async def body() -> None:
        sup = backend.make()
        await sup.install_config(ok, ServiceConfig(exec="true", oneshot=True))
        await sup.install_config(bad, python_service("raise SystemExit(3)", oneshot=True))
        await sup.monitor(ok)
        await sup.monitor(bad)
        st_ok = await wait_status(sup, ok, lambda s: s.family is StateFamily.EXITED)
        st_bad = await wait_status(sup, bad, lambda s: s.family is StateFamily.EXITED)
        assert st_ok.pid == 0 and st_bad.pid == 0 and st_ok.is_down and st_bad.is_down
        # success and failure are told apart, and the failure says its exit status
        assert "exited with status 3" in st_bad.detail
        assert "status 3" not in st_ok.detail
        await cleanup(sup, [ok, bad])

    run(body())


def test_stop_many_escalates_to_sigkill_for_a_process_ignoring_sigterm(backend: Backend) -> None:
    stubborn, polite = backend.unique("stubborn"), backend.unique("polite")

    async def body() -> None:
        sup = backend.make()
        with tempfile.TemporaryDirectory() as tmp:
            ready = Path(tmp) / "ready"
            cfg = python_service(STUBBORN)
            cfg = ServiceConfig(exec=f"{cfg.exec} {ready}")
            st = await new_service(sup, stubborn, cfg)
            await new_service(sup, polite)
            await wait_for(ready.exists)
            await stop_many(sup, [stubborn, polite], 0.3, poll_interval=0.05)
            assert (await sup.status(stubborn)).is_down and (await sup.status(polite)).is_down
            await wait_for(lambda: not alive(st.pid))
        await cleanup(sup, [stubborn, polite])

    run(body())


class Unkillable:
    """A supervisor whose stop and kill of ``victim`` do nothing: the process can never go down."""

    def __init__(self, inner: Supervisor, victim: str) -> None:
        self.inner, self.victim, self.kills = inner, victim, 0

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    async def stop(self, name: str) -> None:
        if name != self.victim:
            await self.inner.stop(name)

    async def kill(self, name: str, signal: str) -> None:
        if name == self.victim:
            self.kills += 1
        else:
            await self.inner.kill(name, signal)


def test_stop_many_fails_naming_the_survivor(backend: Backend) -> None:
    victim, other = backend.unique("immortal"), backend.unique("mortal")

    async def body() -> None:
        sup = backend.make()
        await new_service(sup, victim)
        await new_service(sup, other)
        wrapped = Unkillable(sup, victim)
        with pytest.raises(StopFailed, match=victim) as info:
            await stop_many(wrapped, [victim, other], 0.1, poll_interval=0.02, kill_rounds=4)  # type: ignore[arg-type]
        assert info.value.survivors == [victim]
        assert wrapped.kills == 4  # bounded: one SIGKILL per round, never an endless wait
        assert (await sup.status(other)).is_down
        await cleanup(sup, [victim, other])

    run(body())


class Recorder:
    """Records the calls that change state, in order."""

    def __init__(self, inner: Supervisor) -> None:
        self.inner, self.calls = inner, []  # type: list[tuple[str, str]]

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self.inner, attr)
        if attr not in ("start", "stop", "monitor", "forget", "kill"):
            return target

        async def recorded(name: str, *args: Any) -> Any:
            self.calls.append((attr, name))
            return await target(name, *args)

        return recorded


def test_restart_many_forgets_monitors_starts_and_picks_up_new_configs(backend: Backend) -> None:
    old, new = backend.unique("old"), backend.unique("new")

    async def body() -> None:
        sup = backend.make()
        before = await new_service(sup, old)
        await sup.install_config(old, ServiceConfig(exec="sleep 601"))  # the new release's config
        await sup.install_config(new, SLEEPER)
        rec = Recorder(sup)
        await restart_many(rec, [old, new], 3, poll_interval=0.05)  # type: ignore[arg-type]
        assert rec.calls == [
            ("stop", old),
            ("forget", old), ("monitor", old), ("start", old),
            ("monitor", new), ("start", new),
        ]
        after = await wait_status(sup, old, running)
        assert after.pid != before.pid and not alive(before.pid)
        await wait_for(lambda: cmdline(after.pid) == ["sleep", "601"])
        assert running(await wait_status(sup, new, running))
        await cleanup(sup, [old, new])

    run(body())


def test_restart_many_of_a_stopped_service_sends_no_second_stop(backend: Backend) -> None:
    """As in a transaction: stopped first, then restarted with its new config. The restart only asks
    for its status, and the service runs again with the new config."""
    svc = backend.unique("stopped")

    async def body() -> None:
        sup = backend.make()
        before = await new_service(sup, svc)
        await stop_many(sup, [svc], 3, poll_interval=0.05)
        await sup.install_config(svc, ServiceConfig(exec="sleep 602"))
        rec = Recorder(sup)
        await restart_many(rec, [svc], 3, poll_interval=0.05)  # type: ignore[arg-type]
        assert rec.calls == [("forget", svc), ("monitor", svc), ("start", svc)]
        after = await wait_status(sup, svc, running)
        assert after.pid != before.pid
        await wait_for(lambda: cmdline(after.pid) == ["sleep", "602"])
        await cleanup(sup, [svc])

    run(body())


def test_dependencies_are_reported_where_the_supervisor_has_them(backend: Backend) -> None:
    dep, svc = backend.unique("db"), backend.unique("app")

    async def body() -> None:
        sup = backend.make()
        await new_service(sup, dep)
        st = await new_service(sup, svc, ServiceConfig(exec="sleep 600", after=(dep,)))
        if backend.kind.startswith("zinit"):
            assert dict(st.after) == {dep: "Running"}
        else:
            # supervisord has no dependency model: the service still runs, and claims no dependencies
            assert dict(st.after) == {} and running(st)
        await cleanup(sup, [svc, dep])

    run(body())


def test_supervisord_backoff_reports_why_and_the_real_exit_status_not_zero() -> None:
    """A program that exits before ``startsecs`` is BACKOFF then FATAL, and supervisord's
    getProcessInfo says exitstatus 0 for it whatever it returned: the status must not claim that."""
    from tests.support.supervisord import running_supervisord
    from zos_upgrade.supervisor.supervisord import SupervisordClient

    async def body(sup: SupervisordClient) -> list[tuple[str, str]]:
        await sup.install_config("quick", python_service("raise SystemExit(5)"))
        await sup.monitor("quick")
        seen: list[tuple[str, str]] = []
        status = await wait_status(sup, "quick", lambda s: s.state in ("BACKOFF", "FATAL"))
        seen.append((status.state, status.detail))
        status = await wait_status(sup, "quick", lambda s: s.state == "FATAL", timeout=30)
        seen.append((status.state, status.detail))
        return seen

    with running_supervisord() as sd:
        sup = SupervisordClient(sd.socket_path, include_dir=sd.include_dir, timeout=5, start_seconds=5)
        seen = asyncio.run(body(sup))
        raw = (sd.dir / "supervisord.log").read_text()
    assert "exited: quick (exit status 5; not expected)" in raw  # what supervisord itself logged
    for state, detail in seen:
        assert "status 0" not in detail, (state, detail)
        assert detail.startswith("Exited too quickly"), (state, detail)
        assert detail.endswith("last exit: exit status 5"), (state, detail)
