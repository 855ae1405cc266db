"""Fuzzing the readers of everything a node takes from outside: only the project's typed errors may leak.

The flist readers get random bytes and mutated valid flists of both formats (bytes flipped in the
v2 SQLite file, in the capnp values of the v1 ``entries`` table, in the v1 tar.gz), read to the end
and materialized. The JSON decoders get random and mutated documents: the hub's ``/light``,
listings and contents, the publisher's ``versions``/``latest``/release objects, the boot files, the
daemon's ``status.json`` and the config TOML. Anything but a ``ZosUpgradeError`` subclass
(``KeyError``, ``TypeError``, ``IndexError``, ``sqlite3.Error``, a capnp error...) fails the test.

``make test`` runs the ``default`` hypothesis profile (60 examples a test); the ``fault`` copies
run the ``fault`` profile (2,000 examples).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import sqlite3
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostile.badflists import base_entries, tar_gz
from zos_upgrade.config import parse_config
from zos_upgrade.errors import ZosUpgradeError
from zos_upgrade.flist import FlistError, Limits, open_flist, write_flist
from zos_upgrade.flist.materialize import materialize
from zos_upgrade.flist.stores import DirStore
from zos_upgrade.flist.v1 import DB_MEMBER
from zos_upgrade.hub.client import HubClient
from zos_upgrade.net import RetryPolicy
from zos_upgrade.node.boot import Boot
from zos_upgrade.node.events import FListEvent
from zos_upgrade.node.state import DaemonState, UpgradeRecord, read_state
from zos_upgrade.publisher import HTTPPublisher
from zos_upgrade.publisher.signing import generate_key
from zos_upgrade.versions import Version

SMALL = Limits(max_entries=500, max_total_bytes=64 * 1024 * 1024, max_file_bytes=16 * 1024 * 1024,
               max_metadata_bytes=4 * 1024 * 1024)


def only_typed_errors(action: Callable[[], object]) -> None:
    """Run ``action``; a deliberate error is fine, anything else propagates and fails the test."""
    with contextlib.suppress(ZosUpgradeError):
        action()


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


def read_everything(data: bytes) -> None:
    """What a node does with a downloaded flist: open, list, tags, routes, materialize."""
    with flist_file(data) as path:
        def run() -> None:
            with open_flist(path, SMALL) as reader:
                reader.tags()
                reader.routes()
                for _ in reader.entries():
                    pass
            store = DirStore(Path(corpus()["blocks"].decode()))
            with open_flist(path, SMALL) as reader:
                asyncio.run(materialize(reader, path.parent / "dest", store=store))

        only_typed_errors(run)


def mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in flips:
        out[position % len(out)] = value
    return bytes(out)


FLIPS = st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1, max_size=8)


@given(st.binary(max_size=4096))
def test_random_bytes_as_an_flist(data: bytes) -> None:
    read_everything(data)


@given(st.sampled_from([b"\x1f\x8b", b"SQLite format 3\x00"]), st.binary(max_size=4096))
def test_random_bytes_behind_a_valid_magic(magic: bytes, data: bytes) -> None:
    read_everything(magic + data)


@given(FLIPS)
def test_flipped_bytes_in_a_v2_sqlite_flist(flips: list[tuple[int, int]]) -> None:
    read_everything(mutate(corpus()["v2"], flips))


@given(FLIPS)
def test_flipped_bytes_in_a_v1_tar_gz(flips: list[tuple[int, int]]) -> None:
    read_everything(mutate(corpus()["v1"], flips))


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


@given(st.data())
def test_flipped_bytes_in_v1_capnp_values(data: st.DataObject) -> None:
    def edit(key: str, value: bytes) -> bytes:
        if not value or not data.draw(st.booleans(), label=f"mutate {key}"):
            return value
        return mutate(value, data.draw(FLIPS, label=f"flips of {key}"))

    read_everything(v1_with_edited_values(edit))


@given(st.data())
def test_truncated_or_extended_v1_capnp_values(data: st.DataObject) -> None:
    def edit(key: str, value: bytes) -> bytes:
        cut = data.draw(st.integers(0, len(value)), label=f"cut {key}")
        return value[:cut] + data.draw(st.binary(max_size=64), label=f"tail {key}")

    read_everything(v1_with_edited_values(edit))


# the same properties under the ``fault`` profile, for ``make test-fault``


@pytest.mark.fault
@FAULT
@given(st.binary(max_size=4096))
def test_fault_random_bytes_as_an_flist(data: bytes) -> None:
    read_everything(data)


@pytest.mark.fault
@FAULT
@given(FLIPS, st.sampled_from(["v1", "v2"]))
def test_fault_flipped_bytes_in_flists(flips: list[tuple[int, int]], fmt: str) -> None:
    read_everything(mutate(corpus()[fmt], flips))


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
# the time budget): one client per kind, its transport answering whatever the current example holds.
ANSWER = {"body": b""}
TRANSPORT = httpx.MockTransport(lambda request: httpx.Response(200, stream=httpx.ByteStream(ANSWER["body"])))
ONE_TRY = RetryPolicy(attempts=1)


@cache
def hub_client() -> HubClient:
    return HubClient("http://hub.invalid", transport=TRANSPORT, retry=ONE_TRY)


@cache
def publisher_client() -> HTTPPublisher:
    return HTTPPublisher("http://releases.invalid", [KEY], transport=TRANSPORT, retry=ONE_TRY)


async def hub_reads(body: bytes) -> None:
    ANSWER["body"] = body
    hub = hub_client()
    with contextlib.suppress(ZosUpgradeError):
        event = FListEvent("tf-zos", await hub.info("tf-zos/latest.fl"))
        event.try_version()  # never raises
        with contextlib.suppress(ZosUpgradeError):
            event.version()
        event.absolute()
    for call in (lambda: hub.list("tf-zos"), lambda: hub.files("tf-zos/zos:1.2.3.fl"), hub.repositories):
        with contextlib.suppress(ZosUpgradeError):
            await call()


@given(documents(GOOD_INFO, INFO_FIELDS))
def test_hub_answers(body: bytes) -> None:
    asyncio.run(hub_reads(body))


@given(st.lists(near({"name": "zos:1.0.0.fl", "size": "1 KB", "updated": 1, "type": "regular"},
                     ("name", "size", "updated", "type", "target")), max_size=4))
def test_hub_listings(listing: list[Any]) -> None:
    asyncio.run(hub_reads(json.dumps(listing).encode()))


KEY = generate_key().public_key()
RELEASE: dict[str, Any] = {"flist": "http://hub/tf-zos/zos:1.1.0.fl", "transaction_id": "", "hash": "ab" * 32,
                           "signature": "cd" * 64, "version": "1.1.0", "key_id": ""}


async def publisher_reads(body: bytes) -> None:
    ANSWER["body"] = body
    publisher = publisher_client()
    for call in (publisher.list, publisher.latest, lambda: publisher.get(Version.parse("1.1.0"))):
        with contextlib.suppress(ZosUpgradeError):
            await call()


@given(documents(RELEASE, tuple(RELEASE)) | st.lists(JSON | st.text(max_size=12)).map(
    lambda doc: json.dumps(doc).encode()))
def test_publisher_answers(body: bytes) -> None:
    asyncio.run(publisher_reads(body))


@given(st.binary(max_size=80) | st.text(max_size=60).map(str.encode), documents(GOOD_INFO, INFO_FIELDS),
       documents({"tf-zos-bins/tool:1.0.0.fl": {**GOOD_INFO, "name": "tool:1.0.0.fl", "type": "regular"}},
                 ("tf-zos-bins/tool:1.0.0.fl", "x/y")))
def test_boot_files(name: bytes, info: bytes, bins: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="zu-fuzz-boot-") as root:
        boot = Boot(Path(root))
        boot.name_file.parent.mkdir(parents=True)
        boot.name_file.write_bytes(name)
        boot.info_file.write_bytes(info)
        boot.bins_file.write_bytes(bins)
        boot.detect_boot_method()
        boot.try_version()  # never raises: 0.0.0 and a log line for anything unreadable
        only_typed_errors(boot.current)
        only_typed_errors(boot.current_bins)


STATE: dict[str, Any] = json.loads(msgspec.json.encode(DaemonState(
    updated=2.0, pid=42, source="hub", current_version="1.0.0", last_check=1.0, last_result="failed",
    last_error="hub unreachable",
    last_upgrade=UpgradeRecord(from_version="0.9.0", to_version="1.0.0", started=1.0, duration=2.0),
)))


@given(documents(STATE, tuple(STATE)))
def test_daemon_state(document: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="zu-fuzz-state-") as state:
        Path(state, "status.json").write_bytes(document)
        only_typed_errors(lambda: read_state(state))


CONFIG = """\
[node]
root = "/"
state_dir = "/var/cache/modules/upgrade"

