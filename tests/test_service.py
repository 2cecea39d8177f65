"""Whole-service operations through the API: export and import_secrets (moto)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from helpers import KEY_ALIAS, CallCounter

from cloudchain import CloudChain, CloudChainConfigError, IntegrityError, ValidationError


def _seed(chain: CloudChain, count: int, service: str = "svc") -> dict[str, str]:
    values = {f"user-{n:03d}": f"value {n} $'\"\\" for n in range(count)}
    for user, value in values.items():
        chain.save(service, user, value)
    return values


def test_export_returns_every_current_secret_sorted(chain: CloudChain) -> None:
    values = _seed(chain, 20)
    chain.save("svc", "user-005", "newer")
    chain.save("other", "user-000", "not this service")
    exported = chain.export("svc")
    assert exported == {**values, "user-005": "newer"}
    assert list(exported) == sorted(exported)


def test_export_is_one_query_and_one_decrypt_per_secret(
    chain: CloudChain, calls: CallCounter
) -> None:
    _seed(chain, 12)
    calls.operations.clear()
    chain.export("svc")
    assert sorted(set(calls.operations)) == ["Decrypt", "Query"]
    assert calls.operations.count("Query") == 1
    assert calls.operations.count("Decrypt") == 12


def test_export_of_an_empty_service_is_empty(chain: CloudChain) -> None:
    assert chain.export("nothing") == {}


def test_export_with_one_bad_secret_fails_whole_and_names_it(
    chain: CloudChain, dynamodb: Any
) -> None:
    _seed(chain, 10)
    key = {"Service": {"S": "svc"}, "Username": {"S": "user-007"}}
    item = dynamodb.get_item(TableName="safedb", Key=key)["Item"]
    blob = bytearray(base64.b64decode(item["Secret"]["S"]))
    blob[-1] ^= 1
    item["Secret"] = {"S": base64.b64encode(bytes(blob)).decode()}
    dynamodb.put_item(TableName="safedb", Item=item)
    with pytest.raises(IntegrityError, match="svc/user-007"):
        chain.export("svc")


def test_export_results_do_not_depend_on_the_worker_count(chain: CloudChain) -> None:
    values = _seed(chain, 9)
    for workers in (1, 2, 16):
        assert CloudChain(max_workers=workers).export("svc") == values


def test_import_counts_created_changed_unchanged(chain: CloudChain) -> None:
    chain.save("svc", "same", "v")
    chain.save("svc", "differs", "old")
    result = chain.import_secrets("svc", {"same": "v", "differs": "new", "fresh": "f"})
    assert (result.created, result.changed, result.unchanged) == (1, 1, 1)
    assert result.actions == {"differs": "change", "fresh": "create", "same": "unchanged"}
    assert chain.export("svc") == {"differs": "new", "fresh": "f", "same": "v"}
    assert [v.version for v in chain.history("svc", "same")] == [1]
    assert [v.version for v in chain.history("svc", "differs")] == [2, 1]


def test_import_dry_run_writes_nothing(chain: CloudChain, calls: CallCounter) -> None:
    chain.save("svc", "differs", "old")
    calls.operations.clear()
    result = chain.import_secrets("svc", {"differs": "new", "fresh": "f"}, dry_run=True)
    assert result.actions == {"differs": "change", "fresh": "create"}
    assert "PutItem" not in calls.operations
    assert "Encrypt" not in calls.operations
    assert chain.export("svc") == {"differs": "old"}


def test_dry_run_needs_no_key_alias(chain: CloudChain) -> None:
    assert CloudChain().import_secrets("svc", {"a": "b"}, dry_run=True).created == 1
    with pytest.raises(CloudChainConfigError):
        CloudChain().import_secrets("svc", {"a": "b"})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"empty": ""}, "svc/empty must not be empty"),
        ({"u" * 1025: "x"}, "user is 1025 bytes"),
        ({"": "x"}, "user must not be empty"),
        ({"big": "x" * 393217}, "svc/big is 393217 bytes"),
    ],
)
def test_one_invalid_entry_writes_nothing(
    chain: CloudChain, calls: CallCounter, entry: dict[str, str], message: str
) -> None:
    calls.operations.clear()
    with pytest.raises(ValidationError, match=message):
        chain.import_secrets("svc", {"good-1": "a", **entry, "good-2": "b"})
    assert calls.operations == []
    assert chain.export("svc") == {}


def test_import_of_many_runs_in_parallel_and_exports_back(chain: CloudChain) -> None:
    mapping = {f"key-{n}": f"secret {n}" for n in range(40)}
    result = CloudChain(keyalias=KEY_ALIAS, max_workers=8).import_secrets("svc", mapping)
    assert result.created == 40
    assert chain.export("svc") == dict(sorted(mapping.items()))
