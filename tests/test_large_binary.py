"""Large (envelope) and binary secrets through the API, on moto."""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudchain import CloudChain, IntegrityError, ValidationError
from cloudchain.crypto import ENVELOPE_MAGIC, digest
from cloudchain.layout import ITEM_SIZE_LIMIT, item_size

KEY = {"Service": {"S": "svc"}, "Username": {"S": "u"}}
SIZES = st.one_of(st.sampled_from([1, 4095, 4096, 4097, 300 * 1024]), st.integers(1, 300 * 1024))
ALPHABET = "aZ9 $'\"\\\n#é€😀密"


def _text(size: int, seed: int) -> str:
    # A str of exactly `size` UTF-8 bytes, mixing 1- to 4-byte characters.
    rng, out, used = random.Random(seed), [], 0
    while used < size:
        char = rng.choice([c for c in ALPHABET if len(c.encode()) <= size - used])
        out.append(char)
        used += len(char.encode())
    return "".join(out)


def _item(dynamodb: Any) -> dict[str, Any]:
    return dynamodb.get_item(TableName="safedb", Key=KEY)["Item"]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(size=SIZES, seed=st.integers(0, 2**32), as_bytes=st.booleans())
def test_any_str_or_bytes_round_trips_in_both_schemes(
    chain: CloudChain, dynamodb: Any, size: int, seed: int, as_bytes: bool
) -> None:
    secret: str | bytes = random.Random(seed).randbytes(size) if as_bytes else _text(size, seed)
    chain.save("svc", "u", secret)
    value = chain.read("svc", "u")
    assert type(value) is type(secret)
    assert value == secret
    item = _item(dynamodb)
    assert item.get("Binary") == ({"BOOL": True} if as_bytes else None)
    if size <= 4096:
        assert "Scheme" not in item and "S" in item["Secret"]
    else:
        assert item["Scheme"] == {"S": "envelope-v1"}
        assert bytes(item["Secret"]["B"]).startswith(ENVELOPE_MAGIC)
    assert item_size(item) <= ITEM_SIZE_LIMIT


def test_the_largest_secret_fits_and_one_byte_more_is_refused(chain: CloudChain) -> None:
    chain.save("svc", "u", b"\xff" * (384 * 1024))
    assert chain.read("svc", "u") == b"\xff" * (384 * 1024)
    with pytest.raises(ValidationError, match="the limit is 393216"):
        chain.save("svc", "u", b"\xff" * (384 * 1024 + 1))


def test_large_versions_are_pruned_to_fit_the_item(chain: CloudChain, dynamodb: Any) -> None:
    for n in range(3):
        chain.save("svc", "u", bytes([n]) * (200 * 1024))
    assert [v.version for v in chain.history("svc", "u")] == [3]
    for n in range(3):
        chain.save("svc", "u", f"small-{n}")
    assert [v.version for v in chain.history("svc", "u")] == [6, 5, 4, 3]
    assert chain.read("svc", "u", version=3) == bytes([2]) * (200 * 1024)


def _flip(dynamodb: Any, position: int, fix_digest: bool) -> None:
    item = _item(dynamodb)
    attr = item["Secret"]
    blob = bytearray(bytes(attr["B"]) if "B" in attr else base64.b64decode(attr["S"]))
    blob[position % len(blob)] ^= 0x01
    item["Secret"] = {"B": bytes(blob)} if "B" in attr else {"S": base64.b64encode(blob).decode()}
    if fix_digest:
        item["Digest"] = {"S": digest(bytes(blob))}
    dynamodb.put_item(TableName="safedb", Item=item)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(position=st.integers(0, 10**6), large=st.booleans())
def test_flipping_any_stored_byte_is_an_integrity_error(
    chain: CloudChain, dynamodb: Any, position: int, large: bool
) -> None:
    chain.save("svc", "u", "x" * (5000 if large else 100))
    _flip(dynamodb, position, fix_digest=False)
    with pytest.raises(IntegrityError):
        chain.read("svc", "u")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset=st.integers(0, 10**6))
def test_envelope_layer_catches_a_flip_even_with_a_forged_digest(
    chain: CloudChain, dynamodb: Any, offset: int
) -> None:
    # Header, nonce, ciphertext and tag: everything but the KMS-encrypted data key, whose
    # own check is KMS's (and which moto answers differently for its key-id bytes).
    chain.save("svc", "u", "x" * 5000)
    blob = bytes(_item(dynamodb)["Secret"]["B"])
    wrapped = int.from_bytes(blob[4:6], "big")
    local = [*range(0, 6), *range(6 + wrapped, len(blob))]
    _flip(dynamodb, local[offset % len(local)], fix_digest=True)
    with pytest.raises(IntegrityError):
        chain.read("svc", "u")


def test_envelope_bound_to_its_row(chain: CloudChain, dynamodb: Any) -> None:
    chain.save("svc", "u", "a" * 5000)
    chain.save("svc", "other", "b" * 5000)
    item = _item(dynamodb)
    item["Username"] = {"S": "other"}
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError):
        chain.read("svc", "other")


def test_export_and_import_carry_binary_secrets(chain: CloudChain) -> None:
    chain.save("svc", "blob", b"\x00\x01\xff")
    chain.save("svc", "text", "t")
    assert chain.export("svc") == {"blob": b"\x00\x01\xff", "text": "t"}
    result = chain.import_secrets("svc", {"blob": b"\x00\x01\xff", "new": b"\x02"})
    assert (result.created, result.unchanged) == (1, 1)
    assert chain.read("svc", "new") == b"\x02"