[source]
hub = "https://hub.grid.tf"
flist = "tf-zos/zos:latest.flist"
interval = 600

[supervisor]
kind = "zinit"
socket = "/var/run/zinit.sock"

[upgrade]
probation = 30
"""


@given(st.lists(st.tuples(st.integers(0, len(CONFIG) - 1), st.text(max_size=4)), max_size=6)
       | st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace")).map(lambda t: [(-1, t)]))
def test_config_toml(edits: list[tuple[int, str]]) -> None:
    text = CONFIG
    for position, insert in edits:
        text = insert if position < 0 else text[:position] + insert + text[position + 1:]
    only_typed_errors(lambda: parse_config(text, source="fuzzed.toml"))


@pytest.mark.fault
@FAULT
@given(documents(GOOD_INFO, INFO_FIELDS) | documents(RELEASE, tuple(RELEASE))
       | documents(STATE, tuple(STATE)))
def test_fault_json_documents(body: bytes) -> None:
    asyncio.run(hub_reads(body))
    asyncio.run(publisher_reads(body))
    with tempfile.TemporaryDirectory(prefix="zu-fuzz-state-") as state:
        Path(state, "status.json").write_bytes(body)
        only_typed_errors(lambda: read_state(state))


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
    ANSWER["body"] = json.dumps(GOOD_INFO).encode()
    assert asyncio.run(hub_client().info("tf-zos/latest.fl")).md5 == "0" * 32
