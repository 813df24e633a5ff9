"""The test infrastructure itself: the SeaweedFS fixture is a real S3 server with the
conditional-write and listing semantics tracebox relies on, and bucket_url wires it up."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import obstore
import pytest
from obstore.exceptions import AlreadyExistsError, PreconditionError
from obstore.store import LocalStore, from_url


def _prefix() -> str:
    return f"infra-{uuid.uuid4().hex}"


@pytest.mark.s3
def test_create_if_absent_is_exclusive(seaweed):
    store = seaweed.store()
    key = f"{_prefix()}/lock"
    obstore.put(store, key, b"first", mode="create")
    with pytest.raises(AlreadyExistsError):
        obstore.put(store, key, b"second", mode="create")
    assert bytes(obstore.get(store, key).bytes()) == b"first"


@pytest.mark.s3
def test_update_requires_matching_etag(seaweed):
    store = seaweed.store()
    key = f"{_prefix()}/head"
    first = obstore.put(store, key, b"v1", mode="create")
    assert first["e_tag"]

    with pytest.raises(PreconditionError):
        obstore.put(store, key, b"bad", mode={"e_tag": '"not-the-etag"'})
    assert bytes(obstore.get(store, key).bytes()) == b"v1"

    second = obstore.put(store, key, b"v2", mode={"e_tag": first["e_tag"]})
    assert bytes(obstore.get(store, key).bytes()) == b"v2"
    assert second["e_tag"] != first["e_tag"]

    # the old etag is stale now
    with pytest.raises(PreconditionError):
        obstore.put(store, key, b"v3", mode={"e_tag": first["e_tag"]})
    assert bytes(obstore.get(store, key).bytes()) == b"v2"


@pytest.mark.s3
def test_list_with_offset_returns_keys_after_it(seaweed):
    store = seaweed.store()
    prefix = _prefix()
    names = ["a", "b", "c", "d/e", "f"]
    for name in names:
        obstore.put(store, f"{prefix}/{name}", name.encode())

    def listed(offset: str | None) -> list[str]:
        return sorted(
            meta["path"] for batch in obstore.list(store, prefix, offset=offset) for meta in batch
        )

    assert listed(None) == [f"{prefix}/{n}" for n in names]
    assert listed(f"{prefix}/b") == [f"{prefix}/c", f"{prefix}/d/e", f"{prefix}/f"]
    assert listed(f"{prefix}/d/e") == [f"{prefix}/f"]
    assert listed(f"{prefix}/f") == []


@pytest.mark.s3
def test_credentials_are_checked(seaweed):
    from obstore.store import S3Store

    config = {**seaweed.obstore_config(), "secret_access_key": "wrong"}
    bad = S3Store(seaweed.bucket, config=config)
    with pytest.raises(Exception):  # noqa: B017 - any auth failure will do
        obstore.put(bad, f"{_prefix()}/x", b"x")


@pytest.mark.parametrize("n", [1, 2])
def test_bucket_url_is_fresh_and_reachable(bucket_url, n):
    """bucket_url gives a new empty bucket per test; for s3 the AWS env vars are set so a
    client configured only from the environment reaches the test server."""
    if bucket_url.startswith("s3://"):
        assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert os.environ["AWS_ALLOW_HTTP"] == "true"
        store = from_url(bucket_url)  # configured from the environment only
    else:
        assert not Path(bucket_url).exists()
        store = LocalStore(bucket_url, mkdir=True)
    assert [m for batch in obstore.list(store) for m in batch] == []
    obstore.put(store, "probe", f"{n}".encode())
    assert bytes(obstore.get(store, "probe").bytes()) == f"{n}".encode()
