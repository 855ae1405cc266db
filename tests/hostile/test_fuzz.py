"""Fuzzing the readers of everything a node takes from outside: only the project's typed errors may leak.

The flist readers get random bytes and mutated valid flists of both formats (bytes flipped in the
v2 SQLite file, in the capnp values of the v1 ``entries`` table, in the v1 tar.gz), read to the end
and materialized. The JSON decoders get random and mutated documents: the hub's ``/light``,
listings and contents, the publisher's ``versions``/``latest``/release objects, the boot files, the
daemon's ``status.json`` and the config TOML. Anything but a ``ZosUpgradeError`` subclass
(``KeyError``, ``TypeError``, ``IndexError``, ``sqlite3.Error``, a capnp error...) fails the test.

A typed refusal is only fine for a mutant: every fuzzed path is also fed its valid input unchanged
(an ``@example``, a mutation that changed nothing, or a ``test_..._start_valid`` test over the same
helper) and must then accept it and return the right value, so a reader that refuses everything
fails too.

``make test`` runs the ``default`` hypothesis profile (60 examples a test); the ``fault`` copies
run the ``fault`` profile (2,000 examples).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import sqlite3
import tarfile
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.hostile.badflists import base_entries, tar_gz
from zos_upgrade.config import parse_config
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.flist import FlistError, Limits, open_flist, write_flist
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.flist.v1 import DB_MEMBER
from zos_upgrade.hub.client import HubClient
from zos_upgrade.hub.models import ContentEntry, FlistContents, FlistInfo, RepoEntry, Repository
from zos_upgrade.net import RetryPolicy
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.events import FListEvent
from zos_upgrade.node.state import DaemonState, UpgradeRecord, read_state
from zos_upgrade.publisher import HTTPPublisher
from zos_upgrade.publisher.base import Upgrade
from zos_upgrade.publisher.signing import generate_key, sign_upgrade
from zos_upgrade.versions import Version

SMALL = Limits(max_entries=500, max_total_bytes=64 * 1024 * 1024, max_file_bytes=16 * 1024 * 1024,
               max_metadata_bytes=4 * 1024 * 1024)


T = TypeVar("T")


def only_typed_errors(action: Callable[[], T]) -> T | None:
    """Run ``action``: its value, or ``None`` for a deliberate error; anything else fails the test."""
    try:
        return action()
    except ZosUpgradeError:
        return None


async def only_typed_errors_async(call: Awaitable[T]) -> T | None:
    """:func:`only_typed_errors` for a coroutine."""
    try:
        return await call
    except ZosUpgradeError:
        return None


FAULT = settings(settings.get_profile("fault"))


# ------------------------------------------------------------------------------------- flists


@cache
def corpus() -> dict[str, bytes]:
    """Valid flists of both formats (with their blocks in a store), built once per session."""
    folder = Path(tempfile.mkdtemp(prefix="zu-fuzz-corpus-"))
    store = DirStore(folder / "blocks")
    out: dict[str, bytes] = {}
    for fmt, suffix in (("v1", ".flist"), ("v2", ".fl")):
        path = folder / f"valid{suffix}"
        entries = base_entries(store, fmt, content=b"the message of the day\n")
        write_flist(path, entries, tags={"version": "1"})
        out[fmt] = path.read_bytes()
    out["blocks"] = str(store.root).encode()
    return out


@contextlib.contextmanager
def flist_file(data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="zu-fuzz-") as work:
        path = Path(work) / "fuzzed"
        path.write_bytes(data)
        yield path


@dataclass(frozen=True)
class Readout:
    """What a node got out of an flist it accepted: its tags, entry paths, and the tree it wrote."""

    tags: dict[str, str]
    paths: list[str]
    tree: dict[str, tuple[str, bytes | str | None]]  # relative path -> (kind, content or link text)


# what every corpus flist (both formats) holds: see corpus() and tests.hostile.badflists.base_entries
CORPUS_READOUT = Readout(
    tags={"version": "1"},
    paths=["/", "/bin", "/etc", "/etc/motd", "/opt"],
    tree={"bin": ("link", "opt"), "etc": ("dir", None), "etc/motd": ("file", b"the message of the day\n"),
          "opt": ("dir", None)},
)


def written_tree(dest: Path) -> dict[str, tuple[str, bytes | str | None]]:
    """Every path under ``dest``, links not followed (a fuzzed flist may have written anything)."""
    return {
        str(Path(folder, name).relative_to(dest)): _written(Path(folder, name))
        for folder, dirs, files in os.walk(dest)
        for name in dirs + files
    }


def _written(path: Path) -> tuple[str, bytes | str | None]:
    try:
        if path.is_symlink():
            return "link", os.readlink(path)
        if path.is_dir():
            return "dir", None
        if path.is_file():
            return "file", path.read_bytes()
    except PermissionError:
        return "unreadable", None  # a fuzzed flist may give its files and folders any mode
    return "special", None


def read_everything(data: bytes) -> Readout | None:
    """What a node does with a downloaded flist: open, list, tags, routes, materialize.

    What it read, or ``None`` when the flist was refused with a typed error.
    """
    with flist_file(data) as path:
        def run() -> Readout:
            with open_flist(path, SMALL) as reader:
                tags = reader.tags()
                reader.routes()
                paths = sorted(entry.path for entry in reader.entries())
            store = DirStore(Path(corpus()["blocks"].decode()))
            dest = path.parent / "dest"
            with open_flist(path, SMALL) as reader:
                asyncio.run(materialize(reader, dest, store=store))
            return Readout(dict(tags), paths, written_tree(dest))

        return only_typed_errors(run)


def check_flist(data: bytes, *, unchanged: bool) -> None:
    """:func:`read_everything`; an ``unchanged`` corpus flist must be read whole, giving its tree."""
    readout = read_everything(data)
    if unchanged:
        assert readout == CORPUS_READOUT


def mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in flips:
        out[position % len(out)] = value
    return bytes(out)


def check_flipped(fmt: str, flips: list[tuple[int, int]]) -> None:
    """The corpus flist of ``fmt`` with ``flips``; when they changed nothing, it must be accepted."""
    valid = corpus()[fmt]
    mutated = mutate(valid, flips)
    check_flist(mutated, unchanged=mutated == valid)


FLIPS = st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1, max_size=8)


@given(st.binary(max_size=4096))
def test_random_bytes_as_an_flist(data: bytes) -> None:
    read_everything(data)


@given(st.sampled_from([b"\x1f\x8b", b"SQLite format 3\x00"]), st.binary(max_size=4096))
def test_random_bytes_behind_a_valid_magic(magic: bytes, data: bytes) -> None:
    read_everything(magic + data)


@example([])  # no flip: the valid flist, which must be accepted
@given(FLIPS)
def test_flipped_bytes_in_a_v2_sqlite_flist(flips: list[tuple[int, int]]) -> None:
    check_flipped("v2", flips)


@example([])
@given(FLIPS)
def test_flipped_bytes_in_a_v1_tar_gz(flips: list[tuple[int, int]]) -> None:
    check_flipped("v1", flips)


def v1_database() -> bytes:
    with tarfile.open(fileobj=io.BytesIO(corpus()["v1"]), mode="r:gz") as archive:
        handle = archive.extractfile(f"./{DB_MEMBER}")
        assert handle is not None
        return handle.read()


def v1_with_edited_values(edit: Callable[[str, bytes], bytes]) -> bytes:
    """The valid v1 flist with every ``entries`` value passed through ``edit`` (capnp bytes in, out)."""
    with tempfile.TemporaryDirectory(prefix="zu-fuzz-v1-") as work:
        path = Path(work) / DB_MEMBER
        path.write_bytes(v1_database())
        with contextlib.closing(sqlite3.connect(path)) as db:
            rows = db.execute("SELECT key, value FROM entries").fetchall()
            for key, value in rows:
                db.execute("UPDATE entries SET value = ? WHERE key = ?", (edit(key, value), key))
            db.commit()
        archive = Path(work) / "out.flist"
        tar_gz(archive, [("./", None, ""), (f"./{DB_MEMBER}", path.read_bytes(), "")])
        return archive.read_bytes()


def check_edited_v1(edit: Callable[[str, bytes], bytes]) -> None:
    """The valid v1 flist with its ``entries`` values edited; when no value changed, it must be accepted."""
    changed: list[bool] = []

    def tracked(key: str, value: bytes) -> bytes:
        edited = edit(key, value)
        changed.append(edited != value)
        return edited

    data = v1_with_edited_values(tracked)
    check_flist(data, unchanged=not any(changed))


@given(st.data())
def test_flipped_bytes_in_v1_capnp_values(data: st.DataObject) -> None:
    def edit(key: str, value: bytes) -> bytes:
        if not value or not data.draw(st.booleans(), label=f"mutate {key}"):
            return value
        return mutate(value, data.draw(FLIPS, label=f"flips of {key}"))

    check_edited_v1(edit)


@given(st.data())
def test_truncated_or_extended_v1_capnp_values(data: st.DataObject) -> None:
    def edit(key: str, value: bytes) -> bytes:
        # drawn as what is cut off, so the simplest example (nothing cut, no tail) is the valid flist
        cut = len(value) - data.draw(st.integers(0, len(value)), label=f"bytes cut from {key}")
        return value[:cut] + data.draw(st.binary(max_size=64), label=f"tail {key}")

    check_edited_v1(edit)


def test_the_flists_mutated_start_valid() -> None:
    # the same helpers the fuzz tests use, fed what they mutate, unchanged: both corpus flists (the
    # start of the byte flips; random bytes go down the same read_everything), and the v1 flist
    # rebuilt around its untouched capnp values (the start of the value edits)
    for fmt in ("v1", "v2"):
        check_flipped(fmt, [])
    check_edited_v1(lambda key, value: value)


# the same properties under the ``fault`` profile, for ``make test-fault``


@pytest.mark.fault
@FAULT
@given(st.binary(max_size=4096))
def test_fault_random_bytes_as_an_flist(data: bytes) -> None:
    read_everything(data)


@pytest.mark.fault
@FAULT
@example([], "v1")
@example([], "v2")
@given(FLIPS, st.sampled_from(["v1", "v2"]))
def test_fault_flipped_bytes_in_flists(flips: list[tuple[int, int]], fmt: str) -> None:
    check_flipped(fmt, flips)


@pytest.mark.fault
@FAULT
@given(st.data())
def test_fault_flipped_bytes_in_v1_capnp_values(data: st.DataObject) -> None:
    test_flipped_bytes_in_v1_capnp_values.hypothesis.inner_test(data)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ JSON documents


SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4))


JSON = st.recursive(SCALARS, _containers, max_leaves=12)
INFO_FIELDS = ("name", "size", "updated", "type", "md5", "target", "linktime")
GOOD_INFO: dict[str, Any] = {"name": "zos:1.2.3.fl", "size": 100, "updated": 1, "type": "symlink",
                             "md5": "0" * 32, "target": "zos:1.2.3.fl"}


def near(valid: dict[str, Any], fields: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Documents close to ``valid``: some fields replaced by any JSON value, some dropped or added."""
    def build(changes: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
        doc = {**valid, **changes}
        for name in dropped:
            doc.pop(name, None)
        return doc
    return st.builds(build, st.dictionaries(st.sampled_from((*fields, "extra")), JSON, max_size=4),
                     st.lists(st.sampled_from(fields), max_size=3))


def documents(valid: dict[str, Any], fields: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    as_json = (near(valid, fields) | JSON).map(lambda doc: json.dumps(doc).encode())
    return as_json | st.binary(max_size=200)


# The decoders are fuzzed in-process (thousands of documents through a real server would not fit
# the time budget): one client per kind, its transport answering whatever the current example holds
# (one body for every path, unless a path has its own).
ANSWERS: dict[str, bytes] = {}
TRANSPORT = httpx.MockTransport(lambda request: httpx.Response(
    200, stream=httpx.ByteStream(ANSWERS.get(request.url.path, ANSWERS.get("*", b"")))))
ONE_TRY = RetryPolicy(attempts=1)


def answer(body: bytes, by_path: Mapping[str, bytes] | None = None) -> None:
    ANSWERS.clear()
    ANSWERS["*"] = body
    ANSWERS.update(by_path or {})


@cache
def hub_client() -> HubClient:
    return HubClient("http://hub.invalid", transport=TRANSPORT, retry=ONE_TRY)


@cache
def publisher_client() -> HTTPPublisher:
    return HTTPPublisher("http://releases.invalid", [KEY], transport=TRANSPORT, retry=ONE_TRY)


@dataclass
class HubReadout:
    """What the hub client made of one answer, per call (``None``: refused with a typed error)."""

    info: FlistInfo | None = None
    version: Version | None = None
    absolute: str | None = None
    listing: list[RepoEntry] | None = None
    files: FlistContents | None = None
    repositories: list[Repository] | None = None


async def hub_reads(body: bytes) -> HubReadout:
    answer(body)
    hub = hub_client()
    got = HubReadout(info=await only_typed_errors_async(hub.info("tf-zos/latest.fl")))
    if got.info is not None:
        info = got.info

        def follow() -> tuple[Version | None, str]:
            event = FListEvent("tf-zos", info)
            event.try_version()  # never raises
            return only_typed_errors(event.version), event.absolute()

        got.version, got.absolute = only_typed_errors(follow) or (None, None)
    got.listing = await only_typed_errors_async(hub.list("tf-zos"))
    got.files = await only_typed_errors_async(hub.files("tf-zos/zos:1.2.3.fl"))
    got.repositories = await only_typed_errors_async(hub.repositories())
    return got


INFO_BODY = json.dumps(GOOD_INFO).encode()
CONTENTS_FIELDS = ("regular", "symlink", "directory", "special", "failure", "fullsize", "content")
GOOD_CONTENTS: dict[str, Any] = {"regular": 1, "symlink": 0, "directory": 1, "special": 0, "failure": 0,
                                 "fullsize": 3, "content": [{"size": 4096, "path": "/etc"},
                                                            {"size": 3, "path": "/etc/motd"}]}
CONTENTS_BODY = json.dumps(GOOD_CONTENTS).encode()
GOOD_ENTRY: dict[str, Any] = {"name": "zos:1.0.0.fl", "size": "1 KB", "updated": 1, "type": "regular"}
GOOD_REPOSITORY: dict[str, Any] = {"name": "tf-zos", "official": True, "updated": 1}


def check_hub(body: bytes) -> None:
    """:func:`hub_reads`; a valid ``/light`` or contents answer must decode to what it says."""
    got = asyncio.run(hub_reads(body))
    if body == INFO_BODY:
        assert got.info == FlistInfo(**GOOD_INFO)
        assert (got.version, got.absolute) == (Version(1, 2, 3), "tf-zos/zos:1.2.3.fl")
    if body == CONTENTS_BODY:
        content = [ContentEntry(path=c["path"], size=c["size"]) for c in GOOD_CONTENTS["content"]]
        assert got.files == FlistContents(**{**GOOD_CONTENTS, "content": content})


@example(INFO_BODY)
@given(documents(GOOD_INFO, INFO_FIELDS))
def test_hub_answers(body: bytes) -> None:
    check_hub(body)


@example(CONTENTS_BODY)
@given(documents(GOOD_CONTENTS, CONTENTS_FIELDS))
def test_hub_contents(body: bytes) -> None:
    check_hub(body)


@example([])
@example([GOOD_ENTRY])
@example([GOOD_REPOSITORY])
@given(st.lists(near(GOOD_ENTRY, ("name", "size", "updated", "type", "target")), max_size=4))
def test_hub_listings(listing: list[Any]) -> None:
    got = asyncio.run(hub_reads(json.dumps(listing).encode()))
    if listing in ([], [GOOD_ENTRY]):  # (a listing that names an entry twice is refused)
        assert got.listing == [RepoEntry(**item) for item in listing]
    if listing in ([], [GOOD_REPOSITORY]):
        assert got.repositories == [Repository(**item) for item in listing]


SIGNER = generate_key()
KEY = SIGNER.public_key()
# a release a node accepts, signed by the trusted key; the fuzzer mutates it from there
UPGRADE = sign_upgrade(Version.parse("1.1.0"), "http://hub/tf-zos/zos:1.1.0.fl", "ab" * 32, SIGNER)
RELEASE: dict[str, Any] = msgspec.to_builtins(UPGRADE)
RELEASE_BODY = json.dumps(RELEASE).encode()
VERSIONS_BODY = json.dumps(["1.0.0", "1.1.0"]).encode()


@dataclass
class PublisherReadout:
    """What the publisher client made of its answers, per call (``None``: refused with a typed error)."""

    versions: list[Version] | None = None
    latest: Version | None = None
    release: Upgrade | None = None


async def publisher_reads(body: bytes, by_path: Mapping[str, bytes] | None = None) -> PublisherReadout:
    answer(body, by_path)
    publisher = publisher_client()
    return PublisherReadout(
        versions=await only_typed_errors_async(publisher.list()),
        latest=await only_typed_errors_async(publisher.latest()),
        release=await only_typed_errors_async(publisher.get(Version.parse("1.1.0"))),
    )


def check_publisher(body: bytes) -> None:
    """:func:`publisher_reads`; a valid ``versions`` list or signed release object must be accepted."""
    got = asyncio.run(publisher_reads(body))
    if body == VERSIONS_BODY:
        assert got.versions == [Version(1, 0, 0), Version(1, 1, 0)]
    if body == RELEASE_BODY:
        assert got.release == UPGRADE


@example(RELEASE_BODY)
@example(VERSIONS_BODY)
@given(documents(RELEASE, tuple(RELEASE)) | st.lists(JSON | st.text(max_size=12)).map(
    lambda doc: json.dumps(doc).encode()))
def test_publisher_answers(body: bytes) -> None:
    check_publisher(body)


BOOT_NAME = b"tf-zos/zos:1.2.3.fl"
TOOL = "tf-zos-bins/tool:1.0.0.fl"
TOOL_INFO: dict[str, Any] = {**GOOD_INFO, "name": "tool:1.0.0.fl", "type": "regular"}
BINS: dict[str, Any] = {TOOL: TOOL_INFO}
BINS_BODY = json.dumps(BINS).encode()


@example(BOOT_NAME, INFO_BODY, BINS_BODY)
@given(st.binary(max_size=80) | st.text(max_size=60).map(str.encode), documents(GOOD_INFO, INFO_FIELDS),
       documents(BINS, (TOOL, "x/y")))
def test_boot_files(name: bytes, info: bytes, bins: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="zu-fuzz-boot-") as root:
        boot = Boot(Path(root))
        boot.name_file.parent.mkdir(parents=True)
        boot.name_file.write_bytes(name)
        boot.info_file.write_bytes(info)
        boot.bins_file.write_bytes(bins)
        boot.detect_boot_method()
        version = boot.try_version()  # never raises: 0.0.0 and a log line for anything unreadable
        current = only_typed_errors(boot.current)
        installed = only_typed_errors(boot.current_bins)
        if (name, info) == (BOOT_NAME, INFO_BODY):
            assert current is not None and current.fqdn() == BOOT_NAME.decode()
            assert version == Version(1, 2, 3)
        if bins == BINS_BODY:
            assert installed is not None and list(installed) == [TOOL]
            assert installed[TOOL].info == FlistInfo(**TOOL_INFO)


DAEMON_STATE = DaemonState(
    updated=2.0, pid=42, source="hub", current_version="1.0.0", last_check=1.0, last_result="failed",
    last_error="hub unreachable",
    last_upgrade=UpgradeRecord(from_version="0.9.0", to_version="1.0.0", started=1.0, duration=2.0),
)
STATE: dict[str, Any] = json.loads(msgspec.json.encode(DAEMON_STATE))
STATE_BODY = json.dumps(STATE).encode()


def check_state(document: bytes) -> None:
    """``read_state`` of ``document``; the valid state document must read back as the state it holds."""
    with tempfile.TemporaryDirectory(prefix="zu-fuzz-state-") as state:
        Path(state, "status.json").write_bytes(document)
        got = only_typed_errors(lambda: read_state(state))
    if document == STATE_BODY:
        assert got == DAEMON_STATE


@example(STATE_BODY)
@given(documents(STATE, tuple(STATE)))
def test_daemon_state(document: bytes) -> None:
    check_state(document)


CONFIG = """\
[node]
root = "/"
state_dir = "/var/cache/modules/upgrade"

[source]
hub = "https://hub.grid.tf"
flist = "tf-zos/zos:latest.flist"
interval = 600

[trust]
insecure = true

[supervisor]
kind = "zinit"
socket = "/var/run/zinit.sock"

[upgrade]
probation = 30
"""


@example([])  # no edit: the valid config, which must be accepted
@given(st.lists(st.tuples(st.integers(0, len(CONFIG) - 1), st.text(max_size=4)), max_size=6)
       | st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace")).map(lambda t: [(-1, t)]))
def test_config_toml(edits: list[tuple[int, str]]) -> None:
    text = CONFIG
    for position, insert in edits:
        text = insert if position < 0 else text[:position] + insert + text[position + 1:]
    config = only_typed_errors(lambda: parse_config(text, source="fuzzed.toml"))
    if text == CONFIG:
        assert config is not None
        assert (config.source.hub, config.source.flist) == ("https://hub.grid.tf", "tf-zos/zos:latest.flist")


@pytest.mark.fault
@FAULT
@example(INFO_BODY)
@example(RELEASE_BODY)
@example(STATE_BODY)
@given(documents(GOOD_INFO, INFO_FIELDS) | documents(RELEASE, tuple(RELEASE))
       | documents(STATE, tuple(STATE)))
def test_fault_json_documents(body: bytes) -> None:
    check_hub(body)
    check_publisher(body)
    check_state(body)


def test_the_corpus_is_valid() -> None:
    # the mutations start from flists a node accepts: otherwise the fuzzing would prove little
    for fmt in ("v1", "v2"):
        with flist_file(corpus()[fmt]) as path, open_flist(path) as reader:
            assert sorted(e.path for e in reader.entries()) == ["/", "/bin", "/etc", "/etc/motd", "/opt"]


def test_undecodable_schema_text_is_a_typed_error() -> None:
    # the fuzzer once saw sqlite raise "Could not decode to UTF-8" while stepping PRAGMA table_info
    # (after execute() had succeeded) and the sqlite3 error escaped the v2 reader; every flipped type
    # name of the schema must be a FlistError, whichever row sqlite meets it on
    valid = corpus()["v2"]
    for found in re.finditer(rb"INTEGER|VARCHAR", valid):
        at = found.start()
        with flist_file(valid[:at] + b"\x80" + valid[at + 1:]) as path, pytest.raises(FlistError), \
                open_flist(path) as reader:
            reader.tags()
            reader.routes()
            list(reader.entries())


def test_the_documents_mutated_start_valid(tmp_path: Path) -> None:
    assert parse_config(CONFIG).source.flist == "tf-zos/zos:latest.flist"
    (tmp_path / "status.json").write_text(json.dumps(STATE))
    state = read_state(tmp_path)
    assert state is not None and state.last_upgrade is not None
    answer(json.dumps(GOOD_INFO).encode())
    assert asyncio.run(hub_client().info("tf-zos/latest.fl")).md5 == "0" * 32
    # ``latest`` needs two answers that agree (it must be listed in ``versions``): one body cannot be
    # both, so the fuzzed path is shown to accept them here, each path with its own
    got = asyncio.run(publisher_reads(b"", {"/latest": b'"1.1.0"', "/versions": VERSIONS_BODY,
                                            "/1.1.0": RELEASE_BODY}))
    assert got == PublisherReadout([Version(1, 0, 0), Version(1, 1, 0)], Version(1, 1, 0), UPGRADE)
