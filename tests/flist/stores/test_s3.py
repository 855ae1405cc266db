"""The s3:// store against a real S3-compatible server process on loopback (moto_server, signatures
checked), a stalled server, and the CLI packing into and unpacking from a bucket."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flist.stores.blocks import V1_DATA, V1_REF, V2_DATA, V2_REF
from tests.support.procs import free_port, serving, zos_upgrade_cmd
from tests.support.s3 import MotoS3, moto_s3
from zos_upgrade.flist.blocks import decrypt_block
from zos_upgrade.flist.stores import MAX_STORED_BYTES, BlockMissing, S3Store, StoreError, open_store
from zos_upgrade.flist.stores.s3 import S3Settings


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        server.client().create_bucket(Bucket="blocks")
        yield server


@pytest.fixture
def aws_env(s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return s3


def _keys(s3: MotoS3, prefix: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket="blocks", Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_round_trip_under_the_dir_layout(aws_env: MotoS3) -> None:
    async def scenario() -> None:
        store = open_store("s3://blocks/round/trip")
        assert isinstance(store, S3Store)
        assert not await store.has(V1_REF.id)
        await store.put(V1_REF.id, V1_DATA)
        await store.put(V2_REF.id, V2_DATA)
        assert await store.has(V1_REF.id) and await store.has(V2_REF.id)
        assert await store.get(V1_REF.id) == V1_DATA
        assert decrypt_block(V2_REF, await store.get(V2_REF.id)) == b"version two block" * 100
        await store.aclose()

    asyncio.run(scenario())
    v1, v2 = V1_REF.id.hex(), V2_REF.id.hex()
    assert _keys(aws_env, "round/") == sorted([f"round/trip/{v1[:2]}/{v1}", f"round/trip/{v2[:2]}/{v2}"])


def test_endpoint_and_region_from_the_url_win_over_the_environment(
    aws_env: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    store = open_store(f"s3://blocks/url?endpoint={aws_env.endpoint}&region=us-east-1")
    asyncio.run(store.put(V1_REF.id, V1_DATA))
    assert asyncio.run(store.get(V1_REF.id)) == V1_DATA


def test_a_missing_block(aws_env: MotoS3) -> None:
    store = open_store("s3://blocks/empty")
    with pytest.raises(BlockMissing, match=V2_REF.id.hex()):
        asyncio.run(store.get(V2_REF.id))
    assert asyncio.run(store.has(V2_REF.id)) is False


@pytest.mark.parametrize("op", ["get", "has", "put"])
def test_a_missing_bucket_is_not_a_missing_block(aws_env: MotoS3, op: str) -> None:
    store = open_store("s3://no-such-bucket/x")

    async def call() -> object:
        if op == "put":
            return await store.put(V1_REF.id, V1_DATA)
        return await getattr(store, op)(V1_REF.id)

    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist") as info:
        asyncio.run(call())
    assert not isinstance(info.value, BlockMissing)


@pytest.mark.parametrize(
    ("variable", "value", "code"),
    [("AWS_SECRET_ACCESS_KEY", "not-the-secret", "SignatureDoesNotMatch"),
     ("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000", "InvalidAccessKeyId")],
)
def test_wrong_credentials_are_refused_and_store_nothing(
    aws_env: MotoS3, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, code: str
) -> None:
    monkeypatch.setenv(variable, value)
    store = open_store("s3://blocks/refused")
    for call in (store.put(V1_REF.id, V1_DATA), store.get(V1_REF.id)):
        with pytest.raises(StoreError, match=rf"credentials were not accepted \({code}\)"):
            asyncio.run(call)
    # a HEAD answer has no body, so no code: the status still says it
    with pytest.raises(StoreError, match=r"credentials were not accepted \(HTTP 403"):
        asyncio.run(store.has(V1_REF.id))
    assert _keys(aws_env, "refused/") == []


def test_an_oversize_object_is_refused_before_its_body_is_read(aws_env: MotoS3) -> None:
    hexid = V2_REF.id.hex()
    oversize = bytes(MAX_STORED_BYTES + 1)
    aws_env.client().put_object(Bucket="blocks", Key=f"big/{hexid[:2]}/{hexid}", Body=oversize)
    store = open_store("s3://blocks/big")
    with pytest.raises(StoreError, match=rf"is {MAX_STORED_BYTES + 1} bytes, larger than any block"):
        asyncio.run(store.get(V2_REF.id))
    with pytest.raises(StoreError, match="not a block"):
        asyncio.run(store.put(V2_REF.id, bytes(MAX_STORED_BYTES + 1)))


def test_a_corrupt_block_is_returned_as_stored_and_caught_by_verification(aws_env: MotoS3) -> None:
    hexid = V2_REF.id.hex()
    aws_env.client().put_object(Bucket="blocks", Key=f"bad/{hexid[:2]}/{hexid}", Body=V2_DATA[:-1] + b"!")
    data = asyncio.run(open_store("s3://blocks/bad").get(V2_REF.id))
    from zos_upgrade.flist.model import FlistError

    with pytest.raises(FlistError):
        decrypt_block(V2_REF, data)


def test_a_stalled_server_times_out_with_a_store_error(tmp_path: Path) -> None:
    port = free_port()
    with serving([sys.executable, "-m", "tests.support.stalled_server", str(port)], port):
        settings = S3Settings("blocks", endpoint=f"http://127.0.0.1:{port}", access_key="k", secret="s")
        store = S3Store(settings, timeout=1.0, connect_timeout=1.0, retries=1)
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"GET \w+ failed"):
            asyncio.run(store.get(V1_REF.id))
        assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://KEY:hunter2@blocks/x", "credentials do not go in an s3:// URL"),
        ("s3://Blocks/x", "bucket name 'Blocks' is invalid"),
        ("s3://ab/x", "bucket name 'ab' is invalid"),
        ("s3://blocks:9000/x", "invalid store URL"),
        ("s3://blocks/a/../b", "part '..' is not a plain name"),
        ("s3://blocks/x?acl=public", "query 'acl' is unknown"),
        ("s3://blocks/x?region=a&region=b", "query 'region' is unknown or repeated"),
        ("s3://blocks/x?anonymous=maybe", "anonymous='maybe'"),
        ("s3://blocks/x?endpoint=ftp://host", "expected http\\(s\\)://host"),
        ("s3://blocks/x?endpoint=http://u:p@host", "expected http\\(s\\)://host"),
    ],
)
def test_bad_urls_are_refused_before_any_request(url: str, message: str, aws_env: MotoS3) -> None:
    with pytest.raises(StoreError, match=message) as info:
        open_store(url)
    assert "hunter2" not in str(info.value)


def test_without_credentials_requests_are_unsigned_and_a_refusal_says_what_to_set(
    aws_env: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_store("s3://blocks/unsigned")
    assert isinstance(store, S3Store) and store.settings.unsigned_by_default
    # moto, checking signatures, refuses an unsigned request (with a 500 of its own)
    with pytest.raises(StoreError, match="no credentials were set, so the request was unsigned"):
        asyncio.run(store.put(V1_REF.id, V1_DATA))
    assert _keys(aws_env, "unsigned/") == []
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "half")
    with pytest.raises(StoreError, match="half the credentials"):
        open_store("s3://blocks/x")


def test_without_obstore_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "obstore.store", None)
    with pytest.raises(StoreError, match=r"pip install 'zos-upgrade\[s3\]'"):
        S3Store(S3Settings("blocks", anonymous=True))


def test_cli_packs_into_and_unpacks_from_a_bucket(aws_env: MotoS3, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "motd").write_text("hello from a bucket\n")
    (tree / "bin").mkdir()
    (tree / "bin" / "tool").write_bytes(bytes(range(256)) * 5000)
    url = "s3://blocks/packed"
    env = {**_base_env(), **aws_env.env()}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(zos_upgrade_cmd("flist", *args), env=env, capture_output=True, text=True,
                              timeout=120)

    run = cli("pack", str(tree), "-o", str(tmp_path / "t.fl"), "--store", url)
    assert run.returncode == 0, run.stderr
    assert _keys(aws_env, "packed/"), "no block was written to the bucket"
    out = tmp_path / "out"
    run = cli("unpack", str(tmp_path / "t.fl"), str(out))  # the store recorded in the flist
    assert run.returncode == 0, run.stderr
    assert (out / "etc" / "motd").read_text() == "hello from a bucket\n"
    assert (out / "bin" / "tool").read_bytes() == bytes(range(256)) * 5000

    # one stored block corrupted: the unpack fails and names the block
    key = _keys(aws_env, "packed/")[0]
    aws_env.client().put_object(Bucket="blocks", Key=key, Body=b"corrupt")
    run = cli("unpack", str(tmp_path / "t.fl"), str(tmp_path / "again"))
    assert run.returncode == 1
    assert key.rpartition("/")[2] in run.stderr, run.stderr


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def test_a_node_without_credentials_falls_through_to_its_next_store(
    aws_env: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A flist records the s3:// store it was packed into; a node without its secret still gets the
    block from the next route (on a node: the hub's /blocks)."""
    from zos_upgrade.flist.stores import DirStore, Route, Router

    asyncio.run(open_store("s3://blocks/private").put(V2_REF.id, V2_DATA))
    fallback = DirStore(tmp_path / "fallback")
    asyncio.run(fallback.put(V2_REF.id, V2_DATA))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    router = Router([Route(0, 255, "s3://blocks/private"), Route(0, 255, f"dir://{tmp_path / 'fallback'}")])
    assert asyncio.run(router.get(V2_REF.id)) == V2_DATA
